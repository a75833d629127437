//! Generates the C header from this crate's source with cbindgen (pinned
//! in Cargo.toml) into OUT_DIR. The committed `include/libdask.h` is
//! compared with it by `tests/header.rs`, which also updates it.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    soname();
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("sdk-c/cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can read the crate's source");
    bindings.write_to_file(out_dir.join("libdask.h"));
}

/// libdask.so's SONAME: `libdask.so.MAJOR`, or `libdask.so.0.MINOR` while
/// the major is 0 (every 0.x minor may break the ABI, as semver has it;
/// cargo-c names 0.x libraries the same way). Programs linked against it
/// record this name, so an incompatible libdask is never loaded in its
/// place. `make -C sdk-c install` makes the links.
fn soname() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets it");
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdask.so.{abi}");
}
