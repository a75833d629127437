//! [`WorkerDriver`]: core's worker state machine behind the JS `Worker`.
//!
//! The machine ([`dask_core::worker::WorkerState`]) owns the worker's
//! protocol: which connections there are, their hellos and deadlines,
//! registration, what may arrive where. This driver adds only what wasm
//! needs in between: framing (bytes in, messages to the machine; messages
//! out, bytes per connection) and the runs, with their dependencies
//! spliced into the arguments. JS owns the sockets and the functions: it
//! opens the connections the drain asks for, feeds bytes and closes in,
//! writes what [`WorkerDriver::drain`] gives out, runs the tasks it lists,
//! and reports each result with [`WorkerDriver::task_done`].
//!
//! Connections are numbered here (the edge names them, as
//! [`dask_core::ConnId`] says): outgoing ones (the scheduler's first) come
//! in a drain's `connects`, incoming peers get a number from
//! [`WorkerDriver::accept`]. Numbers are not reused while the driver lives.
//!
//! Time is milliseconds since an origin JS chooses (`performance.now()`),
//! passed with every input; it only has to be monotonic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dask_core::auth::{AuthConfig, Credentials, Secret, CHANNEL_BINDING_BYTES};
use dask_core::frame::{FrameDecoder, FrameEncoder};
use dask_core::messages::{Bin32, Resources};
use dask_core::msgpack::{write, RawValue};
use dask_core::worker::{Job, TaskDone, TaskError, WorkerOutput, WorkerState, WorkerStateConfig};
use dask_core::{ConnId, Key, Timestamp};

use crate::pack::{Command, MapWriter};

mod splice;
#[cfg(test)]
mod tests;

pub use splice::splice_refs;

/// The framing of one connection.
#[derive(Debug)]
struct Framing {
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    /// The machine closed it: nothing more is read; JS ends it after
    /// writing.
    closing: bool,
}

impl Default for Framing {
    fn default() -> Self {
        // The worker machine builds a message too large for a frame (a
        // `data` reply) only on a connection that negotiated `value-parts`
        // (elsewhere it answers 5002): its encoder may then send parts.
        let mut encoder = FrameEncoder::default();
        encoder.send_value_parts(true);
        Framing {
            decoder: FrameDecoder::default(),
            encoder,
            closing: false,
        }
    }
}

#[derive(Debug)]
enum Event {
    Registered { id: u64 },
    Refused(String),
    Finished(Option<String>),
    Log(String),
}

/// A task for JS to run: arguments with every dependency in place.
#[derive(Debug)]
struct Run {
    run_id: u64,
    function: String,
    args: Vec<u8>,
    kwargs: Option<Vec<u8>>,
}

/// A worker's protocol side. See the module docs.
pub struct WorkerDriver {
    state: WorkerState,
    scheduler_address: String,
    conns: BTreeMap<u32, Framing>,
    /// The last connection number given.
    last_conn: u32,
    runs: Vec<Run>,
    connects: Vec<(u32, String)>,
    closes: Vec<u32>,
    events: Vec<Event>,
    registered: bool,
    finished: bool,
    /// The machine asked for a new data listener (it lost the scheduler
    /// and registers again): JS listens anew and says where.
    listen: bool,
    now: Timestamp,
}

/// A connection's number as JS holds it (ids are numbered here, so they
/// fit).
fn js_conn(conn: ConnId) -> u32 {
    u32::try_from(conn.0).unwrap_or(u32::MAX)
}

