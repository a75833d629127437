//! Changing values: pushing onto arrays, setting map entries.

use std::ffi::c_char;

use crate::error::{dask_error, dask_result};
use crate::ffi::{borrow_mut, c_str, call};

use super::*;

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
