//! The [`Wire`] trait: how each Rust type is written to and read from
//! msgpack, and the `wire_struct!` macro that derives it for a struct whose
//! wire form is a map from field name to value.
//!
//! Reading a struct goes once over the map's entries, reading each known
//! field where it stands, so field order does not matter, unknown fields
//! are checked and skipped (a later minor version may add them) and an
//! error names the field it is about. [`FieldTable`] indexes a map's
//! entries (name -> encoded bytes) for readers that look fields up by name.

use std::collections::BTreeMap;

use crate::error::WireError;
use crate::msgpack::{check_key, write, RawValue, Reader, WriteBuf, VALUE_DEPTH_MAX};

/// Most entries accepted in one struct's map.
pub const STRUCT_FIELDS_MAX: usize = 64;

/// Deepest nesting accepted in one field of a message or struct. Values
/// ([`RawValue`]) may nest [`VALUE_DEPTH_MAX`] levels themselves; the
/// deepest structure around a value is two levels (`update-graph`'s
/// `tasks` array and a task's map), so fields get two more.
pub const FIELD_DEPTH_MAX: usize = VALUE_DEPTH_MAX + 2;

/// A type with a msgpack form.
pub trait Wire: Sized {
    /// Appends the canonical encoding.
    fn write(&self, w: &mut WriteBuf<'_>);
    /// Reads one object.
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;
    /// The value of an absent field; `None` makes the field required.
    fn absent() -> Option<Self> {
        None
    }
    /// Whether this value is written by leaving the field out.
    fn is_absent(&self) -> bool {
        false
    }
    /// Whether this value's encoding is nil.
    fn is_nil(&self) -> bool {
        false
    }
}

/// The entries of a map read as a struct: field name -> encoded value.
///
/// Messages are decoded by the million, so the first
/// [`FIELDS_INLINE`] entries live inline (no allocation per struct).
pub struct FieldTable<'a> {
    inline: [(&'a str, &'a [u8]); FIELDS_INLINE],
    len: usize,
    /// Entries beyond the inline ones (structs never have that many
    /// fields; a peer may still send them, up to `STRUCT_FIELDS_MAX`).
    more: Vec<(&'a str, &'a [u8])>,
}

/// Fields of a [`FieldTable`] kept without allocating.
const FIELDS_INLINE: usize = 12;

impl<'a> FieldTable<'a> {
    /// Reads a map with string keys. Duplicate names are malformed.
    pub fn read(r: &mut Reader<'a>) -> Result<FieldTable<'a>, WireError> {
        let len = r.read_map_len()?;
        check_struct_len(len)?;
        let mut table = FieldTable {
            inline: [("", &[]); FIELDS_INLINE],
            len: 0,
            more: Vec::new(),
        };
        for _ in 0..len {
            let name = r.read_str().map_err(|e| e.in_field("<field name>"))?;
            let value = r
                .skip_nested(FIELD_DEPTH_MAX, &mut |_| {})
                .map_err(|e| e.in_field(name))?;
            if table.raw(name).is_some() {
                return Err(duplicate_field(name));
            }
            if table.len < FIELDS_INLINE {
                table.inline[table.len] = (name, value);
                table.len += 1;
            } else {
                table.more.push((name, value));
            }
        }
        Ok(table)
    }

    /// The encoded value of field `name`.
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.inline[..self.len]
            .iter()
            .chain(&self.more)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Reads field `name`; absent fields take [`Wire::absent`].
    pub fn field<T: Wire>(&self, name: &str) -> Result<T, WireError> {
        match self.raw(name) {
            Some(bytes) => T::read(&mut Reader::new(bytes)).map_err(|e| e.in_field(name)),
            None => T::absent().ok_or_else(|| WireError::missing_field(name)),
        }
    }

    /// Reads required string field `name` without copying it (as
    /// `field::<String>` would, errors included).
    pub fn str_field(&self, name: &str) -> Result<&'a str, WireError> {
        match self.raw(name) {
            None => Err(WireError::missing_field(name)),
            Some(bytes) => Reader::new(bytes).read_str().map_err(|e| e.in_field(name)),
        }
    }
}