impl WorkerDriver {
    /// A worker from `{scheduler, name, address, nthreads, functions,
    /// resources?, memory_limit?, pid?, worker_secret?, nonce_seed?,
    /// now_ms}`: `address` is the data address JS listens on;
    /// `worker_secret` (32 bytes, with `nonce_seed`, 32 random bytes) turns
    /// on dask/1.1 authentication on every connection, both ways. The scheduler connection is asked for in the
    /// first drain, its `hello` and `register-worker` queued.
    pub fn new(config: &[u8]) -> Result<WorkerDriver, String> {
        let c = Command::parse(config)?;
        let scheduler_address: String = c.field("scheduler")?;
        let name: String = c.field("name")?;
        let address: String = c.field("address")?;
        let nthreads = c.field::<u32>("nthreads")?.max(1);
        let functions: Vec<String> = c.field("functions")?;
        let resources: Option<Resources> = c.field("resources")?;
        let memory_limit: Option<u64> = c.field("memory_limit")?;
        let pid: Option<u32> = c.field("pid")?;
        let secret: Option<Bin32> = c.field("worker_secret")?;
        let auth = match secret {
            Some(secret) => Some(AuthConfig {
                credentials: Credentials {
                    client: None,
                    worker: Some(Secret::from_bytes(secret.0)),
                },
                nonce_seed: c
                    .field::<Option<Bin32>>("nonce_seed")?
                    .ok_or("a worker_secret needs a nonce_seed (32 random bytes)")?
                    .0,
            }),
            None => None,
        };
        let now = Timestamp::from_millis_f64(c.millis("now_ms")?);
        // Absent: 0, the worker ends with its scheduler connection.
        let reconnect_ms: Option<u64> = c.field("reconnect_timeout_ms")?;

        let mut config = WorkerStateConfig::new(
            scheduler_address.clone(),
            name,
            address,
            nthreads as usize,
            functions.into_iter().collect::<HashSet<_>>(),
        );
        config.pid = pid;
        // JS starts every run it is given at once, so runs handed out
        // ahead would exceed nthreads rather than wait in a queue.
        config.dispatch_ahead = 0;
        config.resources = resources.unwrap_or_default();
        // The limit is announced; the JS worker neither spills nor pauses.
        config.memory_limit = memory_limit;
        config.memory_target_fraction = None;
        config.memory_pause_fraction = None;
        // Each report goes out at once, as the JS worker always did.
        config.report_delay_max = Duration::ZERO;
        config.auth = auth;
        config.reconnect_timeout = Duration::from_millis(reconnect_ms.unwrap_or(0));
        Ok(WorkerDriver {
            state: WorkerState::new(config, now),
            scheduler_address,
            conns: BTreeMap::new(),
            last_conn: 0,
            runs: Vec::new(),
            connects: Vec::new(),
            closes: Vec::new(),
            events: Vec::new(),
            registered: false,
            finished: false,
            listen: false,
            now,
        })
    }

    /// The scheduler address given at creation.
    pub fn scheduler_address(&self) -> &str {
        &self.scheduler_address
    }

