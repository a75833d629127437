//! [`KeyList`]: an array of keys kept as its msgpack bytes, checked once
//! when read. A `release-keys` of 1M keys read into a [`Key`] (a `String`)
//! each cost a malloc and a free per key: in the scheduler's release,
//! glibc's malloc was 35-45% of the samples, in a heap full of freed
//! chunks (issue 19 item 4). A list read from a large frame is a slice of
//! that frame's buffer, as a large [`RawValue`] is.

use bytes::Bytes;

use super::*;
use crate::msgpack::check_key;

/// Keys on the wire: an array of strings, each a valid [`Key`].
#[derive(Clone, Default)]
pub struct KeyList {
    /// The items' encodings one after the other (no array header).
    items: Bytes,
    len: usize,
    /// Every item has its smallest string header: written as kept.
    canonical: bool,
}

impl KeyList {
    /// How many keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys, in order.
    pub fn iter(&self) -> KeyIter<'_> {
        KeyIter {
            items: &self.items,
            r: Reader::new(&self.items),
            left: self.len,
        }
    }

    /// The keys as [`Key`]s (a copy each).
    pub fn to_keys(&self) -> Vec<Key> {
        self.iter().map(Key::from).collect()
    }
}

impl<'a> FromIterator<&'a str> for KeyList {
    fn from_iter<I: IntoIterator<Item = &'a str>>(keys: I) -> KeyList {
        let mut list = KeyListBuilder::default();
        for k in keys {
            list.push(k);
        }
        list.finish()
    }
}

/// A [`KeyList`] being made a key at a time: one buffer, not a [`Key`]
/// per key (the scheduler's `free-keys` for a released graph).
#[derive(Debug, Default)]
pub struct KeyListBuilder {
    items: Vec<u8>,
    len: usize,
}

impl KeyListBuilder {
    /// Adds `key` (a valid key: the caller's to check).
    pub fn push(&mut self, key: &str) {
        // The key and its longest header: one allocation for a list of
        // one key (most free-keys), not one for the header and another.
        self.items.reserve(key.len() + 5);
        write::str(&mut self.items, key);
        self.len += 1;
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The list.
    pub fn finish(self) -> KeyList {
        KeyList {
            items: Bytes::from(self.items),
            len: self.len,
            canonical: true,
        }
    }
}

impl From<Vec<Key>> for KeyList {
    fn from(keys: Vec<Key>) -> KeyList {
        keys.iter().map(Key::as_str).collect()
    }
}

impl<const N: usize> From<[&str; N]> for KeyList {
    fn from(keys: [&str; N]) -> KeyList {
        keys.into_iter().collect()
    }
}

impl From<&[Key]> for KeyList {
    fn from(keys: &[Key]) -> KeyList {
        keys.iter().map(Key::as_str).collect()
    }
}

/// The keys of a [`KeyList`], borrowed from it.
#[derive(Clone)]
pub struct KeyIter<'a> {
    items: &'a Bytes,
    r: Reader<'a>,
    left: usize,
}

impl<'a> KeyIter<'a> {
    /// The keys not yet taken, as a list of their own (no copy).
    pub fn rest(&self) -> KeyList {
        KeyList {
            items: self.items.slice(self.r.position()..),
            len: self.left,
            canonical: true,
        }
    }
}

