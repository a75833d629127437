//! Embeds every case file under `cases/` in the binary, so that a third
//! party gets one self-contained executable (`--cases DIR` still reads a
//! directory instead).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "json")
            && !path.to_string_lossy().ends_with(".schema.json")
        {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let cases = root.join("cases");
    println!("cargo:rerun-if-changed=cases");
    let mut files = Vec::new();
    collect(&cases, &mut files);
    files.sort();
    let mut code =
        String::from("/// Case files compiled into the binary: (path under cases/, text).\n");
    code.push_str("pub static EMBEDDED_CASES: &[(&str, &str)] = &[\n");
    for file in &files {
        let rel = file
            .strip_prefix(&cases)
            .expect("under cases/")
            .to_string_lossy()
            .replace('\\', "/");
        let _ = writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            file.to_string_lossy()
        );
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("embedded_cases.rs");
    std::fs::write(out, code).expect("write embedded_cases.rs");
}
