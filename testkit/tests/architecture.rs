//! The "Architecture Invariant" lines of ARCHITECTURE.md that a grep or a
//! manifest can check, checked. (The others name their own test: the
//! schema's drift in `core/tests/generated.rs`, core on wasm32 in
//! `scripts/ci/wasm.sh`.) Each check reads the workspace's files; a
//! violation names the file and the line.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `.rs` files under `dir`, or `dir` itself when it is one.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Test modules live in `tests/` folders beside their code.
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its trailing `#[cfg(test)]` module (tests come last
/// in a file here).
fn without_tests(source: &str) -> &str {
    match source.find("#[cfg(test)]") {
        Some(at) => &source[..at],
        None => source,
    }
}

/// Every line of the library sources under `dirs` (tests aside) naming one
/// of `forbidden`, outside comments, as `path:line: text`.
fn lines_naming(dirs: &[&str], forbidden: &[&str], skip_files: &[&str]) -> Vec<String> {
    let root = root();
    let mut found = Vec::new();
    for dir in dirs {
        // A path that moved would make the check pass on nothing.
        assert!(root.join(dir).exists(), "{dir} is not in the tree");
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        for file in files {
            let rel = file.strip_prefix(&root).unwrap_or(&file).to_path_buf();
            let rel_text = rel.to_string_lossy().replace('\\', "/");
            if skip_files.iter().any(|s| rel_text == *s) {
                continue;
            }
            // A test module in a file of its own (`#[cfg(test)] mod tests;`)
            // is test code, as an inline one is to `without_tests`.
            if rel_text.ends_with("/tests.rs") || rel_text.contains("/tests/") {
                continue;
            }
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in without_tests(&source).lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if forbidden.iter().any(|f| code.contains(f)) {
                    found.push(format!("{rel_text}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn core_touches_no_socket_clock_thread_file_or_process() {
    let found = lines_naming(
        &["core/src"],
        &[
            "std::net",
            "std::fs",
            "std::thread",
            "std::process",
            "Instant::now",
            "SystemTime",
            "std::env",
        ],
        &[],
    );
    assert!(
        found.is_empty(),
        "core/ must stay pure (time comes in as a Timestamp, bytes as arguments):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_net_touches_socket_bytes() {
    // Everything that runs as part of a dask-rs process goes through
    // dask_net::Reactor (event loops) or dask_net::BlockingConn (tools).
    // (`conformance/` is a test tool that must write arbitrary bytes;
    // `bench/` and `fuzz/` are not part of a process.)
    let dirs: Vec<&str> = [
        "core/src",
        "scheduler/src",
        "worker/src",
        "inprocess/src",
        "client/src",
        "cluster/src",
        "sdk-c/src",
        "sdk-js/src",
        "sdk-py/src",
    ]
    .into_iter()
    .filter(|d| root().join(d).is_dir())
    .collect();
    assert!(dirs.len() >= 8, "only {dirs:?} found: is the root right?");
    let found = lines_naming(
        &dirs,
        &[
            "mio::net",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "UnixStream",
            "stream_mut",
            "set_nonblocking",
        ],
        &[],
    );
    assert!(
        found.is_empty(),
        "only net/ may touch sockets (use dask_net::Reactor or BlockingConn):\n{}",
        found.join("\n")
    );
}

#[test]
fn state_machines_read_no_clock_and_start_no_thread() {
    let found = lines_naming(
        &[
            "scheduler/src/state.rs",
            "scheduler/src/state",
            "inprocess/src/state.rs",
        ],
        &[
            "Instant::now",
            "SystemTime",
            "std::thread",
            "std::fs",
            "std::net",
        ],
        &[],
    );
    assert!(
        found.is_empty(),
        "the scheduler's and the in-process scheduler's state machines are pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_core_messages_defines_wire_messages() {
    let found: Vec<String> = lines_naming(&["core/src"], &["wire_struct!", "wire_enum!"], &[])
        .into_iter()
        .filter(|l| {
            !l.starts_with("core/src/messages/")
                && !l.contains("macro_rules!")
                && !l.starts_with("core/src/wire.rs:")
                && !l.starts_with("core/src/schema.rs:")
        })
        .collect();
    assert!(
        found.is_empty(),
        "wire types are defined in core/src/messages/ only (the schema is generated from it):\n{}",
        found.join("\n")
    );
}

#[test]
fn sdks_hold_no_protocol_logic() {
    // The SDKs drive core's client session and worker machine; they never
    // build or take apart protocol messages themselves. (sdk-js's codec.rs
    // exposes core's codec to JS for the golden vectors, as a tool; sdk-js
    // frames bytes for node:net with core's FrameDecoder/FrameEncoder, the
    // part net/ plays for Rust processes.)
    let dirs: Vec<&str> = ["sdk-c/src", "sdk-js/src", "sdk-py/src"]
        .into_iter()
        .filter(|d| root().join(d).is_dir())
        .collect();
    let found = lines_naming(&dirs, &["Message::", "Message {"], &["sdk-js/src/codec.rs"]);
    assert!(
        found.is_empty(),
        "an SDK names protocol messages or frames itself:\n{}",
        found.join("\n")
    );
}

/// The `dask-*` crates a manifest's `[section]` names.
fn workspace_deps(manifest: &str, section: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(manifest)).unwrap_or_default();
    let mut in_section = false;
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
            continue;
        }
        if in_section && line.starts_with("dask-") {
            let name = line
                .split(|c: char| c == '.' || c == '=' || c.is_whitespace())
                .next()
                .unwrap_or("");
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn the_client_crate_depends_on_core_and_net_only() {
    let mut deps = workspace_deps("client/Cargo.toml", "dependencies");
    deps.sort();
    assert_eq!(
        deps,
        ["dask-core", "dask-net"],
        "client/Cargo.toml [dependencies]"
    );
}

#[test]
fn testkit_is_a_dev_dependency_only() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap_or_default();
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .unwrap_or_default()
        .to_string();
    let mut checked = 0;
    for dir in std::fs::read_dir(root()).expect("workspace root").flatten() {
        let manifest = dir.path().join("Cargo.toml");
        let Some(name) = dir.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !manifest.is_file() || !members.contains(&format!("\"{name}\"")) {
            continue;
        }
        checked += 1;
        for section in ["dependencies", "build-dependencies"] {
            let deps = workspace_deps(&format!("{name}/Cargo.toml"), section);
            assert!(
                !deps.iter().any(|d| d == "dask-testkit"),
                "{name}/Cargo.toml names dask-testkit in [{section}]: tests only"
            );
        }
    }
    assert!(checked >= 8, "found only {checked} workspace members");
}

#[test]
fn no_async_runtime_in_the_build() {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    for runtime in ["tokio", "async-std", "smol", "async-executor", "actix-rt"] {
        assert!(
            !lock.contains(&format!("\nname = \"{runtime}\"\n")),
            "Cargo.lock holds {runtime}: the scheduler and the worker run on mio event loops"
        );
    }
}

#[test]
fn every_generated_file_in_the_table_is_checked_by_a_test() {
    // ARCHITECTURE.md's "Generated files" table: each row's file exists and
    // the test it names calls dask_testkit::generated::check.
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table = doc
        .split("\n## Generated files\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Generated files\" section");
    let mut rows = 0;
    for line in table.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let file = cells[1].trim_matches('`');
        let test = cells[3]
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("row {file}: no test named in {line}"));
        rows += 1;
        let has_file = if let Some(dir) = file.strip_suffix("/*.json") {
            root().join(dir).is_dir()
        } else {
            root().join(file).is_file()
        };
        assert!(has_file, "{file} is in the table but not in the tree");
        let source = std::fs::read_to_string(root().join(test)).unwrap_or_default();
        assert!(
            source.contains("generated::check"),
            "{test} (the check of {file}) does not call generated::check"
        );
    }
    assert!(rows >= 5, "the Generated files table has {rows} rows");
}