impl<'a> Iterator for KeyIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Checked when read or made: never fails.
        self.r.read_str().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl Wire for KeyList {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::array_len(w, self.len);
        if self.canonical {
            w.shared(&self.items);
        } else {
            for k in self.iter() {
                write::str(w, k);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let len = r.read_array_len()?;
        let start = r.position();
        let mut canonical = true;
        for i in 0..len {
            let at = r.position();
            let k = r
                .read_str()
                .and_then(|k| check_key(k).map(|()| k))
                .map_err(|e| e.in_field(&format!("[{i}]")))?;
            canonical &= r.position() - at == str_header_len(k.len()) + k.len();
        }
        Ok(KeyList {
            items: r.shared_since(start),
            len,
            canonical,
        })
    }
}

/// The smallest msgpack string header for `len` bytes.
fn str_header_len(len: usize) -> usize {
    match len {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

impl PartialEq for KeyList {
    fn eq(&self, other: &KeyList) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl PartialEq<[Key]> for KeyList {
    fn eq(&self, other: &[Key]) -> bool {
        self.len == other.len() && self.iter().eq(other.iter().map(Key::as_str))
    }
}

impl PartialEq<Vec<Key>> for KeyList {
    fn eq(&self, other: &Vec<Key>) -> bool {
        *self == other[..]
    }
}

impl<const N: usize> PartialEq<[Key; N]> for KeyList {
    fn eq(&self, other: &[Key; N]) -> bool {
        *self == other[..]
    }
}

impl std::fmt::Debug for KeyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl crate::schema::WireType for KeyList {
    fn wire_type() -> String {
        <Vec<Key> as crate::schema::WireType>::wire_type()
    }
}

impl schemars::JsonSchema for KeyList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Vec<Key> as schemars::JsonSchema>::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<Key> as schemars::JsonSchema>::json_schema(generator)
    }
    fn inline_schema() -> bool {
        <Vec<Key> as schemars::JsonSchema>::inline_schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(list: &KeyList) -> Vec<u8> {
        let mut out = Vec::new();
        list.write(&mut WriteBuf::new(&mut out));
        out
    }

    #[test]
    fn a_list_reads_and_writes_as_an_array_of_keys() {
        let keys: Vec<Key> = ["a", "b-1", &"x".repeat(40), &"y".repeat(300)]
            .into_iter()
            .map(Key::from)
            .collect();
        let list = KeyList::from(keys.clone());
        let mut as_vec = Vec::new();
        keys.write(&mut WriteBuf::new(&mut as_vec));
        assert_eq!(encode(&list), as_vec, "the same bytes as Vec<Key>");
        let read = KeyList::read(&mut Reader::new(&as_vec)).unwrap();
        assert_eq!(read, keys);
        assert_eq!(read.to_keys(), keys);
        let mut it = read.iter();
        assert_eq!(it.next(), Some("a"));
        assert_eq!(it.rest(), keys[1..].to_vec());
    }

    #[test]
    fn a_non_canonical_list_is_written_canonically() {
        // ["a"] with a str8 header, then with a str16 one.
        for bytes in [&[0x91, 0xd9, 1, b'a'][..], &[0x91, 0xda, 0, 1, b'a']] {
            let read = KeyList::read(&mut Reader::new(bytes)).unwrap();
            assert_eq!(read, vec![Key::from("a")]);
            assert_eq!(encode(&read), [0x91, 0xa1, b'a']);
        }
    }

    #[test]
    fn a_bad_item_is_refused_naming_it() {
        // Not a string; an empty key; invalid UTF-8; a key over 4096 bytes;
        // a length larger than the bytes.
        let mut long = vec![0x91, 0xda, 0x10, 0x01];
        long.extend(std::iter::repeat_n(b'k', 4097));
        for bytes in [
            &[0x92, 0xa1, b'a', 0x01][..],
            &[0x91, 0xa0],
            &[0x91, 0xa1, 0xff],
            &long,
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a'],
        ] {
            assert!(KeyList::read(&mut Reader::new(bytes)).is_err(), "{bytes:?}");
        }
        let e = KeyList::read(&mut Reader::new(&[0x92, 0xa1, b'a', 0x01])).unwrap_err();
        assert!(e.to_string().contains("[1]"), "{e}");
    }

    #[test]
    fn a_large_list_shares_its_frame() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
        let list: KeyList = keys.iter().map(String::as_str).collect();
        let frame = Bytes::from(encode(&list));
        let read = KeyList::read(&mut Reader::over_shared(&frame)).unwrap();
        assert_eq!(read.len(), keys.len());
        assert_eq!(
            read.items.as_ptr(),
            frame[frame.len() - read.items.len()..].as_ptr(),
            "a slice of the frame, not a copy"
        );
        assert!(read.iter().eq(keys.iter().map(String::as_str)));
    }
}
