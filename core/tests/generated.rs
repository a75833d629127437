//! The files this crate generates are what is committed: the JSON Schema
//! (`spec/schema/dask-1.schema.json`, from `core/src/messages/`) and the
//! golden vectors (`spec/vectors/*.json`, from `tests/vectors_gen`).
//! The convention: `dask_testkit::generated`.

mod vectors_gen;

use std::path::PathBuf;

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec")
}

#[test]
fn committed_schema_is_up_to_date() {
    let path = spec_dir().join("schema/dask-1.schema.json");
    dask_testkit::generated::check(&path, &dask_core::schema::generate());
}

#[test]
fn committed_vectors_are_up_to_date() {
    for (name, generated) in vectors_gen::files() {
        dask_testkit::generated::check(&spec_dir().join("vectors").join(name), &generated);
    }
}
