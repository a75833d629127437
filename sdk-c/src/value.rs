//! `dask_value`: a msgpack value tree built and read from C without
//! touching msgpack bytes, and `dask_bytes`, an owned byte buffer.

use std::ffi::c_char;

use dask_client::{Arg, Delayed, Future};
use dask_core::msgpack::VALUE_DEPTH_MAX;
use dask_core::RawValue;
use rmpv::Value;

use crate::error::{dask_error, dask_result, Failure, Fallible};
use crate::ffi::{self, borrow, borrow_mut, boxed, c_str, call, guard, out_value};

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

// ---- making values ------------------------------------------------------------

/// A new null value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_null() -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Null))
    })
}

/// A new bool value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_bool(value: bool) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Bool(value)))
    })
}

/// A new integer value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_int(value: i64) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Int(value)))
    })
}

/// A new unsigned integer value (for values above INT64_MAX). Never NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_uint(value: u64) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(match i64::try_from(value) {
            Ok(i) => Kind::Int(i),
            Err(_) => Kind::UInt(value),
        }))
    })
}

/// A new float value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_double(value: f64) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Float(value)))
    })
}

/// A new empty array; fill it with dask_value_array_push*. Never NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_array() -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value {
            kind: Kind::Array(Vec::new()),
            depth: 1,
        })
    })
}

/// A new empty map; fill it with dask_value_map_set. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_map() -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value {
            kind: Kind::Map(Vec::new()),
            depth: 1,
        })
    })
}

/// A new string value from a NUL-terminated UTF-8 string (copied).
/// `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_string(
    text: *const c_char,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_string", err, || {
        let out = ffi::out(out, "out")?;
        let text = c_str(text, "text")?;
        *out = boxed(dask_value::string(text));
        Ok(())
    })
}

/// A new binary value from `len` bytes at `data` (copied; (NULL, 0) is the
/// empty binary). `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_bytes(
    data: *const u8,
    len: usize,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_bytes", err, || {
        let out = ffi::out(out, "out")?;
        let data = ffi::bytes(data, len, "data")?;
        *out = boxed(dask_value::scalar(Kind::Bytes(data.to_vec())));
        Ok(())
    })
}

/// A new reference to the result of `future`, for the arguments of
/// dask_client_submit or dask_delayed_new: the task then runs on that
/// result. The value holds its own reference to the key (the future may be
/// freed). `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_future(
    future: *const crate::future::dask_future,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_future", err, || {
        let out = ffi::out(out, "out")?;
        let future = borrow(future, "future")?;
        *out = boxed(dask_value::scalar(Kind::Future(future.inner.clone())));
        Ok(())
    })
}

/// A new reference to the result of the delayed call `delayed`, for the
/// arguments of another call: computing that call computes this one first.
/// `*out` is owned by the caller (the delayed call may be freed). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_delayed(
    delayed: *const crate::delayed::dask_delayed,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_delayed", err, || {
        let out = ffi::out(out, "out")?;
        let delayed = borrow(delayed, "delayed")?;
        *out = boxed(dask_value::scalar(Kind::Delayed(delayed.inner.clone())));
        Ok(())
    })
}

/// Decodes `len` bytes of msgpack holding exactly one value (checked like
/// the protocol checks values: well formed, UTF-8 strings, at most 100
/// levels deep, nothing after it). `*out` is owned by the caller.
/// Bad bytes give DASK_INVALID_MSGPACK. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_from_msgpack(
    data: *const u8,
    len: usize,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_from_msgpack", err, || {
        let out = ffi::out(out, "out")?;
        let data = ffi::bytes(data, len, "data")?;
        *out = boxed(dask_value::from_msgpack(data)?);
        Ok(())
    })
}

