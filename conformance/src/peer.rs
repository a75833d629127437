//! The runner's fake peer worker: a data address that answers `hello` and
//! `get-data` from the values a case gave it (`peer_holds`), or `busy`
//! when told to (`peer_busy`). Everything it receives and sends is also
//! reported to the session, which checks and records it.
//!
//! Told to (`peer_lends`), it lends its values by address instead
//! (dask/1.1 `value-local`): as a worker of the worker's host, with the
//! runner's pid and probe in its hello, it answers `get-data` with
//! `data-local` pointing into the runner's own memory, keeps each lent
//! value until its lease comes back, and lends nothing more on a
//! connection after a `value-local-done` that says `failed`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use dask_core::msgpack::write;
use rmpv::Value;

use dask_core::auth::{Side, AUTH_FAILED};
use dask_core::messages::Role;

use crate::auth::RunnerAuth;
use crate::case::{Conn, LendMode};
use crate::local::{self, LocalHost, VALUE_LOCAL};
use crate::tls::{ChannelBinding, RunnerTls};
use crate::transport::{self, Event, EventKind, ReadError};
use crate::value::{decode, render};

/// How long a write to the worker may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nbytes` a `huge` lender says: far over any value bound.
const HUGE_NBYTES: u64 = 1 << 50;

/// Values larger than this are shown by size only in transcripts.
const RENDER_VALUE_BYTES_MAX: usize = 4096;

/// What the peer serves.
#[derive(Default)]
struct PeerData {
    /// Encoded values by key.
    values: HashMap<String, Arc<Vec<u8>>>,
    /// `get-data` requests still to answer with `busy`.
    busy_left: u32,
    /// Lend values by address, and how.
    lend: Option<LendMode>,
}

/// The same-host state of one connection from the worker.
#[derive(Default)]
struct Lending {
    /// Values go in `data-local` on it.
    on: bool,
    /// The `nbytes` it says, when not each value's own (`huge`).
    nbytes: Option<u64>,
    /// Lent values by lease, kept where they are until given back.
    leases: HashMap<u64, Arc<Vec<u8>>>,
    next_lease: u64,
}

