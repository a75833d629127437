//! [`TaskText`]: a task's key and its arguments' encoding, together.
//!
//! Ten million tasks each held a key block and an arguments block (a
//! `Box<str>` and a `Box<[u8]>` in the record, 32 bytes, and two heap
//! blocks of at least 32 bytes each with the allocator's header): 96 of
//! the ~290 bytes a task cost. Here both are one field of 24 bytes: in
//! place when together they take at most [`INLINE_MAX`] bytes (`t-12-4095`
//! with `[4095]`, `('inc-3f2a', 17)` with `[17]`), else one block of
//! exactly their size. A lookup by key then reads the index and the
//! record only, no block far from it (`KeyIndex::get` was 11% of the
//! scheduler's samples running the 1M-task tree).

/// Most bytes of key and arguments held in place.
pub(crate) const INLINE_MAX: usize = 21;

/// A task's key and arguments; see the module docs. 24 bytes either way.
#[derive(Debug)]
pub(crate) enum TaskText {
    Inline {
        key_len: u8,
        args_len: u8,
        bytes: [u8; INLINE_MAX],
    },
    /// The key then the arguments, in one block.
    Heap { key_len: u32, bytes: Box<[u8]> },
}

impl TaskText {
    pub(crate) fn new(key: &str, args: &[u8]) -> TaskText {
        let total = key.len() + args.len();
        if total <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            bytes[key.len()..total].copy_from_slice(args);
            return TaskText::Inline {
                key_len: key.len() as u8,
                args_len: args.len() as u8,
                bytes,
            };
        }
        // A key came in a frame, whose length is four bytes: it fits.
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let mut block = Vec::with_capacity(total);
        block.extend_from_slice(key.as_bytes());
        block.extend_from_slice(args);
        TaskText::Heap {
            key_len,
            bytes: block.into_boxed_slice(),
        }
    }

    /// The key's bytes (UTF-8: copied from a `str`).
    pub(crate) fn key_bytes(&self) -> &[u8] {
        match self {
            TaskText::Inline { key_len, bytes, .. } => &bytes[..*key_len as usize],
            TaskText::Heap { key_len, bytes } => &bytes[..*key_len as usize],
        }
    }

    /// The key.
    pub(crate) fn key(&self) -> &str {
        // Copied from a `str`, so UTF-8 (checked again rather than
        // trusted: this crate keeps no `unsafe`; keys are short).
        std::str::from_utf8(self.key_bytes()).unwrap_or_default()
    }

    /// The arguments' encoding.
    pub(crate) fn args(&self) -> &[u8] {
        match self {
            TaskText::Inline {
                key_len,
                args_len,
                bytes,
            } => &bytes[*key_len as usize..*key_len as usize + *args_len as usize],
            TaskText::Heap { key_len, bytes } => &bytes[*key_len as usize..],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_held_in_place_and_every_one_reads_back() {
        let long_key = "('inc-8b3f9e0c6d1a4f27b5e3c9d0a1b2c3d4', 12345)";
        let cases: [(&str, &[u8]); 7] = [
            ("", b""),
            ("x", b""),
            ("t-12-4095", &[0x91, 0xcd, 0x0f, 0xff]),
            ("('inc-3f2a', 17)", &[0x91, 0x11]),
            ("é漢字-21-bytes-long", b""),
            (
                "t-1-2",
                &[0x92, 0xc7, 5, 1, b't', b'-', b'0', b'-', b'4', 0xc7],
            ),
            (long_key, &[0x90]),
        ];
        for (key, args) in cases {
            let text = TaskText::new(key, args);
            assert_eq!(text.key(), key);
            assert_eq!(text.key_bytes(), key.as_bytes());
            assert_eq!(text.args(), args);
            let inline = key.len() + args.len() <= INLINE_MAX;
            assert_eq!(matches!(text, TaskText::Inline { .. }), inline, "{key}");
        }
        let edge = "x".repeat(INLINE_MAX - 1);
        assert!(matches!(
            TaskText::new(&edge, b"a"),
            TaskText::Inline { .. }
        ));
        assert!(matches!(TaskText::new(&edge, b"ab"), TaskText::Heap { .. }));
        assert_eq!(std::mem::size_of::<TaskText>(), 24);
    }
}
