//! [`ClientDriver`]: core's [`ClientSession`] behind msgpack commands, for
//! the JS `Client`.
//!
//! JS moves bytes (socket -> [`ClientDriver::receive`], [`ClientDriver::drain`]
//! -> socket) and turns replies and events into Promises; every protocol
//! decision (handshake, request ids, key names, reference counts, batching
//! of releases, what a reply means) is the session's.
//!
//! Commands (a msgpack map with `cmd`; fields in brackets are optional):
//!
//! | cmd | fields | reply |
//! |---|---|---|
//! | `submit` | `tasks: [{function, [key], args, [kwargs], [priority], [retries], [resources], [workers]}]`, `[wanted]` | `{request, keys, states}` |
//! | `scatter` | `values: [value]`, `[workers]`, `[broadcast]` | `{request, keys, states}` |
//! | `gather` / `who_has` | `keys` | `{request}` |
//! | `cluster_info` / `list_datasets` | | `{request}` |
//! | `waiting_keys` | `[state]`, `[cursor]`, `[limit]` | `{request}` |
//! | `publish_dataset` | `name, keys, [overwrite]` | `{request}` |
//! | `unpublish_dataset` / `get_dataset` | `name` | `{request}` |
//! | `cancel` | `keys, [force]` | `{}` |
//! | `retain` | `key` | `{held}` |
//! | `release` | `keys` | `{}` |
//! | `close` | | `{}` |
//! | `resume` | `[nonce]` (32 fresh random bytes, with a `client_secret`) | `{}` |
//! | `give_up` | | `{}` |
//!
//! `keys` in a `submit` reply are the keys of `wanted` (default: each
//! task's key, in order), one session reference each; `states` their state
//! names right after (a key wanted again after it failed is pending anew).
//!
//! **Reconnection.** A driver made with `resumable: true` whose scheduler
//! keeps a journal (it gave a session token) does not close when its
//! socket does: `drain` says `reconnect: true`; JS connects again (to the
//! same address) and sends `resume`, which queues a hello naming the
//! session, or `give_up`, which closes the session (core's
//! `ClientSession::resume`). A `resume` while no reconnect is wanted does
//! nothing.

use std::collections::BTreeMap;

use dask_core::auth::{Secret, CHANNEL_BINDING_BYTES};
use dask_core::client::{ClientAuth, ClientEvent, ClientSession, Graph, KeyState, TaskFailure};
use dask_core::messages::{Bin32, Resources, TaskSpec};
use dask_core::msgpack::{write, RawValue, Reader};
use dask_core::Key;

use crate::pack::{Command, MapWriter};

/// One client connection's session, driven by JS.
pub struct ClientDriver {
    session: ClientSession,
    /// The client secret, for the proof of each resumed connection.
    secret: Option<Secret>,
    /// Whether the socket is TLS (the hello says so).
    tls: bool,
}