    /// Whether the worker is over (closed by the scheduler, refused, lost).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn tick_clock(&mut self, now_ms: f64) -> Timestamp {
        // Time never goes backwards for the state machine.
        self.now = self.now.max(Timestamp::from_millis_f64(now_ms));
        self.now
    }

    /// A peer connected to the data address: its connection number, or 0
    /// when it is refused (too many connections, or the worker is over).
    pub fn accept(&mut self, now_ms: f64) -> u32 {
        let now = self.tick_clock(now_ms);
        let id = self.new_conn();
        self.conns.insert(id, Framing::default());
        let conn = ConnId(u64::from(id));
        self.state.handle_connected(now, conn);
        // Refused: the machine closes it at once.
        if !self.state.knows(conn) {
            self.conns.remove(&id);
            return 0;
        }
        id
    }

    /// A connection number not given before (4 billion opens would wrap).
    fn new_conn(&mut self) -> u32 {
        self.last_conn = self.last_conn.wrapping_add(1).max(1);
        self.last_conn
    }

    /// Connection `conn` (just accepted, or connected to a `tls://`
    /// address) is TLS with this channel binding (RFC 9266
    /// `tls-exporter`, 32 bytes): the proofs on it cover the binding.
    /// Give it once the TLS handshake is done, before any bytes of `conn`.
    pub fn channel_binding(&mut self, conn: u32, binding: &[u8]) -> Result<(), String> {
        let binding = <[u8; CHANNEL_BINDING_BYTES]>::try_from(binding).map_err(|_| {
            format!(
                "a channel binding has {CHANNEL_BINDING_BYTES} bytes, not {}",
                binding.len()
            )
        })?;
        self.state
            .handle_channel_binding(ConnId(u64::from(conn)), binding);
        Ok(())
    }

    /// Bytes arrived on connection `conn`.
    pub fn receive(&mut self, conn: u32, now_ms: f64, bytes: &[u8]) {
        let now = self.tick_clock(now_ms);
        let id = ConnId(u64::from(conn));
        match self.conns.get_mut(&conn) {
            Some(c) if !c.closing => c.decoder.push(bytes),
            _ => return, // late bytes of a connection being closed
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.decoder.poll() {
                Ok(Some(messages)) => self.state.handle_frame(now, id, messages),
                Ok(None) => return,
                Err(e) => {
                    c.closing = true;
                    return self.state.handle_protocol_error(now, id, e);
                }
            }
        }
    }

    /// Connection `conn` closed or failed (or could not be opened).
    pub fn conn_closed(&mut self, conn: u32, now_ms: f64, reason: &str) {
        let now = self.tick_clock(now_ms);
        if self.conns.remove(&conn).is_some() {
            self.state
                .handle_closed(now, ConnId(u64::from(conn)), reason);
        }
    }

    /// Everything written on connection `conn` has been flushed.
    pub fn conn_drained(&mut self, conn: u32) {
        let now = self.now;
        self.state.handle_drained(now, ConnId(u64::from(conn)));
    }

    /// A run ended: `{run_id, now_ms, duration_us, error?: {error_type,
    /// message, traceback?}}`; without `error`, `value` is the result's
    /// msgpack encoding.
    pub fn task_done(&mut self, command: &[u8], value: &[u8]) -> Result<(), String> {
        let c = Command::parse(command)?;
        let run_id: u64 = c.field("run_id")?;
        let now = self.tick_clock(c.millis("now_ms")?);
        let duration_us = c.field::<Option<u64>>("duration_us")?.unwrap_or(0);
        let result = match c.raw("error") {
            Some(_) => Err(task_error(&c)?),
            None => RawValue::from_bytes(value.to_vec()).map_err(|e| {
                TaskError::value_error(format!("result is not a valid dask/1 value: {}", e.message))
            }),
        };
        self.state.handle_task_done(
            now,
            TaskDone {
                run_id,
                result,
                duration_us,
            },
        );
        Ok(())
    }

    /// Time passed (a timer set from `timeout_ms` fired).
    pub fn tick(&mut self, now_ms: f64) {
        let now = self.tick_clock(now_ms);
        self.state.handle_timeout(now);
    }

    /// The new data listener asked for (`listen` in [`WorkerDriver::drain`])
    /// is bound at `address`: the worker registers again with it.
    pub fn listening(&mut self, now_ms: f64, address: &str) {
        let now = self.tick_clock(now_ms);
        self.state.handle_listening(now, address.to_owned());
    }

    /// The new data listener could not be bound: this attempt to register
    /// again fails (the next one listens again).
    pub fn listen_failed(&mut self, now_ms: f64, error: &str) {
        let now = self.tick_clock(now_ms);
        self.state.handle_listen_failed(now, error);
    }

    /// Leaves the cluster: `close` to the scheduler, every connection ends.
    pub fn stop(&mut self, now_ms: f64) {
        let now = self.tick_clock(now_ms);
        self.state.handle_stop(now);
    }

    /// Everything to do now, as the msgpack map
    /// `{writes: [[conn, bin]], connects: [[conn, address]], closes: [conn],
    /// runs: [[run_id, function, args, kwargs]], timeout_ms, events, listen}`.
    /// Do `connects` first, then the writes, then end the `closes`
    /// connections once written; `listen` true: close the data listener,
    /// listen anew and call [`WorkerDriver::listening`] (or
    /// [`WorkerDriver::listen_failed`]); `args` (a msgpack array) and `kwargs` (a
    /// msgpack map or nil) are encoded values; `timeout_ms` is when to call
    /// [`WorkerDriver::tick`] next (nil: no timer).
    pub fn drain(&mut self, now_ms: f64) -> Vec<u8> {
        let now = self.tick_clock(now_ms);
        while let Some(output) = self.state.poll_output() {
            self.handle_output(now, output);
        }
        let writes: Vec<(u32, Vec<u8>)> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| !c.encoder.is_empty())
            .map(|(id, c)| (*id, c.encoder.take()))
            .collect();
        let connects = std::mem::take(&mut self.connects);
        let closes = std::mem::take(&mut self.closes);
        let runs = std::mem::take(&mut self.runs);
        let events = std::mem::take(&mut self.events);
        let listen = std::mem::take(&mut self.listen);
        let timeout_ms = if self.finished {
            None
        } else {
            self.state.poll_timeout().map(Timestamp::as_millis_f64)
        };

        let size: usize = writes.iter().map(|(_, b)| b.len() + 8).sum::<usize>()
            + runs
                .iter()
                .map(|r| r.args.len() + r.kwargs.as_ref().map_or(0, Vec::len) + 64)
                .sum::<usize>();
        let mut out = Vec::with_capacity(size + 64);
        MapWriter::new(&mut out, 7)
            .with("writes", |w| {
                write::array_len(w, writes.len());
                for (id, bytes) in &writes {
                    write::array_len(w, 2);
                    write::uint(w, u64::from(*id));
                    write::bin(w, bytes);
                }
            })
            .with("connects", |w| {
                write::array_len(w, connects.len());
                for (id, address) in &connects {
                    write::array_len(w, 2);
                    write::uint(w, u64::from(*id));
                    write::str(w, address);
                }
            })
            .with("closes", |w| {
                write::array_len(w, closes.len());
                for id in &closes {
                    write::uint(w, u64::from(*id));
                }
            })
            .with("runs", |w| {
                write::array_len(w, runs.len());
                for run in &runs {
                    write::array_len(w, 4);
                    write::uint(w, run.run_id);
                    write::str(w, &run.function);
                    write::bin(w, &run.args);
                    match &run.kwargs {
                        Some(k) => write::bin(w, k),
                        None => write::nil(w),
                    }
                }
            })
            .f64_or_nil("timeout_ms", timeout_ms)
            .with("events", |w| {
                write::array_len(w, events.len());
                for e in &events {
                    write_event(w, e);
                }
            })
            .with("listen", |w| write::bool(w, listen));
        out
    }

    // ---- outputs of the state machine ---------------------------------------

    fn framing(&mut self, conn: ConnId) -> Option<&mut Framing> {
        self.conns.get_mut(&js_conn(conn))
    }

    fn handle_output(&mut self, now: Timestamp, output: WorkerOutput) {
        match output {
            WorkerOutput::Connect { address } => {
                let id = self.new_conn();
                self.conns.insert(id, Framing::default());
                self.connects.push((id, address));
                self.state.handle_connecting(now, Ok(ConnId(u64::from(id))));
            }
            WorkerOutput::Send(conn, message) => {
                let pushed = match self.framing(conn) {
                    Some(c) => c.encoder.push(&message),
                    None => return,
                };
                if let Err(e) = pushed {
                    // Only a message over the frame limit is refused, and
                    // the machine never builds one; report rather than
                    // lose it silently.
                    let line = format!("cannot send `{}`: {e}", message.op());
                    self.events.push(Event::Log(line));
                }
            }
            WorkerOutput::EndFrame(conn) => {
                if let Some(c) = self.framing(conn) {
                    c.encoder.finish();
                }
            }
            WorkerOutput::Close(conn) => {
                if let Some(c) = self.framing(conn) {
                    c.closing = true;
                    self.closes.push(js_conn(conn));
                }
            }
            WorkerOutput::Listen => self.listen = true,
            WorkerOutput::Execute(job) => self.execute(now, job),
            WorkerOutput::Withdraw { run_id } => {
                // A run of this same drain has not reached JS yet; one that
                // has is already running (JS starts runs at once).
                let withdrawn = match self.runs.iter().position(|r| r.run_id == run_id) {
                    Some(at) => {
                        self.runs.remove(at);
                        true
                    }
                    None => false,
                };
                self.state.handle_withdrawn(now, run_id, withdrawn);
            }
            WorkerOutput::Registered { id, .. } => {
                self.registered = true;
                self.events.push(Event::Registered { id });
            }
            WorkerOutput::Log(record) => self.events.push(Event::Log(record.message)),
            // A JS worker lists no `value-local`: none comes.
            WorkerOutput::ReadLocal(read) => {
                let refused = Err("a JS worker reads no peer's memory".to_owned());
                self.state.handle_local_read(now, read, refused);
            }
            WorkerOutput::Finished { error } => {
                self.finished = true;
                let error = error.map(|e| e.message);
                if let (false, Some(message)) = (self.registered, &error) {
                    self.events.push(Event::Refused(message.clone()));
                }
                self.events.push(Event::Finished(error));
            }
        }
    }

    fn execute(&mut self, now: Timestamp, job: Job) {
        let deps: HashMap<&str, &[u8]> = job
            .deps
            .iter()
            .map(|(k, v): &(Key, Arc<RawValue>)| (k.as_str(), v.as_bytes()))
            .collect();
        let args = splice_refs(job.args.as_bytes(), &deps);
        let kwargs = job
            .kwargs
            .as_ref()
            .map(|k| splice_refs(k.as_bytes(), &deps))
            .transpose();
        let failure = match (args, kwargs) {
            (Ok(args), Ok(kwargs)) => {
                self.runs.push(Run {
                    run_id: job.run_id,
                    function: job.function,
                    args,
                    kwargs,
                });
                return;
            }
            (Err(e), _) | (_, Err(e)) => TaskError::new("MissingDependency", e),
        };
        self.state.handle_task_done(
            now,
            TaskDone {
                run_id: job.run_id,
                result: Err(failure),
                duration_us: 0,
            },
        );
    }
}

/// The `error` map of a command: `{error_type, message, traceback}`.
pub(crate) fn task_error(c: &Command<'_>) -> Result<TaskError, String> {
    let bytes = c.raw("error").unwrap_or(&[0x80]);
    let e = Command::parse(bytes)?;
    let error_type: String = e.field("error_type")?;
    let message: String = e.field("message")?;
    let traceback: Option<String> = e.field("traceback")?;
    Ok(TaskError::new(error_type, message).with_traceback(traceback.unwrap_or_default()))
}

fn write_event(w: &mut Vec<u8>, event: &Event) {
    match event {
        Event::Registered { id } => {
            MapWriter::new(w, 2)
                .str("type", "registered")
                .uint("id", *id);
        }
        Event::Refused(message) => {
            MapWriter::new(w, 2)
                .str("type", "refused")
                .str("message", message);
        }
        Event::Finished(error) => {
            MapWriter::new(w, 2)
                .str("type", "finished")
                .str_or_nil("error", error.as_deref());
        }
        Event::Log(message) => {
            MapWriter::new(w, 2)
                .str("type", "log")
                .str("message", message);
        }
    }
}
