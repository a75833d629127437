//! `dask_value`: a msgpack value tree built and read from C without
//! touching msgpack bytes, and `dask_bytes`, an owned byte buffer.

use dask_client::{Arg, Delayed, Future};
use dask_core::msgpack::VALUE_DEPTH_MAX;
use dask_core::RawValue;
use rmpv::Value;

use crate::error::{dask_result, Failure, Fallible};

/// A msgpack value: null, bool, integer, float, string, bytes, array, map,
/// ext, or a reference to the result of a task (dask_value_new_future,
/// dask_value_new_delayed). Made by a dask_value_new_* function,
/// dask_value_from_msgpack, a result call, or dask_value_clone; freed with
/// dask_value_free. Values nest at most 100 containers deep (the dask/1 limit).
/// Reading a value from several threads at once is safe; changing it
/// (push, set) is not.
pub struct dask_value {
    kind: Kind,
    /// Containers nested in this value, itself included (0 for a scalar).
    depth: usize,
}

enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A 32-bit float read from msgpack, kept so that it goes back as one.
    Float32(f32),
    /// The bytes followed by one NUL, so C can read them as a C string.
    Str(Vec<u8>),
    Bytes(Vec<u8>),
    Array(Vec<dask_value>),
    Map(Vec<(dask_value, dask_value)>),
    Ext(i8, Vec<u8>),
    Delayed(Delayed),
    Future(Future),
}

/// The type of a dask_value (dask_value_type).
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dask_type {
    /// msgpack nil.
    DASK_TYPE_NULL = 0,
    /// true or false.
    DASK_TYPE_BOOL = 1,
    /// An integer (read it with dask_value_as_int, or dask_value_as_uint
    /// for values above INT64_MAX).
    DASK_TYPE_INT = 2,
    /// A float (32-bit floats read as double).
    DASK_TYPE_FLOAT = 3,
    /// A string.
    DASK_TYPE_STRING = 4,
    /// A binary.
    DASK_TYPE_BYTES = 5,
    /// An array.
    DASK_TYPE_ARRAY = 6,
    /// A map.
    DASK_TYPE_MAP = 7,
    /// An ext value (type and bytes), e.g. a task reference read from msgpack.
    DASK_TYPE_EXT = 8,
    /// A reference to a future's or a delayed call's result.
    DASK_TYPE_TASK_REF = 9,
    /// Not a value: the pointer was NULL.
    DASK_TYPE_INVALID = 10,
}

/// An owned byte buffer (e.g. msgpack produced by the library). Read it
/// with dask_bytes_data and dask_bytes_len; free it with dask_bytes_free.
pub struct dask_bytes {
    data: Vec<u8>,
}

impl dask_value {
    fn scalar(kind: Kind) -> dask_value {
        dask_value { kind, depth: 0 }
    }

