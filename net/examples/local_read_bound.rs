//! What one copy between two processes of one host can do here, with no
//! socket: a child process holds N bytes, and this process copies them
//! with `process_vm_readv` (one kernel copy, holder's pages to ours) into
//! a fresh buffer and into a buffer whose pages are mapped already (as a
//! kept value buffer's are), alternated. The bound of a same-host value
//! path, beside `loopback_bound`'s for TCP (issue 19 item 1: 4x Dask's
//! 1 GB rate is above what TCP over loopback does here).
//!
//! `cargo run --release -p dask-net --example local_read_bound -- [MB] [ROUNDS] [THREADS]`
//! (default 1000 MB, 3 rounds, 1 thread; with THREADS the range is split
//! in that many parts, each copied by a thread of its own, as a worker
//! splits a large read: each faults its own part's fresh pages). Prints per round and buffer the MB/s
//! (10^6 bytes) and this process's CPU milliseconds (the holder spends
//! none). Fails where the kernel refuses the read (Yama's ptrace_scope 2
//! or 3, seccomp, another user).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

mod bound;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--hold") {
        return hold(&args[1]);
    }
    let arg = |i: usize, default: usize| bound::arg(&args, i, default);
    let bytes = arg(0, 1000) * 1_000_000;
    let rounds = arg(1, 3);
    let threads = arg(2, 1).max(1);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--hold".to_owned(), bytes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("holder's stdout"))
        .read_line(&mut line)
        .expect("the holder's address");
    let remote: usize = line.trim().parse().expect("an address");
    let pid = child.id() as libc::pid_t;
    println!(
        "{} MB held by process {pid}, copied by {threads} thread(s)",
        bytes / 1_000_000
    );
    let mut kept = vec![1u8; bytes];
    for round in 0..rounds {
        for fresh in [true, false] {
            let mut fresh_buffer = Vec::new();
            let buf = if fresh {
                fresh_buffer = vec![0u8; bytes];
                &mut fresh_buffer
            } else {
                &mut kept
            };
            let cpu0 = bound::cpu_ns();
            let start = Instant::now();
            let part = bytes.div_ceil(threads);
            std::thread::scope(|s| {
                for (i, chunk) in buf.chunks_mut(part).enumerate() {
                    s.spawn(move || copy(pid, remote + i * part, chunk));
                }
            });
            let seconds = start.elapsed().as_secs_f64();
            let cpu_ms = (bound::cpu_ns() - cpu0) as f64 / 1e6;
            for i in (0..bytes).step_by(4093).chain([bytes - 1]) {
                assert_eq!(buf[i], i as u8, "byte {i} as held");
            }
            println!(
                "round {round}, {} buffer: {:.0} MB/s, CPU ms {cpu_ms:.0}",
                if fresh { "fresh" } else { "kept " },
                bytes as f64 / seconds / 1e6
            );
            drop(fresh_buffer);
        }
    }
    drop(child.stdin.take());
    child.wait().expect("holder exits");
}

/// Copies `into.len()` bytes at `remote` in process `pid` into `into`.
fn copy(pid: libc::pid_t, remote: usize, into: &mut [u8]) {
    let len = into.len();
    let mut at = 0;
    while at < len {
        let local = libc::iovec {
            iov_base: into[at..].as_mut_ptr().cast(),
            iov_len: len - at,
        };
        let from = libc::iovec {
            iov_base: (remote + at) as *mut libc::c_void,
            iov_len: len - at,
        };
        // SAFETY: `local` is inside `into`, which this thread holds
        // mutably; the remote range is the holder's, read by the kernel
        // (an address that is not is an error, EFAULT).
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &from, 1, 0) };
        assert!(
            n > 0,
            "process_vm_readv: {}",
            std::io::Error::last_os_error()
        );
        at += n as usize;
    }
}

/// The child: holds `bytes` bytes, says where on stdout, and exits when
/// its stdin closes.
fn hold(bytes: &str) {
    let bytes: usize = bytes.parse().expect("bytes");
    let data: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
    let mut out = std::io::stdout();
    writeln!(out, "{}", data.as_ptr() as usize).expect("say where");
    out.flush().expect("flush");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(data);
}
