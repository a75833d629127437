//! What arrives on a connection: the hello and its proof, then each
//! message routed by what the peer is; protocol errors and departures.

use super::*;

impl SchedulerState {
    // ---- dispatch -------------------------------------------------------

    pub(super) fn dispatch(&mut self, conn: ConnId, message: Message) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        match c.peer {
            Peer::AwaitingHello => self.on_hello(conn, message),
            Peer::AwaitingProof => self.on_auth_proof(conn, message),
            Peer::Client => {
                // Its own messages see its releases done (see `release`).
                if !matches!(message, Message::ReleaseKeys(_) | Message::Heartbeat(_)) {
                    self.apply_releases_of(conn);
                }
                self.on_client_message(conn, message)
            }
            Peer::Worker(None) => self.on_unregistered_worker_message(conn, message),
            Peer::Worker(Some(w)) => self.on_worker_message(conn, w, message),
        }
    }

    pub(super) fn on_hello(&mut self, conn: ConnId, message: Message) {
        let Message::Hello(hello) = message else {
            return self.fatal(
                conn,
                ErrorCode::BadHandshake,
                format!("the first message must be hello, not `{}`", message.op()),
            );
        };
        let id = self.next_id;
        match handshake::accept(
            &hello,
            Role::Scheduler,
            &[Role::Client, Role::Worker],
            id,
            Some(SCHEDULER_NAME.into()),
        ) {
            Err(e) => self.fatal(conn, e.code, e.message),
            Ok((mut reply, negotiated)) => {
                self.next_id += 1;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.name = hello.name.clone();
                    c.id = id;
                    c.v1_1 = handshake::has_1_1(negotiated.version);
                    c.key_waiting = negotiated
                        .features
                        .iter()
                        .any(|f| f == handshake::KEY_WAITING);
                    c.value_parts = negotiated
                        .features
                        .iter()
                        .any(|f| f == handshake::VALUE_PARTS);
                    c.value_ranges = negotiated
                        .features
                        .iter()
                        .any(|f| f == handshake::VALUE_RANGES);
                }
                if negotiated.peer_role == Role::Client {
                    let resume = hello
                        .session
                        .as_deref()
                        .filter(|_| handshake::has_1_1(negotiated.version));
                    let session = self.session_for_hello(resume);
                    // Told only by a scheduler with a journal: only it
                    // keeps a session across its own restart.
                    if self.config.journal && handshake::has_1_1(negotiated.version) {
                        reply.session = Some(session.clone());
                    }
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.session = Some(session);
                    }
                }
                if let (Some(auth), Some(nonces)) = (&self.config.auth, &mut self.nonces) {
                    let binding = self.conns.get(&conn).and_then(|c| c.channel_binding);
                    let challenge = AcceptorAuth::challenge(
                        &hello,
                        &auth.credentials,
                        nonces.next_nonce(),
                        binding,
                    );
                    match challenge {
                        Err(e) => return self.fatal(conn, e.code, e.message),
                        Ok((auth, pending)) => {
                            reply.auth = Some(auth);
                            reply.tls = Some(binding.is_some());
                            if let Some(c) = self.conns.get_mut(&conn) {
                                c.peer = Peer::AwaitingProof;
                                c.auth = Some(Box::new(pending));
                            }
                            return self.send(conn, Message::from(reply));
                        }
                    }
                }
                // The reply first: admitting a client that resumes its
                // session sends the events of its wants.
                self.send(conn, Message::from(reply));
                self.admit(conn, negotiated.peer_role);
            }
        }
    }

    /// The connection proved its secret (or none is required): it is a
    /// client or a worker from now on.
    pub(super) fn admit(&mut self, conn: ConnId, role: Role) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (id, v1_1, key_waiting) = (c.id, c.v1_1, c.key_waiting);
        let value_parts = c.value_parts;
        let session = c.session.clone();
        let peer = match role {
            Role::Client => {
                let session = match session {
                    Some(s) if self.reattach(conn, &s, v1_1, key_waiting) => None,
                    Some(s) if !self.durable.sessions.contains_key(&s) => Some(s),
                    _ => Some(self.new_session_token()),
                };
                match session {
                    Some(session) => {
                        self.durable.sessions.insert(session.clone(), conn);
                        let client = Client {
                            v1_1,
                            key_waiting,
                            value_parts,
                            session,
                            ..Client::default()
                        };
                        self.clients.insert(conn, client);
                    }
                    None => {
                        if let Some(client) = self.clients.get_mut(&conn) {
                            client.value_parts = value_parts;
                        }
                    }
                }
                let name = self.conns.get(&conn).and_then(|c| c.name.clone());
                self.observe.client_added(conn, id, name, self.now);
                Peer::Client
            }
            _ => {
                let now = self.now;
                self.arm_liveness_check(now + self.config.heartbeat_timeout + JUST_AFTER);
                Peer::Worker(None)
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = peer;
            c.auth = None;
            c.v1_1 = v1_1;
        }
    }

    /// The message after the reply must be the connector's valid proof;
    /// anything else closes the connection with nothing acted on.
    pub(super) fn on_auth_proof(&mut self, conn: ConnId, message: Message) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(pending) = c.auth.take() else {
            return;
        };
        let verdict = match &message {
            Message::AuthProof(proof) => pending.verify(proof),
            _ => Err(dask_core::auth::failed()),
        };
        match verdict {
            Ok(()) => self.admit(conn, pending.role()),
            Err(e) => self.fatal(conn, e.code, e.message),
        }
    }

    pub(super) fn on_client_message(&mut self, conn: ConnId, message: Message) {
        match message {
            Message::Heartbeat(_) => {}
            Message::Close(_) => {
                self.drop_conn(conn, Departure::Closed);
                self.out.push_back(SchedulerOutput::Close(conn));
            }
            Message::ErrorReport(e) => self.on_peer_error(conn, e),
            Message::UpdateGraph(m) => {
                self.update_graph(conn, m);
            }
            Message::ReleaseKeys(m) => {
                self.journal_release(conn, &m.keys);
                self.queue_release(conn, m.keys);
            }
            Message::CancelKeys(m) => {
                self.journal(|s| durable::cancel_record(s.session_of(conn), &m));
                self.cancel_keys(conn, m)
            }
            Message::Scatter(m) => self.scatter(conn, m),
            Message::Gather(m) => self.gather(conn, m),
            Message::WhoHas(m) => self.who_has(conn, m),
            Message::ClusterInfo(m) => self.cluster_info(conn, m),
            Message::PublishDataset(m) => self.publish_dataset(conn, m),
            Message::UnpublishDataset(m) => self.unpublish_dataset(conn, m),
            Message::GetDataset(m) => self.get_dataset(conn, m),
            Message::ListDatasets(m) => self.list_datasets(conn, m),
            Message::WaitingKeys(m) if self.clients.get(&conn).is_some_and(|c| c.key_waiting) => {
                self.waiting_keys(conn, m)
            }
            other => self.unexpected(conn, &other, "a client"),
        }
    }

    pub(super) fn on_unregistered_worker_message(&mut self, conn: ConnId, message: Message) {
        match message {
            Message::RegisterWorker(m) => self.register_worker(conn, m),
            Message::Heartbeat(_) => {}
            Message::Close(_) => {
                self.drop_conn(conn, Departure::Closed);
                self.out.push_back(SchedulerOutput::Close(conn));
            }
            Message::ErrorReport(e) => self.on_peer_error(conn, e),
            other => self.unexpected(conn, &other, "a worker before register-worker"),
        }
    }

    pub(super) fn on_worker_message(&mut self, conn: ConnId, w: WorkerIdx, message: Message) {
        match message {
            Message::Heartbeat(m) => self.worker_metrics(w, m.metrics),
            Message::Close(_) => {
                self.drop_conn(conn, Departure::Closed);
                self.out.push_back(SchedulerOutput::Close(conn));
            }
            Message::ErrorReport(e) if !e.fatal => self.request_refused(w, e),
            Message::ErrorReport(e) => self.on_peer_error(conn, e),
            Message::TaskFinished(m) => self.task_finished(w, m),
            Message::TaskErred(m) => self.task_erred(w, m),
            Message::AddKeys(m) => self.add_keys(w, m),
            Message::MissingData(m) => self.missing_data(w, m),
            Message::StealResponse(m) => self.steal_response(w, m),
            Message::DataStored(m) => self.data_stored(w, m),
            Message::Data(m) => self.data_reply(w, m),
            Message::ValueRange(m) => self.value_range_reply(w, m),
            Message::Busy(m) => self.busy_reply(w, m),
            other => self.unexpected(conn, &other, "a worker"),
        }
    }

    /// A peer reported an error; a fatal one means it is closing.
    pub(super) fn on_peer_error(&mut self, conn: ConnId, e: ErrorReport) {
        if e.fatal {
            self.drop_conn(conn, Departure::Lost);
            self.out.push_back(SchedulerOutput::Close(conn));
        }
    }

    pub(super) fn unexpected(&mut self, conn: ConnId, message: &Message, from: &str) {
        self.fatal(
            conn,
            ErrorCode::UnexpectedMessage,
            format!("`{}` is not allowed from {from}", message.op()),
        );
    }

    // ---- connections ----------------------------------------------------

    /// Sends a fatal error, forgets the connection and closes it.
    pub(super) fn fatal(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        self.note_fatal(conn, code, &message);
        self.send(
            conn,
            Message::ErrorReport(ErrorReport {
                code: code.number(),
                message,
                fatal: true,
                request: None,
                keys: None,
            }),
        );
        self.drop_conn(conn, Departure::Lost);
        self.out.push_back(SchedulerOutput::Close(conn));
    }

    /// A non-fatal error answering `request`.
    pub(crate) fn reply_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: String,
        request: Option<u64>,
        keys: Option<Vec<Key>>,
    ) {
        self.send(
            conn,
            Message::ErrorReport(ErrorReport {
                code: code.number(),
                message,
                fatal: false,
                request,
                keys,
            }),
        );
    }

    /// Forgets a connection: a client's wants are released, a worker is
    /// removed (its work rescheduled). Unknown connections are ignored, and
    /// so is anything that arrives later on a forgotten connection: a
    /// worker declared dead never has a late result accepted.
    pub(super) fn drop_conn(&mut self, conn: ConnId, how: Departure) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.peer {
            Peer::AwaitingHello | Peer::AwaitingProof | Peer::Worker(None) => {}
            Peer::Client => self.remove_client(conn),
            Peer::Worker(Some(w)) => self.remove_worker(w, how),
        }
    }

    pub(crate) fn remove_client(&mut self, conn: ConnId) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        if self.durable.sessions.get(&client.session) == Some(&conn) {
            self.durable.sessions.remove(&client.session);
        }
        self.journal(|_| JournalRecord::gone(&client.session));
        self.drop_releases_of(conn);
        self.observe.client_removed(conn, client.wants.len());
        self.data_client_left(conn);
        for t in client.wanted_in_order() {
            let task = &mut self.tasks[t];
            task.wanted_by.retain(|&c| c != conn);
            self.to_check.push(t);
        }
    }
}