/// A running fake peer on 127.0.0.1.
pub struct PeerServer {
    /// Its data address, `tcp://127.0.0.1:PORT`.
    pub address: String,
    data: Arc<Mutex<PeerData>>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl PeerServer {
    /// Binds a port and starts accepting; events go to `tx`.
    /// With `auth`, it requires the worker's proof of the run's secret
    /// (PROTOCOL.md#authentication) and proves the secret itself; with
    /// `tls`, its address is `tls://` and it requires the worker's
    /// certificate.
    pub fn start(
        tx: Sender<Event>,
        auth: Option<Arc<RunnerAuth>>,
        tls: Option<Arc<RunnerTls>>,
    ) -> std::io::Result<PeerServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let scheme = if tls.is_some() { "tls" } else { "tcp" };
        let address = format!("{scheme}://{}", listener.local_addr()?);
        listener.set_nonblocking(true)?;
        let server = PeerServer {
            address,
            data: Arc::default(),
            stop: Arc::default(),
            streams: Arc::default(),
        };
        let (data, stop, streams) = (
            server.data.clone(),
            server.stop.clone(),
            server.streams.clone(),
        );
        let count = Arc::new(AtomicU32::new(0));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let index = count.fetch_add(1, Ordering::Relaxed) + 1;
                let (data, tx, auth, tls, streams) = (
                    data.clone(),
                    tx.clone(),
                    auth.clone(),
                    tls.clone(),
                    streams.clone(),
                );
                thread::spawn(move || {
                    let (stream, binding) = match &tls {
                        None => (stream, None),
                        Some(tls) => match tls.accept(stream) {
                            Ok(t) => (t.stream, Some(t.channel_binding)),
                            Err(e) => {
                                let why =
                                    format!("TLS handshake with the runner's peer failed: {e}");
                                let _ =
                                    tx.send(Event::now(Conn::Peer, index, EventKind::Closed(why)));
                                return;
                            }
                        },
                    };
                    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                    if let Ok(clone) = stream.try_clone() {
                        if let Ok(mut all) = streams.lock() {
                            all.push(clone);
                        }
                    }
                    let auth = auth.map(|a| (a, binding));
                    serve(stream, index, data, tx, auth)
                });
            }
        });
        Ok(server)
    }

    /// Serves `key` with this encoded value from now on.
    pub fn hold(&self, key: String, encoded: Vec<u8>) {
        if let Ok(mut d) = self.data.lock() {
            d.values.insert(key, Arc::new(encoded));
        }
    }

    /// Lends values by address from now on (`peer_lends`).
    pub fn lend(&self, mode: LendMode) {
        if let Ok(mut d) = self.data.lock() {
            d.lend = Some(mode);
        }
    }

    /// Answers the next `n` get-data requests with `busy`.
    pub fn set_busy(&self, n: u32) {
        if let Ok(mut d) = self.data.lock() {
            d.busy_left = n;
        }
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(all) = self.streams.lock() {
            for s in all.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// One connection from the worker: answer until it ends.
fn serve(
    mut stream: TcpStream,
    index: u32,
    data: Arc<Mutex<PeerData>>,
    tx: Sender<Event>,
    auth: Option<(Arc<RunnerAuth>, Option<ChannelBinding>)>,
) {
    let mut greeted = false;
    let mut lending = Lending::default();
    // With auth: the nonces of the handshake until the worker's proof came.
    let mut awaiting_proof: Option<Nonces> = None;
    loop {
        let kind = match transport::read_frame(&mut stream) {
            Ok(Some(payload)) => match transport::decode_frame(&payload) {
                Ok(messages) => EventKind::Frame(messages),
                Err(e) => EventKind::BadFrame(e),
            },
            Ok(None) => EventKind::Closed("end of stream".into()),
            Err(ReadError::Closed(e)) => EventKind::Closed(e),
            Err(ReadError::Bad(e)) => EventKind::BadFrame(e),
        };
        let EventKind::Frame(messages) = kind else {
            let _ = tx.send(Event::now(Conn::Peer, index, kind));
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        let mut replies = Vec::new();
        let mut shown = Vec::new();
        let mut close = false;
        for m in &messages {
            let op = field(m, "op").and_then(Value::as_str).unwrap_or("");
            if let (Some((connector, acceptor)), Some((auth, binding))) =
                (awaiting_proof.take(), &auth)
            {
                let proof = field(m, "proof").and_then(Value::as_slice).unwrap_or(&[]);
                if op != "auth-proof"
                    || !auth.proves(
                        Side::Connector,
                        Role::Peer,
                        (&connector, &acceptor),
                        binding.as_ref(),
                        proof,
                    )
                {
                    let reply = error_reply(3003, AUTH_FAILED);
                    shown.push(render(&decode(&reply).unwrap_or(Value::Nil)));
                    replies.push(reply);
                    close = true;
                    break;
                }
                continue;
            }
            match op {
                "hello" if !greeted => {
                    let protocol_ok = field(m, "protocol").and_then(Value::as_str) == Some("dask");
                    let major = field(m, "version")
                        .and_then(Value::as_array)
                        .and_then(|v| v.first())
                        .and_then(Value::as_u64);
                    if !protocol_ok || major != Some(1) {
                        let code = if protocol_ok { 3001 } else { 3002 };
                        let reply = error_reply(code, "the runner's peer speaks dask/1.0");
                        shown.push(render(&decode(&reply).unwrap_or(Value::Nil)));
                        replies.push(reply);
                        close = true;
                        break;
                    }
                    greeted = true;
                    let mode = data.lock().ok().and_then(|d| d.lend);
                    // What the reply says of the runner's host, when it lends.
                    let local = match (mode, LocalHost::of_hello(m)) {
                        (Some(LendMode::Memory | LendMode::Huge), Some(w))
                            if local::lists(m, VALUE_LOCAL) =>
                        {
                            Some(local::runner_local(&w.host, true))
                        }
                        (Some(LendMode::BadProbe), Some(w)) if local::lists(m, VALUE_LOCAL) => {
                            Some(local::runner_local(&w.host, false))
                        }
                        _ => None,
                    };
                    lending.on = local.is_some() || mode == Some(LendMode::Unnegotiated);
                    lending.nbytes = (mode == Some(LendMode::Huge)).then_some(HUGE_NBYTES);
                    let reply = match (&auth, &local) {
                        (None, None) => hello_reply(index),
                        (None, Some(local)) => lending_hello(index, local),
                        (Some((auth, binding)), _) => {
                            match challenge(auth, binding.as_ref(), m, index, local.as_ref()) {
                                Ok((reply, nonces)) => {
                                    awaiting_proof = Some(nonces);
                                    reply
                                }
                                Err(refusal) => {
                                    shown.push(render(&decode(&refusal).unwrap_or(Value::Nil)));
                                    replies.push(refusal);
                                    close = true;
                                    break;
                                }
                            }
                        }
                    };
                    shown.push(render(&decode(&reply).unwrap_or(Value::Nil)));
                    replies.push(reply);
                }
                "get-data" if greeted => {
                    let request = field(m, "request").and_then(Value::as_u64).unwrap_or(0);
                    let keys = crate::value::strings(m, "keys");
                    let answers = if lending.on {
                        lend(&data, &mut lending, request, &keys)
                    } else {
                        vec![answer_get_data(&data, request, &keys)]
                    };
                    for (reply, text) in answers {
                        shown.push(text);
                        replies.push(reply);
                    }
                }
                "value-local-done" if greeted => {
                    let leases = field(m, "leases").and_then(Value::as_array);
                    for lease in leases.into_iter().flatten().filter_map(Value::as_u64) {
                        lending.leases.remove(&lease);
                    }
                    if field(m, "failed").and_then(Value::as_bool) == Some(true) {
                        lending.on = false;
                    }
                }
                _ if !greeted => {
                    let reply = error_reply(3002, "the first message must be hello");
                    shown.push(render(&decode(&reply).unwrap_or(Value::Nil)));
                    replies.push(reply);
                    close = true;
                    break;
                }
                "close" => close = true,
                // Anything else is the session's to judge (it sees every message).
                _ => {}
            }
        }
        let _ = tx.send(Event::now(Conn::Peer, index, EventKind::Frame(messages)));
        if !replies.is_empty() {
            let _ = tx.send(Event::now(Conn::Peer, index, EventKind::PeerSent(shown)));
            if stream.write_all(&transport::frame_bytes(&replies)).is_err() {
                close = true;
            }
        }
        if close {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = tx.send(Event::now(
                Conn::Peer,
                index,
                EventKind::Closed("closed by the runner's peer".into()),
            ));
            return;
        }
    }
}

/// A handshake's nonces: the connector's, then the acceptor's.
type Nonces = ([u8; 32], [u8; 32]);

/// The reply to a worker's hello when the run requires authentication:
/// a dask/1.1 hello proving the secret, and the nonces its `auth-proof`
/// is checked against; or the 3003 refusing a hello without auth.
fn challenge(
    auth: &RunnerAuth,
    binding: Option<&ChannelBinding>,
    hello: &Value,
    id: u32,
    local: Option<&serde_json::Value>,
) -> Result<(Vec<u8>, Nonces), Vec<u8>> {
    let nonce = field(hello, "auth")
        .and_then(|a| field(a, "nonce"))
        .and_then(Value::as_slice)
        .and_then(|n| <[u8; 32]>::try_from(n).ok())
        .ok_or_else(|| {
            error_reply(
                3003,
                "authentication required (the runner's peer runs with --auth)",
            )
        })?;
    let (reply_auth, acceptor) = auth
        .challenge(Role::Peer, &nonce, binding)
        .map_err(|e| error_reply(3003, &format!("the runner's peer has no random nonce: {e}")))?;
    let mut reply = serde_json::json!({
        "op": "hello", "protocol": "dask", "version": [1, 1], "role": "worker",
        "id": id, "features": [], "auth": reply_auth, "tls": binding.is_some()
    });
    if let Some(local) = local {
        reply["features"] = serde_json::json!([VALUE_LOCAL]);
        reply["local"] = local.clone();
    }
    let bytes = crate::value::encode(&reply, &Default::default()).map_err(|e| {
        error_reply(
            3003,
            &format!("the runner's peer cannot encode its hello: {e}"),
        )
    })?;
    Ok((bytes, (nonce, acceptor)))
}

fn hello_reply(id: u32) -> Vec<u8> {
    let mut w = Vec::new();
    write::map_len(&mut w, 6);
    write::str(&mut w, "op");
    write::str(&mut w, "hello");
    write::str(&mut w, "protocol");
    write::str(&mut w, "dask");
    write::str(&mut w, "version");
    write::array_len(&mut w, 2);
    write::uint(&mut w, 1);
    write::uint(&mut w, 0);
    write::str(&mut w, "role");
    write::str(&mut w, "worker");
    write::str(&mut w, "id");
    write::uint(&mut w, id as u64);
    write::str(&mut w, "features");
    write::array_len(&mut w, 0);
    w
}

/// The dask/1.1 reply of a peer that lends: `value-local` and who the
/// runner is on the worker's host.
fn lending_hello(id: u32, local: &serde_json::Value) -> Vec<u8> {
    let reply = serde_json::json!({
        "op": "hello", "protocol": "dask", "version": [1, 1], "role": "worker",
        "id": id, "features": [VALUE_LOCAL], "local": local
    });
    crate::value::encode(&reply, &Default::default()).unwrap_or_default()
}

/// The replies to a get-data on a lending connection: `data-local` for the
/// values held (each kept under a new lease), then `data` for the keys
/// missing, if any (or `busy` while told to).
fn lend(
    data: &Mutex<PeerData>,
    lending: &mut Lending,
    request: u64,
    keys: &[String],
) -> Vec<(Vec<u8>, String)> {
    let mut lent = Vec::new();
    let mut missing = Vec::new();
    {
        let Ok(d) = data.lock() else {
            return Vec::new();
        };
        if d.busy_left > 0 {
            drop(d);
            return vec![answer_get_data(data, request, keys)];
        }
        for k in keys {
            match d.values.get(k) {
                Some(v) => lent.push((k.as_str(), v.clone())),
                None => missing.push(k.clone()),
            }
        }
    }
    let mut out = Vec::new();
    if !lent.is_empty() {
        let mut w = Vec::new();
        write::map_len(&mut w, 3);
        write::str(&mut w, "op");
        write::str(&mut w, "data-local");
        write::str(&mut w, "request");
        write::uint(&mut w, request);
        write::str(&mut w, "values");
        write::map_len(&mut w, lent.len());
        let mut shown = Vec::new();
        for (k, v) in lent {
            let lease = lending.next_lease;
            lending.next_lease += 1;
            let at = v.as_ptr() as u64;
            let nbytes = lending.nbytes.unwrap_or(v.len() as u64);
            write::str(&mut w, k);
            write::map_len(&mut w, 3);
            for (name, n) in [("at", at), ("nbytes", nbytes), ("lease", lease)] {
                write::str(&mut w, name);
                write::uint(&mut w, n);
            }
            lending.leases.insert(lease, v);
            shown.push(format!(
                "{}: {{\"at\": {at}, \"nbytes\": {nbytes}, \"lease\": {lease}}}",
                serde_json::to_string(k).unwrap_or_default()
            ));
        }
        let text = format!(
            "{{\"op\": \"data-local\", \"request\": {request}, \"values\": {{{}}}}}",
            shown.join(", ")
        );
        out.push((w, text));
    }
    if !missing.is_empty() {
        out.push(answer_get_data(data, request, &missing));
    }
    out
}

fn error_reply(code: u32, message: &str) -> Vec<u8> {
    let mut w = Vec::new();
    write::map_len(&mut w, 4);
    write::str(&mut w, "op");
    write::str(&mut w, "error");
    write::str(&mut w, "code");
    write::uint(&mut w, code as u64);
    write::str(&mut w, "message");
    write::str(&mut w, message);
    write::str(&mut w, "fatal");
    write::bool(&mut w, true);
    w
}

/// The reply to a get-data (`data` or `busy`) and its transcript line.
fn answer_get_data(data: &Mutex<PeerData>, request: u64, keys: &[String]) -> (Vec<u8>, String) {
    let mut found: BTreeMap<&str, Arc<Vec<u8>>> = BTreeMap::new();
    let mut missing = Vec::new();
    {
        let Ok(mut d) = data.lock() else {
            return (Vec::new(), String::new());
        };
        if d.busy_left > 0 {
            d.busy_left -= 1;
            let mut w = Vec::new();
            write::map_len(&mut w, 2);
            write::str(&mut w, "op");
            write::str(&mut w, "busy");
            write::str(&mut w, "request");
            write::uint(&mut w, request);
            return (w, format!("{{\"op\": \"busy\", \"request\": {request}}}"));
        }
        for k in keys {
            match d.values.get(k) {
                Some(v) => {
                    found.insert(k, v.clone());
                }
                None => missing.push(k.as_str()),
            }
        }
    }
    let mut w = Vec::new();
    write::map_len(&mut w, 4);
    write::str(&mut w, "op");
    write::str(&mut w, "data");
    write::str(&mut w, "request");
    write::uint(&mut w, request);
    write::str(&mut w, "data");
    write::map_len(&mut w, found.len());
    let mut shown = Vec::new();
    for (k, v) in &found {
        write::str(&mut w, k);
        w.extend_from_slice(v);
        let value = if v.len() <= RENDER_VALUE_BYTES_MAX {
            decode(v).map(|v| render(&v)).unwrap_or_default()
        } else {
            format!("<{} bytes of msgpack>", v.len())
        };
        shown.push(format!(
            "{}: {value}",
            serde_json::to_string(k).unwrap_or_default()
        ));
    }
    write::str(&mut w, "missing");
    write::array_len(&mut w, missing.len());
    for k in &missing {
        write::str(&mut w, k);
    }
    let text = format!(
        "{{\"op\": \"data\", \"request\": {request}, \"data\": {{{}}}, \"missing\": {}}}",
        shown.join(", "),
        serde_json::to_string(&missing).unwrap_or_default()
    );
    (w, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_valid_dask_1_messages() {
        assert!(dask_core::Message::from_bytes(&hello_reply(3)).is_ok());
        assert!(dask_core::Message::from_bytes(&error_reply(3001, "x")).is_ok());
        let data = Mutex::new(PeerData::default());
        data.lock()
            .unwrap()
            .values
            .insert("a".into(), Arc::new(vec![0x05]));
        let (reply, text) = answer_get_data(&data, 7, &["a".into(), "b".into()]);
        match dask_core::Message::from_bytes(&reply).unwrap() {
            dask_core::Message::Data(d) => {
                assert_eq!(d.request, 7);
                assert_eq!(d.data.len(), 1);
                assert_eq!(d.missing.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(text.contains("\"a\": 5"), "{text}");
        data.lock().unwrap().busy_left = 1;
        let (reply, _) = answer_get_data(&data, 8, &["a".into()]);
        assert!(matches!(
            dask_core::Message::from_bytes(&reply).unwrap(),
            dask_core::Message::Busy(_)
        ));
    }
}
