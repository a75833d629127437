//! What TCP over loopback can do on this machine, with nothing of dask-rs
//! in the way: one process sends N bytes to another (a child process it
//! starts), which reads them into a buffer whose pages are mapped
//! beforehand. Blocking sockets, large reads and writes. This is the bound
//! a worker-to-worker transfer is measured against (issue 19 item 1).
//!
//! `cargo run --release -p dask-net --example loopback_bound -- [MB] [ROUNDS] [SOCKBUF_BYTES] [IO_BYTES]`
//! (default 1000 MB, 5 rounds, the kernel's socket buffers, 4 MiB per call).
//! Prints per round the MB/s (10^6 bytes) from the request to the last
//! byte, and the CPU milliseconds of the receiver and of the sender.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Instant;

mod bound;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--send") {
        return send(&args[1..]);
    }
    let arg = |i: usize, default: usize| bound::arg(&args, i, default);
    let bytes = arg(0, 1000) * 1_000_000;
    let rounds = arg(1, 5);
    let sockbuf = arg(2, 0);
    let io_bytes = arg(3, 4 << 20);

    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--send".to_owned(),
            addr.to_string(),
            bytes.to_string(),
            sockbuf.to_string(),
            io_bytes.to_string(),
        ])
        .spawn()
        .expect("start the sender");
    let (mut sock, _) = listener.accept().expect("accept");
    sock.set_nodelay(true).expect("nodelay");
    set_buffers(&sock, sockbuf);
    println!(
        "{} MB, socket buffers {} (receive {} / send {} as the kernel has them), {} bytes per call",
        bytes / 1_000_000,
        if sockbuf == 0 {
            "default".to_owned()
        } else {
            sockbuf.to_string()
        },
        sockopt(&sock, libc::SO_RCVBUF),
        sockopt(&sock, libc::SO_SNDBUF),
        io_bytes
    );
    // Mapped now, so that the rounds measure the socket, not page faults.
    let mut buf = vec![1u8; bytes];
    for round in 0..rounds {
        let cpu0 = bound::cpu_ns();
        let start = Instant::now();
        sock.write_all(&[1]).expect("request");
        let mut got = 0;
        while got < bytes {
            let end = (got + io_bytes).min(bytes);
            let n = sock.read(&mut buf[got..end]).expect("read");
            assert!(n > 0, "the sender closed after {got} bytes");
            got += n;
        }
        let seconds = start.elapsed().as_secs_f64();
        let receiver_ms = (bound::cpu_ns() - cpu0) as f64 / 1e6;
        let mut sender_ns = [0u8; 8];
        sock.read_exact(&mut sender_ns).expect("sender's CPU");
        let sender_ms = u64::from_le_bytes(sender_ns) as f64 / 1e6;
        assert_eq!(buf[bytes - 1], (bytes - 1) as u8, "the bytes sent");
        println!(
            "round {round}: {:.0} MB/s, CPU ms receiver {receiver_ms:.0} sender {sender_ms:.0}",
            bytes as f64 / seconds / 1e6
        );
    }
    drop(sock);
    child.wait().expect("sender exits");
}

/// The child: sends `bytes` bytes for each request byte, then its CPU
/// nanoseconds spent on that round.
fn send(args: &[String]) {
    let bytes: usize = args[1].parse().expect("bytes");
    let sockbuf: usize = args[2].parse().expect("socket buffer");
    let io_bytes: usize = args[3].parse().expect("bytes per call");
    let mut sock = TcpStream::connect(&args[0]).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    set_buffers(&sock, sockbuf);
    let data: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
    let mut request = [0u8; 1];
    while sock.read(&mut request).expect("request") == 1 {
        let cpu0 = bound::cpu_ns();
        let mut at = 0;
        while at < bytes {
            let end = (at + io_bytes).min(bytes);
            at += sock.write(&data[at..end]).expect("write");
        }
        sock.write_all(&(bound::cpu_ns() - cpu0).to_le_bytes())
            .expect("send CPU time");
    }
}

fn set_buffers(sock: &TcpStream, bytes: usize) {
    if bytes == 0 {
        return;
    }
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let v = bytes as libc::c_int;
        // SAFETY: a valid socket and a c_int option value of its size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "setsockopt");
    }
}

fn sockopt(sock: &TcpStream, opt: libc::c_int) -> libc::c_int {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket, and room for a c_int.
    unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    v
}