/// Encodes `value` as msgpack (canonical: smallest forms, floats as 64-bit;
/// a task reference becomes ext type 1 holding its key). `*out` is owned by
/// the caller (dask_bytes_free). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_to_msgpack(
    value: *const dask_value,
    out: *mut *mut dask_bytes,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_to_msgpack", err, || {
        let out = ffi::out(out, "out")?;
        let value = borrow(value, "value")?;
        let raw = RawValue::from_value(&value.to_rmpv(true)?);
        *out = boxed(dask_bytes {
            data: raw.into_bytes(),
        });
        Ok(())
    })
}

/// A deep copy of `value`, owned by the caller; NULL for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_clone(value: *const dask_value) -> *mut dask_value {
    guard(std::ptr::null_mut(), || match unsafe { value.as_ref() } {
        Some(v) => boxed(v.deep_clone()),
        None => std::ptr::null_mut(),
    })
}

/// Frees a value made by the library (not one borrowed from another value).
/// NULL is a no-op. No other call on `value` may be in progress.
#[no_mangle]
pub extern "C" fn dask_value_free(value: *mut dask_value) {
    ffi::free_box(value);
}

// ---- reading values -----------------------------------------------------------

/// The type of `value`; DASK_TYPE_INVALID for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_type(value: *const dask_value) -> dask_type {
    guard(dask_type::DASK_TYPE_INVALID, || {
        match unsafe { value.as_ref() } {
            Some(v) => v.value_type(),
            None => dask_type::DASK_TYPE_INVALID,
        }
    })
}

/// Number of items of an array, entries of a map, or bytes of a string or
/// binary; 0 for other values and for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_len(value: *const dask_value) -> usize {
    guard(0, || match unsafe { value.as_ref() }.map(|v| &v.kind) {
        Some(Kind::Array(items)) => items.len(),
        Some(Kind::Map(entries)) => entries.len(),
        Some(Kind::Str(s)) => s.len() - 1,
        Some(Kind::Bytes(b)) => b.len(),
        _ => 0,
    })
}

/// Reads a bool into `*out`. Other types give DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_as_bool(
    value: *const dask_value,
    out: *mut bool,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_as_bool", err, || {
        let out = out_value(out, "out")?;
        let value = borrow(value, "value")?;
        match value.kind {
            Kind::Bool(b) => *out = b,
            _ => return Err(Failure::wrong_type("a bool", value.type_name())),
        }
        Ok(())
    })
}

/// Reads an integer into `*out`. An integer above INT64_MAX gives
/// DASK_OUT_OF_RANGE (use dask_value_as_uint); other types DASK_WRONG_TYPE.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_as_int(
    value: *const dask_value,
    out: *mut i64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_as_int", err, || {
        let out = out_value(out, "out")?;
        let value = borrow(value, "value")?;
        match value.kind {
            Kind::Int(i) => *out = i,
            Kind::UInt(u) => {
                return Err(Failure::new(
                    dask_result::DASK_OUT_OF_RANGE,
                    format!("{u} does not fit in int64_t"),
                ))
            }
            _ => return Err(Failure::wrong_type("an integer", value.type_name())),
        }
        Ok(())
    })
}

/// Reads a non-negative integer into `*out`. A negative integer gives
/// DASK_OUT_OF_RANGE; other types DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_as_uint(
    value: *const dask_value,
    out: *mut u64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_as_uint", err, || {
        let out = out_value(out, "out")?;
        let value = borrow(value, "value")?;
        match value.kind {
            Kind::UInt(u) => *out = u,
            Kind::Int(i) => {
                *out = u64::try_from(i).map_err(|_| {
                    Failure::new(
                        dask_result::DASK_OUT_OF_RANGE,
                        format!("{i} is negative: it does not fit in uint64_t"),
                    )
                })?
            }
            _ => return Err(Failure::wrong_type("an integer", value.type_name())),
        }
        Ok(())
    })
}