    pub(crate) fn string(s: &str) -> dask_value {
        let mut bytes = Vec::with_capacity(s.len() + 1);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        dask_value::scalar(Kind::Str(bytes))
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a bool",
            Kind::Int(_) | Kind::UInt(_) => "an integer",
            Kind::Float(_) | Kind::Float32(_) => "a float",
            Kind::Str(_) => "a string",
            Kind::Bytes(_) => "bytes",
            Kind::Array(_) => "an array",
            Kind::Map(_) => "a map",
            Kind::Ext(..) => "an ext value",
            Kind::Delayed(_) | Kind::Future(_) => "a task reference",
        }
    }

    fn value_type(&self) -> dask_type {
        use dask_type::*;
        match self.kind {
            Kind::Null => DASK_TYPE_NULL,
            Kind::Bool(_) => DASK_TYPE_BOOL,
            Kind::Int(_) | Kind::UInt(_) => DASK_TYPE_INT,
            Kind::Float(_) | Kind::Float32(_) => DASK_TYPE_FLOAT,
            Kind::Str(_) => DASK_TYPE_STRING,
            Kind::Bytes(_) => DASK_TYPE_BYTES,
            Kind::Array(_) => DASK_TYPE_ARRAY,
            Kind::Map(_) => DASK_TYPE_MAP,
            Kind::Ext(..) => DASK_TYPE_EXT,
            Kind::Delayed(_) | Kind::Future(_) => DASK_TYPE_TASK_REF,
        }
    }

    /// A copy (futures inside are new references to the same keys).
    fn deep_clone(&self) -> dask_value {
        let kind = match &self.kind {
            Kind::Null => Kind::Null,
            Kind::Bool(b) => Kind::Bool(*b),
            Kind::Int(i) => Kind::Int(*i),
            Kind::UInt(u) => Kind::UInt(*u),
            Kind::Float(f) => Kind::Float(*f),
            Kind::Float32(f) => Kind::Float32(*f),
            Kind::Str(s) => Kind::Str(s.clone()),
            Kind::Bytes(b) => Kind::Bytes(b.clone()),
            Kind::Array(items) => Kind::Array(items.iter().map(dask_value::deep_clone).collect()),
            Kind::Map(entries) => Kind::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.deep_clone(), v.deep_clone()))
                    .collect(),
            ),
            Kind::Ext(t, data) => Kind::Ext(*t, data.clone()),
            Kind::Delayed(d) => Kind::Delayed(d.clone()),
            Kind::Future(f) => Kind::Future(f.clone()),
        };
        dask_value {
            kind,
            depth: self.depth,
        }
    }

    /// A tree from a decoded msgpack value (already depth-checked by the
    /// decoder that made it).
    pub(crate) fn from_rmpv(v: Value) -> dask_value {
        match v {
            Value::Nil => dask_value::scalar(Kind::Null),
            Value::Boolean(b) => dask_value::scalar(Kind::Bool(b)),
            Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
                (Some(i), _) => dask_value::scalar(Kind::Int(i)),
                (None, Some(u)) => dask_value::scalar(Kind::UInt(u)),
                // rmpv integers are i64 or u64: one of the two holds.
                (None, None) => dask_value::scalar(Kind::Null),
            },
            Value::F32(f) => dask_value::scalar(Kind::Float32(f)),
            Value::F64(f) => dask_value::scalar(Kind::Float(f)),
            Value::String(s) => {
                let mut bytes = s.into_bytes();
                bytes.push(0);
                dask_value::scalar(Kind::Str(bytes))
            }
            Value::Binary(b) => dask_value::scalar(Kind::Bytes(b)),
            Value::Array(items) => {
                let items: Vec<dask_value> = items.into_iter().map(dask_value::from_rmpv).collect();
                let depth = 1 + items.iter().map(|i| i.depth).max().unwrap_or(0);
                dask_value {
                    kind: Kind::Array(items),
                    depth,
                }
            }
            Value::Map(entries) => {
                let entries: Vec<(dask_value, dask_value)> = entries
                    .into_iter()
                    .map(|(k, v)| (dask_value::from_rmpv(k), dask_value::from_rmpv(v)))
                    .collect();
                let depth = 1 + entries
                    .iter()
                    .map(|(k, v)| k.depth.max(v.depth))
                    .max()
                    .unwrap_or(0);
                dask_value {
                    kind: Kind::Map(entries),
                    depth,
                }
            }
            Value::Ext(t, data) => dask_value::scalar(Kind::Ext(t, data)),
        }
    }

    /// Decodes one msgpack value, checked as the protocol checks values
    /// (well formed, UTF-8 strings, depth, nothing after it).
    pub(crate) fn from_msgpack(bytes: &[u8]) -> Fallible<dask_value> {
        let raw = RawValue::from_bytes(bytes.to_vec()).map_err(|e| {
            Failure::new(
                dask_result::DASK_INVALID_MSGPACK,
                format!("not one valid msgpack value: {}", e.message),
            )
        })?;
        let value = raw
            .to_value()
            .map_err(|e| Failure::new(dask_result::DASK_INVALID_MSGPACK, e.message.to_string()))?;
        Ok(dask_value::from_rmpv(value))
    }

    /// The plain msgpack tree. Task references (futures, delayed calls)
    /// become ext-1 references only where `refs` allows them.
    pub(crate) fn to_rmpv(&self, refs: bool) -> Fallible<Value> {
        Ok(match &self.kind {
            Kind::Null => Value::Nil,
            Kind::Bool(b) => Value::Boolean(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::UInt(u) => Value::from(*u),
            Kind::Float(f) => Value::F64(*f),
            Kind::Float32(f) => Value::F32(*f),
            Kind::Str(s) => {
                let text = &s[..s.len() - 1];
                Value::from(String::from_utf8_lossy(text).into_owned())
            }
            Kind::Bytes(b) => Value::Binary(b.clone()),
            Kind::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.to_rmpv(refs))
                    .collect::<Fallible<_>>()?,
            ),
            Kind::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.to_rmpv(refs)?, v.to_rmpv(refs)?)))
                    .collect::<Fallible<_>>()?,
            ),
            Kind::Ext(t, data) => Value::Ext(*t, data.clone()),
            Kind::Delayed(_) | Kind::Future(_) if !refs => {
                return Err(Failure::invalid(
                    "a task reference (future or delayed) cannot be stored here: it is only allowed in the arguments of a call",
                ))
            }
            Kind::Delayed(d) => dask_core::msgpack::task_ref_value(d.key().as_str()),
            Kind::Future(f) => dask_core::msgpack::task_ref_value(f.key().as_str()),
        })
    }

    /// The value as one argument of a call: references to delayed calls
    /// and futures become dependencies (at any depth in arrays; inside maps
    /// they are refused, since a map cannot carry them as dependencies).
    pub(crate) fn to_arg(&self) -> Fallible<Arg> {
        Ok(match &self.kind {
            Kind::Delayed(d) => Arg::Delayed(d.clone()),
            Kind::Future(f) => Arg::Future(f.clone()),
            Kind::Array(items) if items.iter().any(dask_value::has_refs) => Arg::List(
                items
                    .iter()
                    .map(dask_value::to_arg)
                    .collect::<Fallible<_>>()?,
            ),
            _ => Arg::Value(self.to_rmpv(false)?),
        })
    }

    fn has_refs(&self) -> bool {
        match &self.kind {
            Kind::Delayed(_) | Kind::Future(_) => true,
            Kind::Array(items) => items.iter().any(dask_value::has_refs),
            Kind::Map(entries) => entries.iter().any(|(k, v)| k.has_refs() || v.has_refs()),
            _ => false,
        }
    }

    /// The arguments of a call: an array (one argument per item) or, for
    /// no arguments, none.
    pub(crate) fn to_args(args: Option<&dask_value>) -> Fallible<Vec<Arg>> {
        match args {
            None => Ok(Vec::new()),
            Some(dask_value {
                kind: Kind::Array(items),
                ..
            }) => items.iter().map(dask_value::to_arg).collect(),
            Some(other) => Err(Failure::invalid(format!(
                "the arguments of a call must be an array, got {}",
                other.type_name()
            ))),
        }
    }

    fn push(&mut self, item: dask_value) -> Fallible {
        let Kind::Array(items) = &mut self.kind else {
            return Err(Failure::wrong_type("an array", self.type_name()));
        };
        check_depth(item.depth)?;
        self.depth = self.depth.max(item.depth + 1);
        items.push(item);
        Ok(())
    }

    fn map_set(&mut self, key: &str, value: dask_value) -> Fallible {
        let Kind::Map(entries) = &mut self.kind else {
            return Err(Failure::wrong_type("a map", self.type_name()));
        };
        check_depth(value.depth)?;
        self.depth = self.depth.max(value.depth + 1);
        let key_value = dask_value::string(key);
        match entries
            .iter_mut()
            .find(|(k, _)| k.str_bytes() == Some(key.as_bytes()))
        {
            Some(entry) => entry.1 = value,
            None => entries.push((key_value, value)),
        }
        Ok(())
    }

    /// A string's bytes without the NUL kept for C.
    fn str_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Str(s) => Some(&s[..s.len() - 1]),
            _ => None,
        }
    }
}

fn check_depth(item_depth: usize) -> Fallible {
    if item_depth + 1 > VALUE_DEPTH_MAX {
        return Err(Failure::new(
            dask_result::DASK_OUT_OF_RANGE,
            format!("values nest at most {VALUE_DEPTH_MAX} containers deep"),
        ));
    }
    Ok(())
}

/// Takes over a value handed in by C ("consumes"): NULL gives a failure.
fn take(p: *mut dask_value, what: &str) -> Fallible<dask_value> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: a value pointer from the library, which the caller gives up.
    Ok(*unsafe { Box::from_raw(p) })
}

// In this order, one group each: cbindgen writes the header module by
// module, and libdask.h keeps the order of the file they came from.
mod make;

mod read;

mod change;

mod bytes;

pub use bytes::*;
pub use change::*;
pub use make::*;
pub use read::*;

impl dask_bytes {
    pub(crate) fn new(data: Vec<u8>) -> dask_bytes {
        dask_bytes { data }
    }
}