impl ClientDriver {
    /// A session from `{name?, seed, client_secret?, nonce?, tls?}`
    /// (`seed`: a random u64 that makes this client's keys unique;
    /// `client_secret`: the cluster's client secret, 32 bytes, and `nonce`
    /// 32 fresh random bytes: then it proves the secret and requires the
    /// scheduler to prove it, dask/1.1 authentication; `tls`: the socket
    /// is TLS, the hello says so and JS gives the channel binding with
    /// [`ClientDriver::channel_binding`]; `resumable`: JS connects again
    /// when `drain` says `reconnect`, see the module docs; `part_bytes`: the
    /// largest part of a graph sent as several `update-graph`s, default
    /// 4 MiB, core's `SUBMIT_PART_BYTES`; the first is 64 KiB or this). The `hello` is queued.
    pub fn new(config: &[u8]) -> Result<ClientDriver, String> {
        let c = Command::parse(config)?;
        let name: Option<String> = c.field("name")?;
        let seed: u64 = c.field::<Option<u64>>("seed")?.unwrap_or(0);
        let secret: Option<Bin32> = c.field("client_secret")?;
        let tls = c.field::<Option<bool>>("tls")?.unwrap_or(false);
        let resumable = c.field::<Option<bool>>("resumable")?.unwrap_or(false);
        let part_bytes: Option<u64> = c.field("part_bytes")?;
        let auth = match secret {
            Some(secret) => {
                let nonce: Bin32 = c
                    .field::<Option<Bin32>>("nonce")?
                    .ok_or("a client_secret needs a nonce (32 random bytes)")?;
                Some(ClientAuth {
                    secret: Secret::from_bytes(secret.0),
                    nonce: nonce.0,
                    tls,
                })
            }
            None => None,
        };
        let secret = auth.as_ref().map(|a| a.secret.clone());
        let mut session = ClientSession::with_auth(name, seed, auth);
        session.set_resumable(resumable);
        if let Some(bytes) = part_bytes {
            session.set_submit_part_bytes(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        Ok(ClientDriver {
            session,
            secret,
            tls,
        })
    }

    /// The session (for tests and diagnostics).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Runs one command; the reply map's bytes.
    pub fn command(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let c = Command::parse(bytes)?;
        let cmd: String = c.field("cmd")?;
        let s = &mut self.session;
        let mut out = Vec::new();
        match cmd.as_str() {
            "submit" => {
                let (tasks, wanted) = self.graph(&c)?;
                let request = self.session.submit(tasks, wanted.clone());
                self.wants_reply(&mut out, request.0, &wanted);
            }
            "scatter" => {
                let values = raw_list(&c, "values")?;
                let workers: Option<Vec<String>> = c.field("workers")?;
                let broadcast = c.field::<Option<bool>>("broadcast")?.unwrap_or(false);
                let keys: Vec<Key> = values.iter().map(|_| s.new_key("data")).collect();
                let data: BTreeMap<Key, RawValue> = keys.iter().cloned().zip(values).collect();
                let request = s.scatter(data, workers, broadcast);
                self.wants_reply(&mut out, request.0, &keys);
            }
            "gather" => request_reply(&mut out, s.gather(c.field("keys")?).0),
            "who_has" => request_reply(&mut out, s.who_has(c.field("keys")?).0),
            "cluster_info" => request_reply(&mut out, s.cluster_info().0),
            "list_datasets" => request_reply(&mut out, s.list_datasets().0),
            "waiting_keys" => {
                let state: Option<String> = c.field("state")?;
                let cursor = c.field::<Option<u64>>("cursor")?.unwrap_or(0);
                let limit: Option<u32> = c.field("limit")?;
                request_reply(&mut out, s.waiting_keys(state.as_deref(), cursor, limit).0)
            }
            "publish_dataset" => {
                let name: String = c.field("name")?;
                let keys: Vec<Key> = c.field("keys")?;
                let overwrite = c.field::<Option<bool>>("overwrite")?.unwrap_or(false);
                request_reply(&mut out, s.publish_dataset(&name, keys, overwrite).0)
            }
            "unpublish_dataset" => {
                let name: String = c.field("name")?;
                request_reply(&mut out, s.unpublish_dataset(&name).0)
            }
            "get_dataset" => {
                let name: String = c.field("name")?;
                request_reply(&mut out, s.get_dataset(&name).0)
            }
            "cancel" => {
                let keys: Vec<Key> = c.field("keys")?;
                let force = c.field::<Option<bool>>("force")?.unwrap_or(false);
                s.cancel(keys, force);
                MapWriter::new(&mut out, 0);
            }
            "retain" => {
                let key: Key = c.field("key")?;
                let held = s.retain(key.as_str());
                MapWriter::new(&mut out, 1).bool("held", held);
            }
            "release" => {
                let keys: Vec<Key> = c.field("keys")?;
                for k in keys {
                    s.release(k.as_str());
                }
                MapWriter::new(&mut out, 0);
            }
            "want_again" => {
                s.want_again(c.field("keys")?);
                MapWriter::new(&mut out, 0);
            }
            "close" => {
                s.close();
                MapWriter::new(&mut out, 0);
            }
            "resume" => {
                let auth = match &self.secret {
                    Some(secret) => {
                        let nonce: Bin32 = c.field::<Option<Bin32>>("nonce")?.ok_or(
                            "resuming with a client_secret needs a nonce (32 random bytes)",
                        )?;
                        Some(ClientAuth {
                            secret: secret.clone(),
                            nonce: nonce.0,
                            tls: self.tls,
                        })
                    }
                    None => None,
                };
                self.session.resume(auth);
                MapWriter::new(&mut out, 0);
            }
            "give_up" => {
                s.give_up();
                MapWriter::new(&mut out, 0);
            }
            other => return Err(format!("unknown client command {other:?}")),
        }
        Ok(out)
    }

    /// The tasks and wanted keys of a `submit`, checked as the scheduler
    /// would (keys, args an array, kwargs a map, each key defined once).
    fn graph(&mut self, c: &Command<'_>) -> Result<(Vec<TaskSpec>, Vec<Key>), String> {
        let mut graph = Graph::new();
        let mut keys = Vec::new();
        for (i, t) in c.list("tasks")?.into_iter().enumerate() {
            let function: String = t.field("function")?;
            let key = match t.field::<Option<Key>>("key")? {
                Some(k) => k,
                None => self.session.new_key(&function),
            };
            let args: RawValue = t.field("args")?;
            if !is_array(args.as_bytes()) {
                return Err(format!("tasks[{i}]: args must be an array"));
            }
            let kwargs: Option<RawValue> = t.field("kwargs")?;
            if let Some(kw) = &kwargs {
                if !is_map(kw.as_bytes()) {
                    return Err(format!("tasks[{i}]: kwargs must be a map"));
                }
            }
            let spec = TaskSpec {
                key: key.clone(),
                function,
                args,
                kwargs,
                priority: t.field("priority")?,
                resources: t.field::<Option<Resources>>("resources")?,
                retries: t.field("retries")?,
                workers: t.field("workers")?,
            };
            graph.add(spec).map_err(|e| format!("tasks[{i}]: {e}"))?;
            keys.push(key);
        }
        let wanted = c.field::<Option<Vec<Key>>>("wanted")?.unwrap_or(keys);
        Ok((graph.into_tasks(), wanted))
    }

    fn wants_reply(&self, out: &mut Vec<u8>, request: u64, keys: &[Key]) {
        MapWriter::new(out, 3)
            .uint("request", request)
            .wire("keys", &keys.to_vec())
            .with("states", |w| self.write_states(w, keys));
    }

    fn write_states(&self, w: &mut Vec<u8>, keys: &[Key]) {
        write::array_len(w, keys.len());
        for k in keys {
            let name = self
                .session
                .key_state(k.as_str())
                .map_or("released", KeyState::name);
            write::str(w, name);
        }
    }

    /// The TLS socket's channel binding (RFC 9266 `tls-exporter`, 32
    /// bytes), once its handshake is done and before any bytes arrive:
    /// the proofs cover it.
    pub fn channel_binding(&mut self, binding: &[u8]) -> Result<(), String> {
        let binding = <[u8; CHANNEL_BINDING_BYTES]>::try_from(binding).map_err(|_| {
            format!(
                "a channel binding has {CHANNEL_BINDING_BYTES} bytes, not {}",
                binding.len()
            )
        })?;
        self.session.handle_channel_binding(binding);
        Ok(())
    }

    /// Bytes received on the socket.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.session.handle_bytes(bytes);
    }

    /// The socket closed or failed.
    pub fn transport_closed(&mut self, reason: &str) {
        self.session.handle_close(reason);
    }

    /// Everything to do now: `{transmit: bin, events: [...], close: bool,
    /// reconnect: bool}`. `close`: write `transmit`, then end the socket
    /// (the session is over). `reconnect`: the connection was lost and the
    /// session waits to be resumed on a new one (see the module docs).
    pub fn drain(&mut self) -> Vec<u8> {
        let transmit = self.session.transmit_bytes();
        let mut events = Vec::new();
        let mut count = 0;
        while let Some(event) = self.session.poll_event() {
            self.write_event(&mut events, event);
            count += 1;
        }
        let mut out = Vec::with_capacity(transmit.len() + events.len() + 32);
        MapWriter::new(&mut out, 4)
            .with("transmit", |w| write::bin(w, &transmit))
            .with("events", |w| {
                write::array_len(w, count);
                w.extend_from_slice(&events);
            })
            .bool("close", self.session.is_closed())
            .bool("reconnect", self.session.wants_reconnect());
        out
    }

    fn write_event(&self, w: &mut Vec<u8>, event: ClientEvent) {
        match event {
            ClientEvent::Connected { client_id } => {
                MapWriter::new(w, 2)
                    .str("type", "connected")
                    .wire("client_id", &client_id);
            }
            ClientEvent::KeyUpdated { key, state } => {
                let inline = match state {
                    KeyState::Finished { .. } => self.session.inline_result(key.as_str()),
                    _ => None,
                };
                write_key_event(w, &key, &state, inline);
            }
            ClientEvent::KeyWaiting { key, waiting } => {
                MapWriter::new(w, 5)
                    .str("type", "key_waiting")
                    .str("key", key.as_str())
                    .str("reason", &waiting.reason)
                    .str("message", &waiting.message)
                    .str_or_nil("task", waiting.task.as_ref().map(Key::as_str));
            }
            ClientEvent::WaitingKeys {
                request,
                tasks,
                next,
            } => {
                MapWriter::new(w, 4)
                    .str("type", "waiting_keys")
                    .uint("request", request.0)
                    .wire("tasks", &tasks)
                    .wire("next", &next);
            }
            ClientEvent::Gathered {
                request,
                data,
                missing,
                status,
            } => {
                MapWriter::new(w, 5)
                    .str("type", "gathered")
                    .uint("request", request.0)
                    .with("data", |w| {
                        write::map_len(w, data.len());
                        for (k, v) in &data {
                            write::str(w, k.as_str());
                            write::bin(w, v.as_bytes());
                        }
                    })
                    .wire("missing", &missing)
                    .wire("status", &status);
            }
            ClientEvent::WhoHas {
                request, who_has, ..
            } => {
                MapWriter::new(w, 3)
                    .str("type", "who_has")
                    .uint("request", request.0)
                    .wire("who_has", &who_has);
            }
            ClientEvent::ClusterInfo { request, info } => {
                MapWriter::new(w, 3)
                    .str("type", "cluster_info")
                    .uint("request", request.0)
                    .wire("info", &info);
            }
            ClientEvent::Dataset {
                request,
                name,
                keys,
            } => {
                MapWriter::new(w, 5)
                    .str("type", "dataset")
                    .uint("request", request.0)
                    .str("name", &name)
                    .wire("keys", &keys)
                    .with("states", |w| self.write_states(w, &keys));
            }
            ClientEvent::Datasets { request, names } => {
                MapWriter::new(w, 3)
                    .str("type", "datasets")
                    .uint("request", request.0)
                    .wire("names", &names);
            }
            ClientEvent::Done { request } => {
                MapWriter::new(w, 2)
                    .str("type", "done")
                    .uint("request", request.0);
            }
            ClientEvent::RequestFailed { request, error } => {
                MapWriter::new(w, 5)
                    .str("type", "request_failed")
                    .uint("request", request.0)
                    .wire("code", &error.code)
                    .str_or_nil("code_name", error.code_name())
                    .str("message", &error.message);
            }
            ClientEvent::ServerError(error) => {
                MapWriter::new(w, 4)
                    .str("type", "server_error")
                    .wire("code", &error.code)
                    .str_or_nil("code_name", error.code_name())
                    .str("message", &error.message);
            }
            ClientEvent::Closed { reason } => {
                MapWriter::new(w, 2)
                    .str("type", "closed")
                    .str("reason", &reason);
            }
        }
    }
}

/// `{type: "key", key, state, ...details}`; a finished key's `value` (its
/// msgpack bytes) when the scheduler sent it inline (dask/1.1): no gather
/// is needed for it.
fn write_key_event(w: &mut Vec<u8>, key: &Key, state: &KeyState, inline: Option<&RawValue>) {
    let details = match state {
        KeyState::Pending | KeyState::Cancelled => 0,
        KeyState::Finished { .. } if inline.is_some() => 2,
        KeyState::Finished { .. } | KeyState::Lost { .. } => 1,
        KeyState::Failed(_) => 3,
        KeyState::Erred(_) => 4,
    };
    let mut m = MapWriter::new(w, 3 + details);
    m.str("type", "key")
        .str("key", key.as_str())
        .str("state", state.name());
    match state {
        KeyState::Pending | KeyState::Cancelled => {}
        KeyState::Finished { nbytes } => {
            m.uint("nbytes", *nbytes);
            if let Some(value) = inline {
                m.with("value", |w| write::bin(w, value.as_bytes()));
            }
        }
        KeyState::Erred(TaskFailure {
            error_type,
            message,
            traceback,
            cause,
        }) => {
            m.str("error_type", error_type)
                .str("message", message)
                .str("traceback", traceback)
                .wire("cause", cause);
        }
        KeyState::Lost { message } => {
            m.str("message", message);
        }
        KeyState::Failed(e) => {
            m.wire("code", &e.code)
                .str_or_nil("code_name", e.code_name())
                .str("message", &e.message);
        }
    }
}

fn request_reply(out: &mut Vec<u8>, request: u64) {
    MapWriter::new(out, 1).uint("request", request);
}

/// The values of a list field, each checked as one well-formed value.
fn raw_list(c: &Command<'_>, name: &str) -> Result<Vec<RawValue>, String> {
    let Some(bytes) = c.raw(name) else {
        return Ok(Vec::new());
    };
    let mut r = Reader::new(bytes);
    let len = r
        .read_array_len()
        .map_err(|e| format!("command: {}", e.in_field(name)))?;
    let mut out = Vec::with_capacity(len.min(1024));
    for i in 0..len {
        out.push(
            RawValue::read(&mut r)
                .map_err(|e| format!("command: {}", e.in_field(&format!("{name}[{i}]"))))?,
        );
    }
    Ok(out)
}

fn is_array(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x90..=0x9f | 0xdc | 0xdd))
}

