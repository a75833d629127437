//! The committed JSON Schema matches what the message types generate.

use std::path::PathBuf;

#[test]
fn committed_schema_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/schema/dask-1.schema.json");
    let generated = dask_core::schema::generate();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        if std::env::var_os("DASK_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).expect("write schema");
            return;
        }
        panic!(
            "spec/schema/dask-1.schema.json is not up to date: run `DASK_UPDATE_SCHEMA=1 cargo test -p dask-core --test schema` and commit"
        );
    }
}
