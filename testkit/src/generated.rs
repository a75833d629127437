//! The one convention for committed generated files (the schema, the
//! vectors, the conformance case schema and tables, `libdask.h`; the table
//! is in ARCHITECTURE.md, "Generated files"): a test generates the file in
//! memory and fails when the committed file differs. `scripts/regenerate.sh`
//! runs those tests with `DASK_REGENERATE=1`, under which they write the
//! file instead; review the diff and commit it.
//!
//! Tests never write the tree otherwise, so a run cannot race other tests
//! reading the committed files, and CI sees the drift instead of fixing it.

use std::path::Path;

/// The variable under which [`check`] writes instead of failing.
pub const REGENERATE_VAR: &str = "DASK_REGENERATE";

/// Panics unless `path` holds exactly `generated`; with
/// `DASK_REGENERATE` set, writes it instead.
pub fn check(path: &Path, generated: &str) {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed == generated {
        return;
    }
    if std::env::var_os(REGENERATE_VAR).is_some() {
        std::fs::write(path, generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    panic!(
        "{} is not up to date: run `scripts/regenerate.sh` and commit",
        path.display()
    );
}
