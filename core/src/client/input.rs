//! Input: what the scheduler sends (the handshake reply, key events,
//! replies, errors, close) and the loss of the transport.

use std::collections::HashSet;

use super::events::{ClientEvent, KeyState, RequestError, RequestId, TaskFailure};
use super::{ClientSession, Pending, Phase};
use crate::error::{ErrorCode, WireError};
use crate::handshake;
use crate::messages::{ErrorReport, Role};
use crate::wire::Key;
use crate::Message;

/// Why a session closed whose scheduler turned out to be Python Dask's.
pub const PYTHON_DASK_SCHEDULER: &str =
    "this is a Python Dask scheduler, not a dask/1 one (its first bytes are Python Dask's \
     framing): connect a Python Dask client to it, or give the address of a dask-rs scheduler";

impl ClientSession {
    /// Handles raw bytes received from the transport. A framing error is
    /// answered with a fatal `error` and closes the session.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.poll() {
                Ok(Some(frame)) => {
                    for m in frame {
                        self.handle_message(m);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail_protocol(e);
                    return;
                }
            }
        }
    }

    /// Handles one message from the scheduler.
    pub fn handle_message(&mut self, message: Message) {
        if self.is_closed() {
            return;
        }
        if self.phase == Phase::Handshaking {
            return self.handle_handshake(message);
        }
        if !self.unconfirmed_releases.is_empty() {
            self.confirm_releases(&message);
        }
        match message {
            Message::KeyErred(m) if self.is_stale(&m.key, m.request) => {}
            Message::KeyCancelled(m) if self.is_stale(&m.key, m.request) => {}
            Message::KeyLost(m) if self.is_stale(&m.key, m.request) => {}
            Message::KeyWaiting(m) if self.is_stale(&m.key, m.request) => {}
            Message::KeyFinished(m) => self.key_finished(m),
            Message::KeyErred(m) => self.set_state(
                &m.key,
                KeyState::Erred(TaskFailure {
                    error_type: m.error_type,
                    message: m.message,
                    traceback: m.traceback,
                    cause: m.cause,
                }),
            ),
            Message::KeyCancelled(m) => self.set_state(&m.key, KeyState::Cancelled),
            Message::KeyLost(m) => self.set_state(&m.key, KeyState::Lost { message: m.message }),
            Message::KeyWaiting(m) => self.handle_key_waiting(m),
            Message::WaitingKeysReply(m) => self.handle_waiting_keys_reply(m),
            Message::GatherReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::Gather).then_some(ClientEvent::Gathered {
                    request,
                    data: m.data,
                    missing: m.missing,
                    status: m.status,
                })
            }),
            Message::WhoHasReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::WhoHas).then_some(ClientEvent::WhoHas {
                    request,
                    who_has: m.who_has,
                    status: m.status,
                })
            }),
            Message::ClusterInfoReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::ClusterInfo)
                    .then_some(ClientEvent::ClusterInfo { request, info: m })
            }),
            Message::Datasets(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::ListDatasets).then_some(ClientEvent::Datasets {
                    request,
                    names: m.names,
                })
            }),
            Message::OkReply(m) if self.acknowledges(RequestId(m.request)) => {}
            Message::OkReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::Ok | Pending::Barrier)
                    .then_some(ClientEvent::Done { request })
            }),
            Message::Dataset(m) => {
                let request = RequestId(m.request);
                if !matches!(self.requests.get(&request), Some(Pending::GetDataset)) {
                    return;
                }
                self.requests.remove(&request);
                for k in &m.keys {
                    self.want(k, None, request);
                }
                self.events.push_back(ClientEvent::Dataset {
                    request,
                    name: m.name,
                    keys: m.keys,
                });
            }
            Message::ErrorReport(e) => self.handle_error(e),
            Message::Close(c) => {
                let reason = c.reason.unwrap_or_else(|| "no reason given".into());
                self.enter_closed(format!("the scheduler closed the connection: {reason}"));
            }
            Message::Heartbeat(_) => {}
            other => self.fail_protocol(WireError::new(
                ErrorCode::UnexpectedMessage,
                format!("`{}` is not sent to a client", other.op()),
            )),
        }
    }

    fn handle_handshake(&mut self, message: Message) {
        match message {
            Message::Hello(h) => match handshake::check_reply(&h, Role::Scheduler) {
                Ok(n) => {
                    if let Some(auth) = self.auth.take() {
                        match auth.answer(&h, self.channel_binding.as_ref()) {
                            Ok(proof) => {
                                self.transmit.push_front(Message::AuthProof(proof));
                                self.holding = false;
                            }
                            Err(e) => return self.fail_auth(e),
                        }
                    }
                    let client_id = n.id;
                    let v1_1 = handshake::has_1_1(n.version);
                    if std::mem::take(&mut self.resuming) && h.session != self.session_token {
                        self.session_not_kept();
                    }
                    self.session_token = h.session.clone().filter(|_| v1_1);
                    self.negotiated = Some(n);
                    self.phase = Phase::Ready;
                    self.events.push_back(ClientEvent::Connected { client_id });
                    if !v1_1 {
                        self.fail_barriers();
                    }
                }
                Err(e) => self.fail_protocol(e),
            },
            Message::ErrorReport(e) => {
                let error = RequestError {
                    code: Some(e.code),
                    message: e.message,
                };
                self.enter_closed(format!(
                    "the handshake was refused (a dask/1 scheduler was expected): {error}"
                ));
            }
            other => self.fail_protocol(WireError::new(
                ErrorCode::BadHandshake,
                format!("expected hello, got `{}`", other.op()),
            )),
        }
    }

    /// A resumed session the scheduler did not keep (the grace ended, it
    /// restarted without its journal, or it died before it wrote anything
    /// of this session): every held key is lost, but those still waiting
    /// for a graph that goes on this connection, after the hello (sent
    /// again, or not sent before): the new session takes it as any other.
    fn session_not_kept(&mut self) {
        let mut resent: HashSet<RequestId> = self.unacked.keys().copied().collect();
        resent.extend(self.transmit.iter().filter_map(|m| match m {
            Message::UpdateGraph(g) => Some(RequestId(g.request)),
            _ => None,
        }));
        let mut keys: Vec<Key> = self
            .keys
            .iter()
            .filter(|(_, e)| !e.origin.is_some_and(|o| resent.contains(&o)))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for k in keys {
            if let Some(e) = self.keys.get_mut(&k) {
                e.origin = None;
            }
            let message = "the scheduler restarted and did not keep this client's session: \
                           submit the work again"
                .to_owned();
            self.set_state(&k, KeyState::Lost { message });
        }
        self.requests
            .retain(|id, kind| !matches!(kind, Pending::Wants { .. }) || resent.contains(id));
    }

    /// Delivers the reply to `request` when it is outstanding and of the
    /// kind `make` accepts; anything else is ignored (a reply nobody waits
    /// for harms no one).
    pub(super) fn answer(
        &mut self,
        request: RequestId,
        make: impl FnOnce(&Pending, RequestId) -> Option<ClientEvent>,
    ) {
        let Some(kind) = self.requests.get(&request) else {
            return;
        };
        if let Some(event) = make(kind, request) {
            self.requests.remove(&request);
            self.events.push_back(event);
        }
    }

    fn handle_error(&mut self, e: ErrorReport) {
        let error = RequestError {
            code: Some(e.code),
            message: e.message,
        };
        if e.fatal {
            self.enter_closed(format!("the scheduler reported a fatal error: {error}"));
            return;
        }
        let Some(request) = e.request.map(RequestId) else {
            self.events.push_back(ClientEvent::ServerError(error));
            return;
        };
        self.unacked.remove(&request);
        match self.requests.remove(&request) {
            Some(Pending::Wants { keys, .. }) => {
                for k in keys {
                    let ours = self
                        .keys
                        .get(&k)
                        .is_some_and(|entry| entry.origin == Some(request));
                    if ours {
                        if let Some(entry) = self.keys.get_mut(&k) {
                            entry.origin = None;
                        }
                        self.set_state(&k, KeyState::Failed(error.clone()));
                    }
                }
            }
            Some(_) => self
                .events
                .push_back(ClientEvent::RequestFailed { request, error }),
            None => self.events.push_back(ClientEvent::ServerError(error)),
        }
    }

    /// The transport closed (or failed). Every pending key and request
    /// fails with `reason`.
    pub fn handle_close(&mut self, reason: &str) {
        let resumable = self.resumable
            && !self.close_sent
            && self.session_token.is_some()
            && (self.phase == Phase::Ready || (self.phase == Phase::Handshaking && self.resuming));
        if resumable && !self.is_closed() {
            return self.connection_lost(reason);
        }
        if self.phase == Phase::Handshaking {
            // Nothing answered yet: whatever is there is no dask/1
            // scheduler, or it went away at once.
            self.enter_closed(format!(
                "closed before the handshake completed (no dask/1 scheduler answered): {reason}"
            ));
            return;
        }
        self.enter_closed(format!("connection lost: {reason}"));
    }

    /// The driver could not send `message` (for instance it is larger than
    /// a frame): the request it carried fails with `error`.
    pub fn handle_unsendable(&mut self, message: &Message, error: &WireError) {
        let request = match message {
            Message::UpdateGraph(m) => m.request,
            Message::Scatter(m) => m.request,
            Message::Gather(m) => m.request,
            Message::WhoHas(m) => m.request,
            Message::ClusterInfo(m) => m.request,
            Message::PublishDataset(m) => m.request,
            Message::UnpublishDataset(m) => m.request,
            Message::GetDataset(m) => m.request,
            Message::ListDatasets(m) => m.request,
            _ => return,
        };
        self.handle_error(ErrorReport {
            code: error.code.number(),
            message: format!("not sent: {}", error.message),
            fatal: false,
            request: Some(request),
            keys: None,
        });
    }

    /// The driver's own decoder rejected what the scheduler sent: queues a
    /// fatal `error` (send it, then close the transport) and closes.
    pub fn handle_protocol_error(&mut self, e: WireError) {
        self.fail_protocol(e);
    }

    fn fail_protocol(&mut self, e: WireError) {
        if self.is_closed() {
            return;
        }
        if crate::foreign::is_python_dask_peer_error(&e) {
            // It could not read a dask/1 error anyway.
            self.enter_closed(PYTHON_DASK_SCHEDULER.into());
            return;
        }
        self.transmit.push_back(Message::ErrorReport(ErrorReport {
            code: e.code.number(),
            message: e.message.clone(),
            fatal: true,
            request: None,
            keys: None,
        }));
        self.enter_closed(format!("protocol error from the scheduler: {e}"));
    }

    /// The scheduler did not prove the client secret: it gets nothing
    /// queued, only `error{3003}`.
    fn fail_auth(&mut self, e: WireError) {
        self.transmit.clear();
        self.to_release.clear();
        self.holding = false;
        self.transmit
            .push_back(Message::error(&crate::auth::failed(), None));
        self.enter_closed(format!("authentication: {}", e.message));
    }

    /// A barrier's or an acknowledged part's `ok` shows that graph and
    /// every graph sent before it accepted (or refused): they need not go
    /// again. Always false (the `ok` is answered as usual).
    fn acknowledges(&mut self, ok: RequestId) -> bool {
        if matches!(self.requests.get(&ok), Some(Pending::Barrier))
            || self.unacked.contains_key(&ok)
        {
            self.unacked.retain(|id, _| *id > ok);
        }
        false
    }

    /// A reply to (or an event of a want started by) a request queued
    /// after the last release shows the scheduler handled the releases
    /// before it: they need not go again after a restart.
    fn confirm_releases(&mut self, message: &Message) {
        let request = match message {
            Message::KeyFinished(m) => m.request,
            Message::KeyErred(m) => m.request,
            Message::KeyCancelled(m) => m.request,
            Message::KeyLost(m) => m.request,
            Message::KeyWaiting(m) => m.request,
            Message::GatherReply(m) => Some(m.request),
            Message::WhoHasReply(m) => Some(m.request),
            Message::ClusterInfoReply(m) => Some(m.request),
            Message::Datasets(m) => Some(m.request),
            Message::Dataset(m) => Some(m.request),
            Message::OkReply(m) => Some(m.request),
            Message::WaitingKeysReply(m) => Some(m.request),
            Message::ErrorReport(m) => m.request,
            _ => None,
        };
        if request.is_some_and(|r| r >= self.release_watermark) {
            self.unconfirmed_releases.clear();
        }
    }

    /// The connection of a session that can be resumed was lost: requests
    /// in flight fail (their answers are lost), the rest waits for
    /// [`ClientSession::resume`].
    fn connection_lost(&mut self, reason: &str) {
        self.phase = Phase::Handshaking;
        self.lost = Some(reason.to_owned());
        let error = RequestError::local(format!(
            "connection lost before the answer came ({reason}); the session is being resumed: \
             send the request again"
        ));
        let mut requests: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, kind)| !matches!(kind, Pending::Wants { .. }))
            .map(|(id, _)| *id)
            .collect();
        requests.sort();
        for request in requests {
            self.requests.remove(&request);
            self.events.push_back(ClientEvent::RequestFailed {
                request,
                error: error.clone(),
            });
        }
    }

    pub(super) fn enter_closed(&mut self, reason: String) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed(reason.clone());
        self.lost = None;
        self.unacked.clear();
        self.part_requests.clear();
        self.unconfirmed_releases.clear();
        let error = RequestError::local(format!("connection closed: {reason}"));
        let mut requests: Vec<(RequestId, Pending)> = self.requests.drain().collect();
        requests.sort_by_key(|(id, _)| *id);
        for (request, kind) in requests {
            if !matches!(kind, Pending::Wants { .. }) {
                self.events.push_back(ClientEvent::RequestFailed {
                    request,
                    error: error.clone(),
                });
            }
        }
        let mut pending: Vec<Key> = self
            .keys
            .iter()
            .filter(|(_, e)| e.state == KeyState::Pending)
            .map(|(k, _)| k.clone())
            .collect();
        pending.sort();
        for k in pending {
            if let Some(e) = self.keys.get_mut(&k) {
                e.origin = None;
            }
            self.set_state(&k, KeyState::Failed(error.clone()));
        }
        self.to_release.clear();
        self.events.push_back(ClientEvent::Closed { reason });
    }
}
