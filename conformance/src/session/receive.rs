//! What arrives: events from the reader threads, applied in order, and the
//! checks every message of the worker goes through.

use super::*;

impl Session<'_> {
    /// Waits for the next event (at most until `until`, and at most one
    /// slice), applies it and every other one already queued.
    pub(super) fn pump(&mut self, until: Instant) -> Result<(), String> {
        let now = Instant::now();
        let wait = until.saturating_duration_since(now).min(PUMP_SLICE);
        match self.rx.recv_timeout(wait) {
            Ok(ev) => self.apply(ev),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        while let Ok(ev) = self.rx.try_recv() {
            self.apply(ev);
        }
        if self.exited_at.is_none() {
            if let Some(status) = self.worker.exit_status() {
                self.exited_at = Some(Instant::now());
                self.note(format!("worker exited: {status}"));
            }
        }
        self.check_violation()
    }

    pub(super) fn check_violation(&mut self) -> Result<(), String> {
        match self.violation.take() {
            Some(v) => Err(format!("protocol violation: {v}")),
            None => Ok(()),
        }
    }

    pub(super) fn exited_long_ago(&self) -> bool {
        self.exited_at.is_some_and(|t| t.elapsed() > EXIT_GRACE)
    }

    pub(super) fn apply(&mut self, ev: Event) {
        if ev.conn == Conn::Data && ev.index != self.data_index {
            // A data connection a step closed: what comes of it now (its
            // close, mostly) is not the current connection's.
            return;
        }
        let name = conn_name(ev.conn, ev.index);
        match ev.kind {
            EventKind::Output(text) => {
                self.line(ev.at, "harness -> runner", &text);
                let value = serde_json::from_str::<Json>(&text)
                    .ok()
                    .filter(Json::is_object)
                    .and_then(|j| dask_core::json::json_to_msgpack(&j).ok())
                    .and_then(|bytes| value::decode(&bytes).ok());
                match value {
                    Some(value) => self.output.push(OutputLine {
                        value,
                        consumed: false,
                    }),
                    None if self.violation.is_none() => {
                        self.violation = Some(format!(
                        "the client's harness printed a line that is not a JSON object: {text:?}"
                    ))
                    }
                    None => {}
                }
            }
            EventKind::Accepted(stream, binding) => {
                if self.scheduler.is_some() {
                    self.note(format!(
                        "{} opened another scheduler connection; runner closed it",
                        self.who()
                    ));
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                match stream.try_clone() {
                    Ok(reader) => {
                        transport::spawn_reader(reader, Conn::Scheduler, 0, self.tx.clone());
                        let over = if binding.is_some() { " over TLS" } else { "" };
                        self.note(format!(
                            "{} connected to the scheduler address{over}",
                            self.who()
                        ));
                        self.scheduler = Some(stream);
                        self.scheduler_binding = binding;
                    }
                    Err(e) => {
                        self.violation = Some(format!("runner cannot read the connection: {e}"))
                    }
                }
            }
            EventKind::Frame(values) => {
                let who = self.who();
                let client = self.case.is_client();
                for v in values {
                    let text = render(&v);
                    self.line(ev.at, &format!("{who} -> {name}"), &text);
                    let op = value::op_of(&v).unwrap_or("").to_owned();
                    let inbox = self.inbox.entry(ev.conn).or_default();
                    let first = if ev.conn == Conn::Peer {
                        self.peers_greeted.insert(ev.index)
                    } else {
                        !std::mem::replace(&mut inbox.started, true)
                    };
                    let registered = inbox.registered;
                    inbox.registered |= op == "register-worker";
                    if first && ev.conn == Conn::Peer && op == "hello" {
                        self.peer_hello_came(ev.index, &v);
                    }
                    let allowed = match ev.conn {
                        Conn::Scheduler if client => CLIENT_OPS,
                        Conn::Scheduler => SCHEDULER_OPS,
                        Conn::Data => DATA_OPS,
                        Conn::Peer => PEER_OPS,
                    };
                    // dask/1.1 value-local, where negotiated: the holder
                    // lends, the fetcher gives leases back.
                    let local_op = match ev.conn {
                        Conn::Data => self.data_local && op == "data-local",
                        Conn::Peer => {
                            self.peer_local.contains(&ev.index) && op == "value-local-done"
                        }
                        Conn::Scheduler => false,
                    };
                    let violation = if !allowed.contains(&op.as_str()) && !local_op {
                        Some(format!(
                            "{who} sent `{op}` on the {name} connection, where a {who} sends only {}",
                            allowed.join(", ")
                        ))
                    } else if first && op != "hello" && !(ev.conn == Conn::Data && op == "error") {
                        Some(format!(
                            "{who}'s first message on the {name} connection is `{op}`, not `hello`"
                        ))
                    } else if !first && op == "hello" {
                        Some(format!(
                            "{who} sent a second `hello` on the {name} connection"
                        ))
                    } else if ev.conn == Conn::Scheduler
                        && !client
                        && !registered
                        && !BEFORE_REGISTER_OPS.contains(&op.as_str())
                    {
                        Some(format!("worker sent `{op}` before its `register-worker`"))
                    } else {
                        None
                    };
                    if let (Some(v), None) = (violation, &self.violation) {
                        self.violation = Some(v);
                    }
                    self.inbox
                        .entry(ev.conn)
                        .or_default()
                        .messages
                        .push(Received {
                            at: ev.at,
                            value: v,
                            consumed: false,
                        });
                }
            }
            EventKind::BadFrame(e) => {
                let who = self.who();
                self.line(
                    ev.at,
                    &format!("{who} -> {name}"),
                    &format!("malformed frame: {e}"),
                );
                if self.violation.is_none() {
                    self.violation = Some(format!(
                        "{who} sent a malformed frame on the {name} connection: {e}"
                    ));
                }
                self.inbox.entry(ev.conn).or_default().closed =
                    Some(format!("malformed frame: {e}"));
            }
            EventKind::Closed(why) => {
                self.note(format!("{name} connection closed ({why})"));
                self.inbox.entry(ev.conn).or_default().closed = Some(why);
            }
            EventKind::PeerSent(texts) => {
                for t in texts {
                    self.line(ev.at, &format!("{name} -> worker"), &t);
                }
            }
        }
    }
}
