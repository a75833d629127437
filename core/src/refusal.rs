//! How a refused graph names its keys to a person (the scheduler's
//! refusals and the in-process scheduler's say it alike): keys quoted and
//! shortened, a few of many, a cycle drawn as a path.

use crate::Key;

/// Keys shown in a refusal's message at most; the `keys` field has them
/// all.
const KEYS_SHOWN_MAX: usize = 8;
/// Characters of one key shown in a message at most.
const KEY_CHARS_SHOWN_MAX: usize = 80;

/// A key quoted for a message, shortened past [`KEY_CHARS_SHOWN_MAX`].
pub fn show_key(k: &Key) -> String {
    let s = k.as_str();
    match s.char_indices().nth(KEY_CHARS_SHOWN_MAX) {
        Some((end, _)) => format!("{:?}...", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// `"a", "b"`, at most [`KEYS_SHOWN_MAX`] of them and how many more.
pub fn show_keys(keys: &[Key]) -> String {
    let mut shown: Vec<String> = keys.iter().take(KEYS_SHOWN_MAX).map(show_key).collect();
    if keys.len() > KEYS_SHOWN_MAX {
        shown.push(format!("and {} more", keys.len() - KEYS_SHOWN_MAX));
    }
    shown.join(", ")
}

/// `"a" -> "b" -> "a" (each depends on the next)`, at most
/// [`KEYS_SHOWN_MAX`] keys of it.
pub fn describe_cycle(path: &[&Key]) -> String {
    let distinct = path.len().saturating_sub(1);
    let mut shown: Vec<String> = path
        .iter()
        .take(KEYS_SHOWN_MAX)
        .map(|k| show_key(k))
        .collect();
    if path.len() > KEYS_SHOWN_MAX {
        shown.push(format!("... ({distinct} tasks on this cycle)"));
    }
    let mut text = shown.join(" -> ");
    if distinct > 1 {
        text.push_str(" (each depends on the next)");
    } else {
        text.push_str(" (a task that depends on itself)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_shortened_and_counted() {
        let keys: Vec<Key> = (0..10)
            .map(|i| Key::from(format!("k{i}").as_str()))
            .collect();
        assert_eq!(show_keys(&keys[..2]), r#""k0", "k1""#);
        assert!(show_keys(&keys).ends_with(r#""k7", and 2 more"#));
        let long = Key::from("x".repeat(100).as_str());
        assert_eq!(show_key(&long), format!("{:?}...", "x".repeat(80)));
        let (a, b) = (Key::from("a"), Key::from("b"));
        assert_eq!(
            describe_cycle(&[&a, &b, &a]),
            r#""a" -> "b" -> "a" (each depends on the next)"#
        );
        assert_eq!(
            describe_cycle(&[&a, &a]),
            r#""a" -> "a" (a task that depends on itself)"#
        );
    }
}