/// Refuses a struct map with more entries than any message may have.
#[doc(hidden)]
pub fn check_struct_len(len: usize) -> Result<(), WireError> {
    if len > STRUCT_FIELDS_MAX {
        return Err(WireError::malformed(format!(
            "map has {len} entries, more than the {STRUCT_FIELDS_MAX} a message may have"
        )));
    }
    Ok(())
}

/// The error for a field name that appears twice in one map.
#[doc(hidden)]
pub fn duplicate_field(name: &str) -> WireError {
    WireError::malformed(format!("field `{name}` appears twice"))
}

/// Names of a struct map's unknown entries, to refuse duplicates; the few
/// a message has (its `op`) are kept without allocating.
#[doc(hidden)]
#[derive(Default)]
pub struct UnknownNames<'a> {
    inline: [&'a str; 4],
    len: usize,
    more: Vec<&'a str>,
}

impl<'a> UnknownNames<'a> {
    /// Holding `op` alone: a message's names once its `op` is read.
    pub fn after_op() -> UnknownNames<'a> {
        UnknownNames {
            inline: ["op", "", "", ""],
            len: 1,
            more: Vec::new(),
        }
    }

    /// Records `name`; false when it was recorded before.
    pub fn insert(&mut self, name: &'a str) -> bool {
        if self.inline[..self.len].contains(&name) || self.more.contains(&name) {
            return false;
        }
        if self.len < self.inline.len() {
            self.inline[self.len] = name;
            self.len += 1;
        } else {
            self.more.push(name);
        }
        true
    }
}

/// Writes a struct's map: the header, then `write_fields`.
pub fn write_struct(
    w: &mut WriteBuf<'_>,
    fields: usize,
    write_fields: impl FnOnce(&mut WriteBuf<'_>),
) {
    write::map_len(w, fields);
    write_fields(w);
}

impl Wire for bool {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::bool(w, *self)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.read_bool()
    }
}

macro_rules! wire_uint {
    ($($t:ty => $name:literal),*) => {$(
        impl Wire for $t {
            fn write(&self, w: &mut WriteBuf<'_>) {
                write::uint(w, *self as u64)
            }
            fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
                r.read_int_as($name)
            }
        }
    )*};
}
wire_uint!(u8 => "unsigned 8-bit integer", u16 => "unsigned 16-bit integer", u32 => "unsigned 32-bit integer", u64 => "unsigned 64-bit integer");

impl Wire for i64 {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::int(w, *self)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.read_int_as("signed 64-bit integer")
    }
}

impl Wire for f64 {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::f64(w, *self)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.read_f64()
    }
}

impl Wire for String {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::str(w, self)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(r.read_str()?.to_owned())
    }
}

impl Wire for RawValue {
    fn write(&self, w: &mut WriteBuf<'_>) {
        self.write_to(w)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        RawValue::read(r)
    }
    fn is_nil(&self) -> bool {
        self.as_bytes() == [0xc0]
    }
}

