//! What the scheduler's and the worker's stories share: playing the steps a fuzzer's bytes encode, and drawing
//! keys and numbers from small pools so that messages collide.

use std::fmt::Debug;

use dask_core::Key;

/// Plays the steps `parse` reads from the front of `data`, in order, until
/// the bytes are used up; panics, naming `story` and the step, when `play`
/// fails.
pub fn play_steps<S: Debug>(
    story: &str,
    mut data: &[u8],
    parse: fn(&mut &[u8]) -> Option<S>,
    mut play: impl FnMut(&S) -> Result<(), String>,
) {
    let mut i = 0;
    while let Some(step) = parse(&mut data) {
        if let Err(e) = play(&step) {
            panic!("{story}: step {i} {step:?}: {e}");
        }
        i += 1;
    }
}

/// The first byte of `data`, taken off it; `None` when it is empty.
pub fn take_byte(data: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = data.split_first()?;
    *data = rest;
    Some(b)
}

/// Key number `i` of `pool` (wrapping).
pub fn pool_key(pool: &[&str], i: u8) -> Key {
    Key::from(pool[i as usize % pool.len()])
}

/// The keys of `pool` whose bits are set in `mask`.
pub fn pool_keys(pool: &[&str], mask: u8) -> Vec<Key> {
    (0..pool.len().min(8) as u8)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| pool_key(pool, i))
        .collect()
}

/// Mostly small numbers (they collide with real ids), sometimes any.
pub fn small(n: u64) -> u64 {
    match n % 4 {
        0 => n,
        _ => n % 8,
    }
}