fn is_map(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::frame::FrameDecoder;
    use dask_core::messages::{Hello, KeyFinished, Role};
    use dask_core::{FrameEncoder, Message};

    fn command(entries: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        entries(&mut out);
        out
    }

    fn sent(bytes: &[u8]) -> Vec<Message> {
        let mut d = FrameDecoder::default();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(frame) = d.poll().unwrap() {
            out.extend(frame);
        }
        out
    }

    fn drained(d: &mut ClientDriver) -> (Vec<Message>, rmpv::Value) {
        let bytes = d.drain();
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let transmit = v["transmit"].as_slice().unwrap().to_vec();
        (sent(&transmit), v["events"].clone())
    }

    fn connected() -> ClientDriver {
        let config = command(|w| {
            MapWriter::new(w, 2).str("name", "js").uint("seed", 0xab);
        });
        let mut d = ClientDriver::new(&config).unwrap();
        let (out, _) = drained(&mut d);
        assert!(matches!(&out[..], [Message::Hello(h)] if h.role == Role::Client));
        let mut reply = dask_core::handshake::offer(Role::Scheduler, None);
        reply.id = Some(3);
        d.receive(&frame(Message::from(Hello { ..reply })));
        d
    }

    fn frame(m: Message) -> Vec<u8> {
        let mut e = FrameEncoder::default();
        e.push(&m).unwrap();
        e.take()
    }

    #[test]
    fn submit_builds_one_update_graph_with_generated_keys() {
        let mut d = connected();
        let (_, events) = drained(&mut d);
        assert_eq!(events[0]["type"].as_str(), Some("connected"));
        let cmd = command(|w| {
            MapWriter::new(w, 2)
                .str("cmd", "submit")
                .with("tasks", |w| {
                    write::array_len(w, 2);
                    for n in [1, 2] {
                        MapWriter::new(w, 2)
                            .str("function", "inc")
                            .with("args", |w| {
                                write::array_len(w, 1);
                                write::uint(w, n);
                            });
                    }
                });
        });
        let reply = d.command(&cmd).unwrap();
        let reply = rmpv::decode::read_value(&mut &reply[..]).unwrap();
        let keys: Vec<&str> = reply["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, vec!["inc-ab-0", "inc-ab-1"]);
        assert_eq!(reply["states"][0].as_str(), Some("pending"));
        let (out, _) = drained(&mut d);
        let [Message::UpdateGraph(g)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(g.tasks.len(), 2);
        assert_eq!(g.wanted.len(), 2);

        d.receive(&frame(Message::KeyFinished(KeyFinished {
            key: "inc-ab-0".into(),
            nbytes: 1,
            request: None,
            value: None,
        })));
        let (_, events) = drained(&mut d);
        assert_eq!(events[0]["state"].as_str(), Some("finished"));
        assert_eq!(events[0]["nbytes"].as_u64(), Some(1));
    }

    #[test]
    fn bad_commands_are_errors_not_panics() {
        let mut d = connected();
        let not_array = command(|w| {
            MapWriter::new(w, 2)
                .str("cmd", "submit")
                .with("tasks", |w| {
                    write::array_len(w, 1);
                    MapWriter::new(w, 2)
                        .str("function", "f")
                        .with("args", |w| write::uint(w, 1));
                });
        });
        assert!(d.command(&not_array).unwrap_err().contains("array"));
        let unknown = command(|w| {
            MapWriter::new(w, 1).str("cmd", "fly");
        });
        assert!(d.command(&unknown).is_err());
        assert!(d.command(&[0xc1]).is_err());
        let bad_key = command(|w| {
            MapWriter::new(w, 2)
                .str("cmd", "submit")
                .with("tasks", |w| {
                    write::array_len(w, 1);
                    MapWriter::new(w, 3)
                        .str("function", "f")
                        .str("key", "")
                        .with("args", |w| write::array_len(w, 0));
                });
        });
        assert!(d.command(&bad_key).is_err());
    }

    #[test]
    fn a_resumable_session_asks_to_reconnect_and_resumes_with_its_token() {
        let config = command(|w| {
            MapWriter::new(w, 2).uint("seed", 1).bool("resumable", true);
        });
        let mut d = ClientDriver::new(&config).unwrap();
        drained(&mut d);
        let mut reply = dask_core::handshake::offer(Role::Scheduler, None);
        reply.id = Some(3);
        reply.session = Some("t1".into());
        d.receive(&frame(Message::from(reply)));
        drained(&mut d);
        d.transport_closed("reset");
        let bytes = d.drain();
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert_eq!(v["reconnect"].as_bool(), Some(true));
        assert_eq!(v["close"].as_bool(), Some(false));
        let resume = command(|w| {
            MapWriter::new(w, 1).str("cmd", "resume");
        });
        d.command(&resume).unwrap();
        let (out, _) = drained(&mut d);
        assert!(
            matches!(&out[..], [Message::Hello(h)] if h.session.as_deref() == Some("t1")),
            "{out:?}"
        );
        // Giving up closes it.
        d.transport_closed("refused");
        let give_up = command(|w| {
            MapWriter::new(w, 1).str("cmd", "give_up");
        });
        d.command(&give_up).unwrap();
        let bytes = d.drain();
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert_eq!(v["close"].as_bool(), Some(true));
        assert_eq!(v["reconnect"].as_bool(), Some(false));
    }

    #[test]
    fn a_finished_key_event_carries_its_inline_result() {
        let mut d = connected();
        let cmd = command(|w| {
            MapWriter::new(w, 2)
                .str("cmd", "submit")
                .with("tasks", |w| {
                    write::array_len(w, 1);
                    MapWriter::new(w, 3)
                        .str("function", "inc")
                        .str("key", "k")
                        .with("args", |w| write::array_len(w, 0));
                });
        });
        d.command(&cmd).unwrap();
        drained(&mut d);
        d.receive(&frame(Message::KeyFinished(KeyFinished {
            key: "k".into(),
            nbytes: 1,
            request: None,
            value: Some(RawValue::from_bytes(vec![0x2a]).unwrap()),
        })));
        let (_, events) = drained(&mut d);
        assert_eq!(events[0]["state"].as_str(), Some("finished"));
        assert_eq!(events[0]["value"].as_slice(), Some(&[0x2a][..]));
    }

    #[test]
    fn a_closed_transport_fails_pending_keys_and_asks_to_close() {
        let mut d = connected();
        let cmd = command(|w| {
            MapWriter::new(w, 2)
                .str("cmd", "scatter")
                .with("values", |w| {
                    write::array_len(w, 1);
                    write::str(w, "v");
                });
        });
        d.command(&cmd).unwrap();
        let _ = d.drain();
        d.transport_closed("reset");
        let bytes = d.drain();
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert_eq!(v["close"].as_bool(), Some(true));
        let types: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, vec!["key", "closed"]);
        assert_eq!(v["events"][0]["state"].as_str(), Some("failed"));
    }
}