impl<T: Wire> Wire for Option<T> {
    fn write(&self, w: &mut WriteBuf<'_>) {
        match self {
            Some(v) => v.write(w),
            None => write::nil(w),
        }
    }
    /// Nil reads as `None`, so a peer may send nil for an absent field.
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        if r.next_is_nil() {
            r.read_nil()?;
            return Ok(None);
        }
        T::read(r).map(Some)
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
    /// Nil reads as absent, so an optional field holding a nil value (a
    /// `RawValue` of nil) is written by leaving it out: the canonical form.
    fn is_absent(&self) -> bool {
        self.as_ref().is_none_or(Wire::is_nil)
    }
    fn is_nil(&self) -> bool {
        self.as_ref().is_none_or(Wire::is_nil)
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::array_len(w, self.len());
        for item in self {
            item.write(w);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let len = r.read_array_len()?;
        // The length is bounded by the bytes left, but T may be larger than
        // a byte: reserve at most as many bytes as are left in the frame
        // (or 1024 elements), so a lying header costs no more memory than
        // the frame itself, and an honest one of a big graph is one
        // allocation instead of a doubling series with its copies.
        let fit = r.remaining() / std::mem::size_of::<T>().max(1);
        let mut out = Vec::with_capacity(len.min(fit.max(1024)));
        for i in 0..len {
            out.push(T::read(r).map_err(|e| e.in_field(&format!("[{i}]")))?);
        }
        Ok(out)
    }
}

/// Map keys: strings on the wire.
pub trait WireKey: Ord + Sized {
    /// The key as a string.
    fn as_key_str(&self) -> &str;
    /// Reads the key from a string.
    fn from_key_str(s: &str) -> Result<Self, WireError>;
}

impl WireKey for String {
    fn as_key_str(&self) -> &str {
        self
    }
    fn from_key_str(s: &str) -> Result<Self, WireError> {
        Ok(s.to_owned())
    }
}

impl<K: WireKey, V: Wire> Wire for BTreeMap<K, V> {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::map_len(w, self.len());
        for (k, v) in self {
            write::str(w, k.as_key_str());
            v.write(w);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let len = r.read_map_len()?;
        let mut out = BTreeMap::new();
        for _ in 0..len {
            let k = r.read_str().map_err(|e| e.in_field("<map key>"))?;
            let v = V::read(r).map_err(|e| e.in_field(k))?;
            if out.insert(K::from_key_str(k)?, v).is_some() {
                return Err(WireError::malformed(format!("map key {k:?} appears twice")));
            }
        }
        Ok(out)
    }
}

/// A task key: a UTF-8 string of 1 to 4096 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub String);

impl Key {
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key(s.to_owned())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key(s)
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Wire for Key {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::str(w, &self.0)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let s = r.read_str()?;
        check_key(s)?;
        Ok(Key(s.to_owned()))
    }
}

impl WireKey for Key {
    fn as_key_str(&self) -> &str {
        &self.0
    }
    fn from_key_str(s: &str) -> Result<Self, WireError> {
        check_key(s)?;
        Ok(Key(s.to_owned()))
    }
}

impl schemars::JsonSchema for Key {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Key".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A task key: a UTF-8 string of 1 to 4096 bytes.",
            "type": "string",
            "minLength": 1,
            "maxLength": 4096
        })
    }
}

impl schemars::JsonSchema for RawValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Any msgpack value, embedded as is (not wrapped in binary). A task reference is msgpack ext type 1 whose payload is the key in UTF-8; its JSON form is {\"$ref\": key}. Binary data's JSON form is {\"$bin\": hex}."
        })
    }
}