/// Reads a number into `*out`: a float, or an integer converted to double.
/// Other types give DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_as_double(
    value: *const dask_value,
    out: *mut f64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_as_double", err, || {
        let out = out_value(out, "out")?;
        let value = borrow(value, "value")?;
        match value.kind {
            Kind::Float(f) => *out = f,
            Kind::Float32(f) => *out = f64::from(f),
            Kind::Int(i) => *out = i as f64,
            Kind::UInt(u) => *out = u as f64,
            _ => return Err(Failure::wrong_type("a number", value.type_name())),
        }
        Ok(())
    })
}

/// Points `*out` at a string's bytes, followed by a NUL (the string itself
/// may hold NULs: `*len`, when `len` is not NULL, gets its length in
/// bytes). Borrowed from `value`, valid while it lives unchanged. Other
/// types give DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_as_string(
    value: *const dask_value,
    out: *mut *const c_char,
    len: *mut usize,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_as_string", err, || {
        let out = out_value(out, "out")?;
        *out = std::ptr::null();
        let value = borrow(value, "value")?;
        let Kind::Str(s) = &value.kind else {
            return Err(Failure::wrong_type("a string", value.type_name()));
        };
        *out = s.as_ptr().cast();
        if let Some(len) = unsafe { len.as_mut() } {
            *len = s.len() - 1;
        }
        Ok(())
    })
}

/// Points `*data` at a binary's bytes and sets `*len` to their count.
/// Borrowed from `value`, valid while it lives unchanged (an empty binary
/// may give a NULL `*data`). Other types give DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_as_bytes(
    value: *const dask_value,
    data: *mut *const u8,
    len: *mut usize,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_as_bytes", err, || {
        let data = out_value(data, "data")?;
        *data = std::ptr::null();
        let len = out_value(len, "len")?;
        *len = 0;
        let value = borrow(value, "value")?;
        let Kind::Bytes(b) = &value.kind else {
            return Err(Failure::wrong_type("bytes", value.type_name()));
        };
        *data = if b.is_empty() {
            std::ptr::null()
        } else {
            b.as_ptr()
        };
        *len = b.len();
        Ok(())
    })
}

/// Points `*out` at item `index` of an array: borrowed from `array`, valid
/// while it lives unchanged (do not free it). An index past the end gives
/// DASK_OUT_OF_RANGE; a non-array DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_array_get(
    array: *const dask_value,
    index: usize,
    out: *mut *const dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_array_get", err, || {
        let out = out_value(out, "out")?;
        *out = std::ptr::null();
        let array = borrow(array, "array")?;
        let Kind::Array(items) = &array.kind else {
            return Err(Failure::wrong_type("an array", array.type_name()));
        };
        let item = items.get(index).ok_or_else(|| {
            Failure::new(
                dask_result::DASK_OUT_OF_RANGE,
                format!(
                    "index {index} is past the end of an array of {}",
                    items.len()
                ),
            )
        })?;
        *out = item;
        Ok(())
    })
}

/// Points `*key` and `*value` at entry `index` of a map (in insertion or
/// wire order): borrowed from `map`, valid while it lives unchanged. An
/// index past the end gives DASK_OUT_OF_RANGE; a non-map DASK_WRONG_TYPE.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_map_entry(
    map: *const dask_value,
    index: usize,
    key: *mut *const dask_value,
    value: *mut *const dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_map_entry", err, || {
        let key = out_value(key, "key")?;
        *key = std::ptr::null();
        let value = out_value(value, "value")?;
        *value = std::ptr::null();
        let map = borrow(map, "map")?;
        let Kind::Map(entries) = &map.kind else {
            return Err(Failure::wrong_type("a map", map.type_name()));
        };
        let (k, v) = entries.get(index).ok_or_else(|| {
            Failure::new(
                dask_result::DASK_OUT_OF_RANGE,
                format!(
                    "index {index} is past the end of a map of {}",
                    entries.len()
                ),
            )
        })?;
        *key = k;
        *value = v;
        Ok(())
    })
}

