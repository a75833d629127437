//! The journal's bytes, pure: the file header and the records after it.
//!
//! ```text
//! header:  "dask-rs journal\n" (16 bytes) | format version: u32 LE | 0u32
//! record:  payload length: u32 LE | CRC-32C of kind and payload: u32 LE | kind: u8 | payload
//! ```
//!
//! A record is whole or it is not there: a reader stops at the first record
//! that is cut short, too long or fails its checksum (a torn tail: the
//! writer died mid-append), and everything before it stands. Records are
//! only ever appended and made durable together (group commit), so a bad
//! record is the tail, never the middle of what was acknowledged.

/// The first bytes of every journal file.
pub const MAGIC: &[u8; 16] = b"dask-rs journal\n";

/// The format this code writes and reads. A file with another version is
/// refused, never guessed at.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of the header.
pub const HEADER_BYTES: usize = MAGIC.len() + 8;

/// Bytes before a record's payload (length, checksum, kind).
pub const RECORD_HEADER_BYTES: usize = 9;

/// Largest payload a record may have. Longer announced lengths are read as
/// a torn or corrupt tail, so a bad length never allocates.
pub const RECORD_BYTES_MAX: usize = 1 << 30;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The whole live state: what the records before it held, compacted.
    Snapshot,
    /// One change after the last snapshot.
    Event,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            RecordKind::Snapshot => 1,
            RecordKind::Event => 2,
        }
    }

    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Snapshot),
            2 => Some(RecordKind::Event),
            _ => None,
        }
    }
}

/// Why a file is not a journal this code can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The first bytes are not [`MAGIC`].
    NotAJournal,
    /// A journal of another format version.
    Version(u32),
}

/// The header of a new journal.
pub fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0; HEADER_BYTES];
    h[..MAGIC.len()].copy_from_slice(MAGIC);
    h[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks a file's first bytes. `Ok(false)` when there are fewer than a
/// header's worth that could still be one (a journal whose creation was
/// cut short: read as empty).
pub fn check_header(bytes: &[u8]) -> Result<bool, HeaderError> {
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err(HeaderError::NotAJournal);
    }
    if bytes.len() < HEADER_BYTES {
        return Ok(false);
    }
    let version = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(true)
}

/// Appends one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, kind: RecordKind, payload: &[u8]) {
    encode_record_with(out, kind, |out| out.extend_from_slice(payload));
}

/// Appends one record to `out`, its payload written there by `payload`
/// (in place: the scheduler frames each record where the journal's thread
/// takes it, with no buffer of its own to allocate, copy and free).
pub fn encode_record_with(out: &mut Vec<u8>, kind: RecordKind, payload: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    payload(out);
    let start = at + RECORD_HEADER_BYTES;
    let len = out.len() - start;
    debug_assert!(len <= RECORD_BYTES_MAX);
    let crc = !crc32c_update(crc32c_update(!0, &[kind.byte()]), &out[start..]);
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    out[at + 8] = kind.byte();
}

/// One record read back: its kind and where its payload lies in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What it holds.
    pub kind: RecordKind,
    /// The payload's range in the bytes given to [`decode_records`].
    pub payload: std::ops::Range<usize>,
}

/// The records of `bytes` (a file after its header), and the length of
/// the good prefix: where a torn or corrupt tail begins, or `bytes.len()`.
pub fn decode_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + RECORD_HEADER_BYTES) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(kind) = RecordKind::from_byte(head[8]) else {
            break;
        };
        let start = at + RECORD_HEADER_BYTES;
        if len > RECORD_BYTES_MAX || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if !crc32c_update(crc32c_update(!0, &[head[8]]), payload) != crc {
            break;
        }
        records.push(Record {
            kind,
            payload: start..start + len,
        });
        at = start + len;
    }
    (records, at)
}

/// CRC-32C (Castagnoli), as iSCSI and ext4 use: reflected, polynomial
/// 0x82F63B78. `crc` starts at `!0` and is inverted at the end.
///
/// With SSE 4.2 (every x86-64 server of the last fifteen years) the
/// processor's `crc32` instruction does 8 bytes per step; the table below
/// does one byte per dependent table load, which cost about 0.4 µs of the
/// writing thread's CPU per task (a task's `graph` and `finished` records
/// are ~185 bytes).
fn crc32c_update(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the processor has SSE 4.2, checked just above.
            return unsafe { crc32c_sse42(crc, bytes) };
        }
    }
    crc32c_table(crc, bytes)
}

/// [`crc32c_update`] with the `crc32` instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_sse42(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut words = bytes.chunks_exact(8);
    let mut c = u64::from(crc);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        c = _mm_crc32_u64(c, u64::from_le_bytes(word));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

/// [`crc32c_update`] a byte at a time, by table.
fn crc32c_table(mut crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for &b in bytes {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(!crc32c_update(!0, b"123456789"), 0xE306_9283);
        assert_eq!(!crc32c_table(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn both_crc32c_ways_agree_at_every_length_and_split() {
        let bytes: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            let whole = crc32c_table(!0, &bytes[..len]);
            assert_eq!(crc32c_update(!0, &bytes[..len]), whole, "length {len}");
            for split in 0..=len {
                let (a, b) = bytes[..len].split_at(split);
                assert_eq!(
                    crc32c_update(crc32c_update(!0, a), b),
                    whole,
                    "length {len} split at {split}"
                );
            }
        }
    }

    #[test]
    fn records_read_back_in_order() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, RecordKind::Snapshot, b"state");
        encode_record(&mut bytes, RecordKind::Event, b"");
        encode_record(&mut bytes, RecordKind::Event, b"second");
        let (records, good) = decode_records(&bytes);
        assert_eq!(good, bytes.len());
        let got: Vec<(RecordKind, &[u8])> = records
            .iter()
            .map(|r| (r.kind, &bytes[r.payload.clone()]))
            .collect();
        assert_eq!(
            got,
            [
                (RecordKind::Snapshot, &b"state"[..]),
                (RecordKind::Event, &b""[..]),
                (RecordKind::Event, &b"second"[..]),
            ]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_offset() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, RecordKind::Event, b"first");
        let first_end = bytes.len();
        encode_record(&mut bytes, RecordKind::Event, b"the second record");
        for cut in first_end..bytes.len() {
            let (records, good) = decode_records(&bytes[..cut]);
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert_eq!(good, first_end, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_good_prefix_there() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, RecordKind::Event, b"first");
        let first_end = bytes.len();
        encode_record(&mut bytes, RecordKind::Event, b"the second record");
        for at in first_end..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                let (records, good) = decode_records(&bad);
                assert_eq!((records.len(), good), (1, first_end), "byte {at} bit {bit}");
            }
        }
    }

    #[test]
    fn a_huge_announced_length_is_a_tail_not_an_allocation() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 2];
        bytes.extend_from_slice(&[0; 64]);
        assert_eq!(decode_records(&bytes), (vec![], 0));
    }

    #[test]
    fn headers_are_told_apart() {
        let h = header();
        assert_eq!(check_header(&h), Ok(true));
        assert_eq!(check_header(&h[..5]), Ok(false));
        assert_eq!(check_header(&[]), Ok(false));
        assert_eq!(
            check_header(b"PK\x03\x04 a zip file"),
            Err(HeaderError::NotAJournal)
        );
        let mut v2 = h;
        v2[16] = 2;
        assert_eq!(check_header(&v2), Err(HeaderError::Version(2)));
    }
}
