//! The runner as a worker of the same host (dask/1.1 feature `value-local`,
//! PROTOCOL.md "Values on one host"): who it says it is in a peer `hello`
//! (`local`: a host tag, its pid, where its probe is), and its copies of
//! values a worker under test lends it, read from that worker's memory.
//!
//! The runner knows no host id file: it learns the worker's host tag from
//! the worker's own hello (a data connection greeted as another host, or
//! the worker's hello to the runner's peer) and says the same tag back, as
//! a second worker of that host would. So the cases need nothing beyond
//! the spec from the worker under test.

use std::sync::OnceLock;

use dask_core::json::to_hex;
use rmpv::Value;
use serde_json::{json, Value as Json};

use crate::auth::random32;
use crate::value::map_get as field;

/// The feature's name in hellos.
pub const VALUE_LOCAL: &str = "value-local";

/// Most bytes the runner copies from a worker in one read (a lying
/// `nbytes` is refused before any memory is reserved for it).
pub const READ_BYTES_MAX: u64 = 256 << 20;

/// The runner's probe: 32 random bytes at a fixed address for the whole
/// run, what a worker reading the runner's memory checks first.
fn probe() -> &'static [u8; 32] {
    static PROBE: OnceLock<Box<[u8; 32]>> = OnceLock::new();
    PROBE.get_or_init(|| Box::new(random32().unwrap_or([0x5a; 32])))
}

/// Who a worker is on its host, from the `local` of its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHost {
    /// Its host tag.
    pub host: Vec<u8>,
    /// Its process id.
    pub pid: u64,
    /// Where its probe is in its memory.
    pub probe_at: u64,
    /// What must be there.
    pub probe: Vec<u8>,
}

impl LocalHost {
    /// The `local` of a hello (a msgpack map), if it has a well-formed one.
    pub fn of_hello(hello: &Value) -> Option<LocalHost> {
        let local = field(hello, "local")?;
        let bin = |name| {
            field(local, name)
                .and_then(Value::as_slice)
                .map(<[u8]>::to_vec)
        };
        let uint = |name| field(local, name).and_then(Value::as_u64);
        Some(LocalHost {
            host: bin("host")?,
            pid: uint("pid")?,
            probe_at: uint("probe_at")?,
            probe: bin("probe")?,
        })
    }
}

/// Whether a hello (a msgpack map) lists `feature`.
pub fn lists(hello: &Value, feature: &str) -> bool {
    field(hello, "features")
        .and_then(Value::as_array)
        .is_some_and(|fs| fs.iter().any(|f| f.as_str() == Some(feature)))
}

/// The runner's `local` (in JSON form) naming `host`: its own pid and
/// probe, or, with `true_probe` false, 32 bytes that are not what is at
/// its probe's address (a probe a reader must find wrong).
pub fn runner_local(host: &[u8], true_probe: bool) -> Json {
    let at = probe();
    let shown: Vec<u8> = if true_probe {
        at.to_vec()
    } else {
        at.iter().map(|b| !b).collect()
    };
    json!({
        "host": {"$bin": to_hex(host)},
        "pid": std::process::id(),
        "probe_at": at.as_ptr() as u64,
        "probe": {"$bin": to_hex(&shown)},
    })
}

/// A host tag no worker has (32 fresh random bytes): the runner as a
/// worker of another host.
pub fn other_host() -> Vec<u8> {
    random32().map_or_else(|_| vec![0xa5; 32], |b| b.to_vec())
}

/// Lets any process of this user read the runner's memory, as a worker
/// must to copy what the runner's peer lends it (Linux with Yama's
/// `ptrace_scope` 1 allows only ancestors otherwise, and the worker under
/// test is the runner's child). Harmless where Yama is absent.
pub fn allow_readers() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PTRACER takes plain integers and
        // changes nothing but who may ptrace (and so read) this process.
        unsafe {
            libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0);
        }
    }
}

/// Copies `nbytes` at `at` from the worker `from` after checking its probe
/// there: the bytes of one lent value, or why they could not be read.
pub fn read_lent(from: &LocalHost, at: u64, nbytes: u64) -> Result<Vec<u8>, String> {
    if nbytes > READ_BYTES_MAX {
        return Err(format!(
            "nbytes {nbytes} is over the runner's bound of {READ_BYTES_MAX}"
        ));
    }
    let probe = read_memory(from.pid, from.probe_at, from.probe.len())?;
    if probe != from.probe {
        return Err(format!(
            "the probe at {:#x} in process {} is not the one its hello gave",
            from.probe_at, from.pid
        ));
    }
    read_memory(from.pid, at, nbytes as usize)
}

#[cfg(target_os = "linux")]
fn read_memory(pid: u64, at: u64, len: usize) -> Result<Vec<u8>, String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("no such process id {pid}"))?;
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let into = libc::iovec {
            iov_base: out[done..].as_mut_ptr().cast(),
            iov_len: len - done,
        };
        let from = libc::iovec {
            iov_base: (at as usize + done) as *mut libc::c_void,
            iov_len: len - done,
        };
        // SAFETY: `into` is `out`'s unfilled part, ours to write; the
        // remote range is only read, by the kernel, which checks it
        // (EFAULT when it is not mapped in that process).
        let n = unsafe { libc::process_vm_readv(pid, &into, 1, &from, 1, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!(
                "process_vm_readv of {len} bytes at {at:#x} in process {pid}: {e}"
            ));
        }
        if n == 0 {
            return Err(format!(
                "process_vm_readv read nothing at {:#x} in process {pid}",
                at as usize + done
            ));
        }
        done += n as usize;
    }
    Ok(out)
}

#[cfg(not(target_os = "linux"))]
fn read_memory(_pid: u64, _at: u64, _len: usize) -> Result<Vec<u8>, String> {
    Err("the runner reads another process's memory only on Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_reads_its_own_lent_bytes_after_its_probe_and_refuses_a_wrong_probe() {
        let value = vec![7u8; 100_000];
        let me = |true_probe: bool| {
            let local = runner_local(&[1; 32], true_probe);
            let bytes = crate::value::encode(&json!({"local": local}), &Default::default())
                .expect("encodes");
            LocalHost::of_hello(&crate::value::decode(&bytes).expect("decodes")).expect("local")
        };
        let read = read_lent(&me(true), value.as_ptr() as u64, value.len() as u64);
        assert_eq!(read.as_deref(), Ok(&value[..]));
        let wrong = read_lent(&me(false), value.as_ptr() as u64, value.len() as u64);
        assert!(wrong.is_err_and(|e| e.contains("probe")));
        let huge = read_lent(&me(true), value.as_ptr() as u64, READ_BYTES_MAX + 1);
        assert!(huge.is_err_and(|e| e.contains("bound")));
    }
}