/// Points `*out` at the value of the entry whose key is the string `key`:
/// borrowed from `map`, valid while it lives unchanged. No such entry gives
/// DASK_NOT_FOUND; a non-map DASK_WRONG_TYPE. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_map_get(
    map: *const dask_value,
    key: *const c_char,
    out: *mut *const dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_map_get", err, || {
        let out = out_value(out, "out")?;
        *out = std::ptr::null();
        let map = borrow(map, "map")?;
        let key = c_str(key, "key")?;
        let Kind::Map(entries) = &map.kind else {
            return Err(Failure::wrong_type("a map", map.type_name()));
        };
        let (_, v) = entries
            .iter()
            .find(|(k, _)| k.str_bytes() == Some(key.as_bytes()))
            .ok_or_else(|| {
                Failure::new(
                    dask_result::DASK_NOT_FOUND,
                    format!("no key {key:?} in the map"),
                )
            })?;
        *out = v;
        Ok(())
    })
}

// ---- changing values ----------------------------------------------------------

/// Appends `item` to `array`. Consumes `item` (even on failure: do not use
/// or free it afterwards), so `dask_value_array_push(a, dask_value_new_int(1), NULL)`
/// does not leak. Not thread-safe for `array`.
#[no_mangle]
pub extern "C" fn dask_value_array_push(
    array: *mut dask_value,
    item: *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_array_push", err, || {
        let item = take(item, "item")?;
        borrow_mut(array, "array")?.push(item)
    })
}

/// Appends an integer to `array`. Not thread-safe for `array`.
#[no_mangle]
pub extern "C" fn dask_value_array_push_int(
    array: *mut dask_value,
    item: i64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_array_push_int", err, || {
        borrow_mut(array, "array")?.push(dask_value::scalar(Kind::Int(item)))
    })
}

/// Appends a float to `array`. Not thread-safe for `array`.
#[no_mangle]
pub extern "C" fn dask_value_array_push_double(
    array: *mut dask_value,
    item: f64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_array_push_double", err, || {
        borrow_mut(array, "array")?.push(dask_value::scalar(Kind::Float(item)))
    })
}

/// Appends a string (copied from a NUL-terminated UTF-8 string) to
/// `array`. Not thread-safe for `array`.
#[no_mangle]
pub extern "C" fn dask_value_array_push_string(
    array: *mut dask_value,
    item: *const c_char,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_array_push_string", err, || {
        let array = borrow_mut(array, "array")?;
        let item = c_str(item, "item")?;
        array.push(dask_value::string(item))
    })
}

/// Sets the entry of string key `key` (copied) to `value`, replacing an
/// entry of that key. Consumes `value` (even on failure). Not thread-safe
/// for `map`.
#[no_mangle]
pub extern "C" fn dask_value_map_set(
    map: *mut dask_value,
    key: *const c_char,
    value: *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_map_set", err, || {
        let value = take(value, "value")?;
        let map = borrow_mut(map, "map")?;
        let key = c_str(key, "key")?;
        map.map_set(key, value)
    })
}

// ---- bytes --------------------------------------------------------------------

/// The bytes of `bytes` (borrowed, valid until dask_bytes_free); NULL for
/// NULL or an empty buffer. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_bytes_data(bytes: *const dask_bytes) -> *const u8 {
    guard(std::ptr::null(), || match unsafe { bytes.as_ref() } {
        Some(b) if !b.data.is_empty() => b.data.as_ptr(),
        _ => std::ptr::null(),
    })
}

/// The number of bytes in `bytes`; 0 for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_bytes_len(bytes: *const dask_bytes) -> usize {
    guard(0, || unsafe { bytes.as_ref() }.map_or(0, |b| b.data.len()))
}

/// Frees a buffer. NULL is a no-op. No other call on `bytes` may be in
/// progress.
#[no_mangle]
pub extern "C" fn dask_bytes_free(bytes: *mut dask_bytes) {
    ffi::free_box(bytes);
}

impl dask_bytes {
    pub(crate) fn new(data: Vec<u8>) -> dask_bytes {
        dask_bytes { data }
    }
}
