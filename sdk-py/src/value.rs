//! Python objects <-> dask/1 values (msgpack trees).
//!
//! Exact built-in types travel as msgpack (None, bool, int in 64 bits,
//! float, str, bytes, list, dict with str keys), so a Rust, C or JS peer
//! reads them; everything else (tuples, numpy arrays, pandas frames, big
//! ints, subclasses) travels as a pickle, msgpack ext type 2, whose payload
//! `dask_rs._codec` writes and reads (pickle protocol 5, buffers out of band).
//! A client's futures become task references (ext type 1) in arguments.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use rmpv::Value;

/// The msgpack ext type of a pickled Python object (PROTOCOL.md, "Python codec").
pub const PICKLE_EXT: i8 = 2;

/// Where a received pickle payload starts in memory: the alignment the
/// codec gives buffers inside it (`dask_rs._codec.ALIGN`).
const PAYLOAD_ALIGN: usize = 64;

/// Nesting past this depth is pickled as one value: the protocol allows 100
/// levels per value, and a task's arguments add a level or two around it.
const NATIVE_DEPTH_MAX: usize = 90;

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static EXT_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static FUTURE_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What a [`to_value`] conversion may meet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refs {
    /// A client's arguments: futures become task references.
    Futures,
    /// A result or scattered data: a future is an ordinary (pickled) object.
    None,
}

/// The pickle payload of `obj` (ext type 2).
pub fn pickle(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let dumps = DUMPS.import(py, "dask_rs._codec", "dumps")?;
    let payload = dumps.call1((obj,))?;
    let payload = payload.cast::<PyBytes>()?;
    Ok(Value::Ext(PICKLE_EXT, payload.as_bytes().to_vec()))
}

/// `obj` as a dask/1 value.
pub fn to_value(py: Python<'_>, obj: &Bound<'_, PyAny>, refs: Refs) -> PyResult<Value> {
    to_value_at(py, obj, refs, 0)
}

fn to_value_at(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    refs: Refs,
    depth: usize,
) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    if obj.is_exact_instance_of::<PyBool>() {
        return Ok(Value::Boolean(obj.extract::<bool>()?));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return pickle(py, obj);
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Value::F64(obj.extract::<f64>()?));
    }
    if obj.is_exact_instance_of::<PyString>() {
        return Ok(Value::from(obj.cast::<PyString>()?.to_cow()?.as_ref()));
    }
    if obj.is_exact_instance_of::<PyBytes>() {
        return Ok(Value::Binary(obj.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    if depth < NATIVE_DEPTH_MAX {
        if obj.is_exact_instance_of::<PyList>() {
            let list = obj.cast::<PyList>()?;
            let mut items = Vec::with_capacity(list.len());
            for item in list.iter() {
                items.push(to_value_at(py, &item, refs, depth + 1)?);
            }
            return Ok(Value::Array(items));
        }
        if obj.is_exact_instance_of::<PyDict>() {
            let dict = obj.cast::<PyDict>()?;
            if dict
                .keys()
                .iter()
                .all(|k| k.is_exact_instance_of::<PyString>())
            {
                let mut entries = Vec::with_capacity(dict.len());
                for (k, v) in dict.iter() {
                    let k = Value::from(k.cast::<PyString>()?.to_cow()?.as_ref());
                    entries.push((k, to_value_at(py, &v, refs, depth + 1)?));
                }
                return Ok(Value::Map(entries));
            }
        }
    }
    let ext_type = EXT_TYPE.import(py, "dask_rs._codec", "ExtType")?;
    if obj.is_instance(ext_type)? {
        let (code, data): (i8, Vec<u8>) = obj.extract()?;
        return Ok(Value::Ext(code, data));
    }
    if refs == Refs::Futures {
        let future_type = FUTURE_TYPE.import(py, "dask_rs.client", "Future")?;
        if obj.is_instance(future_type)? {
            let key: String = obj.getattr("key")?.extract()?;
            return Ok(dask_core::msgpack::task_ref_value(&key));
        }
    }
    pickle(py, obj)
}

/// A dask/1 value as a Python object.
pub fn to_python(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Nil => py.None(),
        Value::Boolean(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(v), _) => v.into_pyobject(py)?.into_any().unbind(),
            (None, Some(v)) => v.into_pyobject(py)?.into_any().unbind(),
            _ => return Err(PyValueError::new_err("integer out of range")),
        },
        Value::F32(f) => PyFloat::new(py, f64::from(*f)).into_any().unbind(),
        Value::F64(f) => PyFloat::new(py, *f).into_any().unbind(),
        Value::String(s) => match s.as_str() {
            Some(s) => PyString::new(py, s).into_any().unbind(),
            None => PyBytes::new(py, s.as_bytes()).into_any().unbind(),
        },
        Value::Binary(b) => PyBytes::new(py, b).into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                let key = to_python(py, k)?;
                let key = key.bind(py);
                // A msgpack array is a valid map key; Python needs a hashable one.
                let key = match key.cast::<PyList>() {
                    Ok(list) => PyTuple::new(py, list.iter())?.into_any(),
                    Err(_) => key.clone(),
                };
                dict.set_item(key, to_python(py, v)?)?;
            }
            dict.into_any().unbind()
        }
        Value::Ext(PICKLE_EXT, payload) => {
            let loads = LOADS.import(py, "dask_rs._codec", "loads")?;
            // A bytearray, so that arrays built on its buffers are writable,
            // with the payload at a 64-byte aligned address (the codec aligns
            // buffers relative to the payload's start).
            let mut start = 0;
            let buffer = PyByteArray::new_with(py, payload.len() + PAYLOAD_ALIGN, |bytes| {
                start = bytes.as_ptr().align_offset(PAYLOAD_ALIGN);
                bytes[start..start + payload.len()].copy_from_slice(payload);
                Ok(())
            })?;
            loads.call1((buffer, start, payload.len()))?.unbind()
        }
        Value::Ext(code, payload) => {
            let ext_type = EXT_TYPE.import(py, "dask_rs._codec", "ExtType")?;
            ext_type.call1((*code, PyBytes::new(py, payload)))?.unbind()
        }
    })
}