/// Defines a struct whose wire form is a map of its fields by name, with
/// [`Wire`] and `JsonSchema`. `Option` fields are optional: left out when
/// `None`, and `None` when absent or nil.
#[macro_export]
#[doc(hidden)]
macro_rules! wire_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        // The derive first: a struct's own `#[schemars(...)]` (its
        // `x-since`) is that derive's helper.
        #[derive(Debug, Clone, PartialEq, schemars::JsonSchema)]
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* #[schemars(transform = $crate::schema::describe_field::<$ty>)] pub $field: $ty,)*
        }

        impl $crate::schema::WireType for $name {
            fn wire_type() -> String {
                stringify!($name).to_owned()
            }
        }

        impl $name {
            /// The names of its fields on the wire, in declaration order.
            pub const FIELD_NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Number of map entries this value writes.
            pub fn field_count(&self) -> usize {
                0 $(+ usize::from(!$crate::wire::Wire::is_absent(&self.$field)))*
            }

            /// Writes the map entries (no header).
            pub fn write_fields(&self, w: &mut $crate::msgpack::WriteBuf<'_>) {
                $(
                    if !$crate::wire::Wire::is_absent(&self.$field) {
                        const NAME: [u8; stringify!($field).len() + 1] =
                            $crate::msgpack::write::fixstr(stringify!($field));
                        w.extend_from_slice(&NAME);
                        $crate::wire::Wire::write(&self.$field, w);
                    }
                )*
            }

            /// Reads the fields from an indexed map.
            pub fn from_table(t: &$crate::wire::FieldTable<'_>) -> Result<Self, $crate::error::WireError> {
                Ok($name { $($field: t.field(stringify!($field))?,)* })
            }
        }

        impl $crate::wire::Wire for $name {
            fn write(&self, w: &mut $crate::msgpack::WriteBuf<'_>) {
                $crate::wire::write_struct(w, self.field_count(), |w| self.write_fields(w));
            }
            /// One pass over the map ([`Self::read_entries`]).
            fn read(r: &mut $crate::msgpack::Reader<'_>) -> Result<Self, $crate::error::WireError> {
                let len = r.read_map_len()?;
                $crate::wire::check_struct_len(len)?;
                Self::read_entries(r, len, $crate::wire::UnknownNames::default())
            }
        }

        impl $name {
            /// Reads `len` map entries, once over them: each known field
            /// is read where it stands, unknown ones (a later minor
            /// version's, or a message's `op`) are checked and skipped;
            /// `unknown` holds the names read before (a message's `op`).
            /// Same results as [`Self::from_table`] over a
            /// [`$crate::wire::FieldTable`], without walking every value
            /// twice. A name is compared as bytes: one that matches a
            /// field's (ASCII) name needs no UTF-8 check, the others are
            /// checked.
            #[doc(hidden)]
            pub fn read_entries<'a>(
                r: &mut $crate::msgpack::Reader<'a>,
                len: usize,
                mut unknown: $crate::wire::UnknownNames<'a>,
            ) -> Result<Self, $crate::error::WireError> {
                use $crate::error::WireError;
                use $crate::wire::Wire;
                $(let mut $field: Option<$ty> = None;)*
                for _ in 0..len {
                    let entry = r.read_str_bytes().map_err(|e| e.in_field("<field name>"))?;
                    $(
                        if entry == stringify!($field).as_bytes() {
                            if $field.is_some() {
                                return Err($crate::wire::duplicate_field(stringify!($field)));
                            }
                            $field = Some(
                                <$ty as Wire>::read(r).map_err(|e| e.in_field(stringify!($field)))?,
                            );
                            continue;
                        }
                    )*
                    let entry = $crate::msgpack::check_utf8(entry)
                        .map_err(|e| e.in_field("<field name>"))?;
                    if !unknown.insert(entry) {
                        return Err($crate::wire::duplicate_field(entry));
                    }
                    r.skip_nested($crate::wire::FIELD_DEPTH_MAX, &mut |_| {})
                        .map_err(|e| e.in_field(entry))?;
                }
                Ok($name {
                    $($field: match $field {
                        Some(v) => v,
                        None => <$ty as Wire>::absent()
                            .ok_or_else(|| WireError::missing_field(stringify!($field)))?,
                    },)*
                })
            }
        }
    };
}

/// Defines a string enum: each variant is written as its name.
#[macro_export]
#[doc(hidden)]
macro_rules! wire_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[schemars(rename = $text)] $variant,)*
        }

        impl $name {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl $crate::wire::Wire for $name {
            fn write(&self, w: &mut $crate::msgpack::WriteBuf<'_>) {
                $crate::msgpack::write::str(w, self.as_str())
            }
            fn read(r: &mut $crate::msgpack::Reader<'_>) -> Result<Self, $crate::error::WireError> {
                let s = r.read_str()?;
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err($crate::error::WireError::wrong_type(
                        concat!("one of" $(, " ", $text)*),
                        &format!("{other:?}"),
                    )),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An array whose elements take at least their size in the frame is
    /// read into one allocation of its exact length (no doubling series).
    #[test]
    fn an_array_is_read_into_a_vec_of_its_length() {
        let n: u16 = 2000;
        let mut bytes = vec![0xdc];
        bytes.extend_from_slice(&n.to_be_bytes());
        for i in 0..n {
            bytes.push(0xa0 | 30);
            bytes.extend_from_slice(format!("{i:>30}").as_bytes());
        }
        let v = Vec::<String>::read(&mut Reader::new(&bytes)).expect("valid array");
        assert_eq!(v.len(), 2000);
        assert_eq!(v.capacity(), 2000);
        assert_eq!(v[1999].trim_start(), "1999");
    }

    /// A header claiming more elements than the frame holds is refused
    /// before anything is reserved for them.
    #[test]
    fn an_array_longer_than_its_frame_is_refused() {
        let bytes = [0xdd, 0xff, 0xff, 0xff, 0xff, 0xa0];
        assert!(Vec::<String>::read(&mut Reader::new(&bytes)).is_err());
    }
}
