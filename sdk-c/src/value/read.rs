//! Reading values: type, length, scalars, strings and bytes, array items
//! and map entries.

use std::ffi::c_char;

use crate::error::{dask_error, dask_result, Failure};
use crate::ffi::{borrow, c_str, call, guard, out_value};

use super::*;

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
