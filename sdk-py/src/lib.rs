//! `dask_rs._native`: the PyO3 layer of the `dask_rs` Python package over
//! the Rust client, worker and scheduler. It holds no protocol logic (the
//! Rust crates do) and little Python logic (`sdk-py/python/dask_rs` does);
//! it converts values, releases the GIL around every wait, and turns Rust
//! errors into the package's exceptions.

use pyo3::prelude::*;

mod client;
mod errors;
mod security;
mod value;
mod worker;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::NativeClient>()?;
    m.add_class::<client::NativeFuture>()?;
    m.add_class::<client::NativeAsCompleted>()?;
    m.add_class::<worker::NativeWorker>()?;
    m.add_class::<worker::NativeScheduler>()?;
    m.add("CLOUDPICKLE_FUNCTION", worker::CLOUDPICKLE_FUNCTION)?;
    m.add("PICKLE_EXT", value::PICKLE_EXT)?;
    Ok(())
}
