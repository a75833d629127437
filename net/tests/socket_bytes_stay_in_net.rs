//! Architecture invariant: only `net/` reads or writes a dask/1 socket's
//! bytes. The other crates' library and binary sources (their tests and
//! `#[cfg(test)]` modules aside) must not name sockets, mio's networking
//! or the connection's stream: they go through `dask_net::Reactor` (event
//! loops) or `dask_net::BlockingConn` (tools).

use std::path::{Path, PathBuf};

/// What a source outside `net/` must not name.
const FORBIDDEN: &[&str] = &[
    "mio::net",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "stream_mut",
    "set_nonblocking",
];

/// Crates whose `src/` is checked: everything that runs as part of a
/// dask-rs process. (`conformance/` is a test tool that must write
/// arbitrary bytes; `bench/` and `fuzz/` are not part of a process.)
const CHECKED_CRATES: &[&str] = &[
    "core",
    "scheduler",
    "worker",
    "client",
    "cluster",
    "sdk-c",
    "sdk-js",
];

/// Files allowed to touch sockets for now, each with the reason.
const NOT_YET: &[(&str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
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

#[test]
fn only_net_touches_socket_bytes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut checked = 0;
    let mut offences = Vec::new();
    for krate in CHECKED_CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for file in files {
            let relative = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            if NOT_YET.iter().any(|(f, _)| *f == relative) {
                continue;
            }
            let source = std::fs::read_to_string(&file).expect("read source");
            checked += 1;
            for (n, line) in without_tests(&source).lines().enumerate() {
                for word in FORBIDDEN {
                    if line.contains(word) {
                        offences.push(format!("{relative}:{}: `{word}`: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} files found: is the root right?"
    );
    assert!(
        offences.is_empty(),
        "only net/ may touch sockets (use dask_net::Reactor or BlockingConn):\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_exceptions_still_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for (file, why) in NOT_YET {
        assert!(
            root.join(file).exists(),
            "{file} is gone: remove it from NOT_YET ({why})"
        );
    }
}
