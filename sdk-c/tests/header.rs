//! The committed `include/libdask.h` is exactly what cbindgen (run by
//! build.rs) generates from the source, and its version macros match
//! Cargo.toml. On a difference the test fails; `scripts/regenerate.sh`
//! writes the header (ARCHITECTURE.md, "Generated files").

use std::ffi::CStr;
use std::path::Path;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/libdask.h"));

#[test]
fn committed_header_is_up_to_date() {
    dask_testkit::generated::check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("include/libdask.h"),
        GENERATED,
    );
}

#[test]
fn version_macros_match_cargo_toml() {
    for (name, value) in [
        ("DASK_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("DASK_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("DASK_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {value}\n");
        assert!(
            GENERATED.contains(&line),
            "libdask.h should contain {line:?}: update the constant in sdk-c/src/lib.rs"
        );
    }
    // SAFETY: dask_version returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(dask::dask_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_exported_name_has_the_dask_prefix() {
    for line in GENERATED.lines() {
        let Some(open) = line.find('(') else { continue };
        if line.starts_with(' ')
            || line.starts_with('*')
            || line.starts_with('#')
            || line.starts_with("typedef")
        {
            continue;
        }
        let name = line[..open].rsplit([' ', '*']).next().unwrap_or("");
        if !name.is_empty() {
            assert!(
                name.starts_with("dask_"),
                "exported function {name:?} lacks the dask_ prefix"
            );
        }
    }
}
