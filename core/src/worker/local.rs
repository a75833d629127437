//! Values on one host (dask/1.1 feature `value-local`, spec "Values on
//! one host"): a holder lends large values in memory by address
//! (`data-local`), a fetcher on the same host and user has its edge copy
//! them from the holder's memory (one kernel copy, no socket) and gives
//! the lease back (`value-local-done`).
//!
//! Both sides are here. The holder: which connections may get
//! `data-local` (both hellos list the feature and name the same host), the
//! leases (a clone of each lent value, so its bytes stay where they are,
//! until the fetcher is done or the connection closes). The fetcher: each
//! `data-local` entry becomes a [`WorkerOutput::ReadLocal`] (its size
//! checked against the value bound first: the holder is not trusted with
//! our memory); the edge reads off its loop thread and answers with
//! [`WorkerState::handle_local_read`]; a failed read (the kernel refuses,
//! a wrong probe, a malformed value) turns the path off for the
//! connection and the key is asked again by `get-data`, whose answer then
//! comes by the connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{ConnId, Level, LogRecord, WorkerOutput, WorkerState};
use crate::handshake;
use crate::messages::{DataLocal, GetData, Hello, LocalHost, LocalValue, ValueLocalDone};
use crate::{ErrorCode, Key, Message, RawValue, Timestamp, WireError};

/// How long a holder keeps the values lent on a connection after it
/// closed: a fetcher may still be copying one (a 1 GB copy takes well under
/// a second) and learns of the close only then; freed at once, the value's
/// buffer could take another value of the same size, which the copy would
/// read as well-formed and wrong.
pub const LEASE_GRACE: Duration = Duration::from_secs(10);

/// The same-host state of one data connection.
#[derive(Debug, Default)]
pub(super) struct ConnLocal {
    /// Values may be lent on it (holder) or read from its peer (fetcher):
    /// both listed the feature, the peer's host is ours, and no read on it
    /// has failed.
    pub(super) usable: bool,
    /// Fetcher: the holder's process and probe.
    peer: Option<LocalHost>,
    /// Holder: the values lent on it, by lease.
    leases: HashMap<u64, Arc<RawValue>>,
    next_lease: u64,
}

/// A value to copy from a holder's memory on this host (see
/// [`WorkerOutput::ReadLocal`]); given back with the result to
/// [`WorkerState::handle_local_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRead {
    /// The connection to the holder (for the lease's return).
    pub conn: ConnId,
    /// The `get-data` it answers.
    pub request: u64,
    /// The value's key.
    pub key: Key,
    /// The holder's process id.
    pub pid: u32,
    /// Where the holder keeps its probe, and what must be there: read and
    /// compared first, so a reused pid is never read from.
    pub probe_at: u64,
    /// See `probe_at`.
    pub probe: [u8; 32],
    /// Where the value's encoding is in the holder's memory.
    pub at: u64,
    /// Its length, at most the worker's value bound (checked before this
    /// output is made).
    pub nbytes: u64,
    /// The holder's lease.
    pub lease: u64,
}

impl WorkerState {
    /// This worker's side of a peer hello: the feature and who it is, when
    /// its edge reads peers' memory.
    pub(super) fn offer_local(&self, hello: &mut Hello) {
        let Some(local) = &self.config.local else {
            return;
        };
        hello.local = Some(local.clone());
        let features = hello.features.get_or_insert_with(Vec::new);
        if !features.iter().any(|f| f == handshake::VALUE_LOCAL) {
            features.push(handshake::VALUE_LOCAL.to_owned());
        }
    }

    /// Whether a peer's hello makes its connection a same-host one: it
    /// lists the feature, as this worker does, and names this host.
    pub(super) fn same_host(&self, peer: &Hello) -> bool {
        let Some(ours) = &self.config.local else {
            return false;
        };
        handshake::lists(&peer.features, handshake::VALUE_LOCAL)
            && peer.local.as_ref().is_some_and(|p| p.host == ours.host)
    }

    /// The holder's reply hello on an outgoing connection was checked (and
    /// its proof): values may be read from it when it is on this host.
    pub(super) fn holder_hello(&mut self, conn: ConnId, reply: &Hello) {
        let usable = self.same_host(reply);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.local.usable = usable;
            c.local.peer = if usable { reply.local.clone() } else { None };
        }
    }

    /// Holder: takes out of `found` the values to lend on `conn` (in
    /// memory, large enough, while its leases are under the bound) and
    /// returns them as a `data-local`.
    pub(super) fn lend(
        &mut self,
        conn: ConnId,
        request: u64,
        found: &mut Vec<(&Key, Arc<RawValue>)>,
    ) -> Option<Message> {
        let c = self.conns.get_mut(&conn)?;
        if !c.local.usable || found.is_empty() {
            return None;
        }
        let mut values = BTreeMap::new();
        found.retain(|(key, value)| {
            let lend = value.len() >= super::config::LOCAL_VALUE_BYTES_MIN
                && c.local.leases.len() < super::config::LOCAL_LEASES_MAX;
            if lend {
                let lease = c.local.next_lease;
                c.local.next_lease += 1;
                let at = value.as_bytes().as_ptr() as u64;
                let nbytes = value.len() as u64;
                c.local.leases.insert(lease, Arc::clone(value));
                values.insert((*key).clone(), LocalValue { at, nbytes, lease });
            }
            !lend
        });
        if values.is_empty() {
            return None;
        }
        Some(Message::DataLocal(DataLocal { request, values }))
    }

    /// Holder: a connection with values lent on it closed: they are kept
    /// for [`LEASE_GRACE`] more.
    pub(super) fn retire_leases(&mut self, local: ConnLocal) {
        if local.leases.is_empty() {
            return;
        }
        let values = local.leases.into_values().collect();
        self.retired_leases
            .push_back((self.now + LEASE_GRACE, values));
    }

    /// Holder: drops the retired leases whose grace is over.
    pub(super) fn expire_leases(&mut self) {
        while self
            .retired_leases
            .front()
            .is_some_and(|(until, _)| *until <= self.now)
        {
            self.retired_leases.pop_front();
        }
    }

    /// Holder: the fetcher on `conn` is done with these leases; after a
    /// failed read, nothing more is lent on `conn`.
    pub(super) fn leases_done(&mut self, conn: ConnId, done: ValueLocalDone) {
        if let Some(c) = self.conns.get_mut(&conn) {
            for lease in done.leases {
                c.local.leases.remove(&lease);
            }
            if done.failed == Some(true) {
                c.local.usable = false;
            }
        }
    }

    /// Fetcher: a `data-local` from the holder on `conn`: each value it
    /// still waits for is read by the edge; the others' leases go back at
    /// once. One whose size is over the value bound is asked again by the
    /// connection.
    ///
    /// `Err` when the connection never negotiated the path: the caller
    /// rejects it.
    pub(super) fn data_local_arrived(
        &mut self,
        conn: ConnId,
        address: &str,
        message: DataLocal,
    ) -> Result<(), WireError> {
        self.dirty = true;
        let DataLocal { request, values } = message;
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        let Some(peer) = c.local.peer.clone() else {
            return Err(WireError::new(
                ErrorCode::UnexpectedMessage,
                "`data-local` on a connection that did not negotiate value-local",
            ));
        };
        // After a failed read the holder may still have lent some before
        // it heard: those are asked again by the connection too.
        let usable = c.local.usable;
        let waiting = |state: &WorkerState, key: &Key| {
            state
                .requests
                .get(&request)
                .is_some_and(|r| r.address == address && r.outstanding.contains(key))
        };
        let mut unwanted = Vec::new();
        for (key, value) in values {
            if !waiting(self, &key) {
                unwanted.push(value.lease);
                continue;
            }
            if !usable {
                self.local_failed(conn, request, key, value.lease, "turned off");
                continue;
            }
            let fits = value.nbytes > 0 && value.nbytes <= self.config.value_bytes_max as u64;
            let Ok(pid) = u32::try_from(peer.pid) else {
                self.local_failed(conn, request, key, value.lease, "no such process id");
                continue;
            };
            if !fits {
                let why = format!(
                    "a value of {} bytes is over this worker's bound of {}",
                    value.nbytes, self.config.value_bytes_max
                );
                self.local_failed(conn, request, key, value.lease, &why);
                continue;
            }
            self.outputs.push_back(WorkerOutput::ReadLocal(LocalRead {
                conn,
                request,
                key,
                pid,
                probe_at: peer.probe_at,
                probe: peer.probe.0,
                at: value.at,
                nbytes: value.nbytes,
                lease: value.lease,
            }));
        }
        if !unwanted.is_empty() {
            let done = ValueLocalDone {
                leases: unwanted,
                failed: None,
            };
            self.send(conn, Message::ValueLocalDone(done));
        }
        Ok(())
    }

    /// The edge's copy of a [`WorkerOutput::ReadLocal`]: the value (its
    /// encoding checked), or why it could not be read. The lease goes
    /// back either way; the value is kept as if it had come in `data`, or
    /// asked again by the connection.
    pub fn handle_local_read(
        &mut self,
        now: Timestamp,
        read: LocalRead,
        result: Result<RawValue, String>,
    ) {
        self.now = now;
        self.dirty = true;
        let value = match result {
            Ok(value) if value.len() as u64 == read.nbytes => value,
            Ok(value) => {
                let why = format!("{} bytes read of {}", value.len(), read.nbytes);
                return self.local_failed(read.conn, read.request, read.key, read.lease, &why);
            }
            Err(why) => {
                return self.local_failed(read.conn, read.request, read.key, read.lease, &why)
            }
        };
        if self.conns.contains_key(&read.conn) {
            let done = ValueLocalDone {
                leases: vec![read.lease],
                failed: None,
            };
            self.send(read.conn, Message::ValueLocalDone(done));
        }
        let Some(address) = self.holder_address(read.conn).map(str::to_owned) else {
            return;
        };
        let waiting = self
            .requests
            .get(&read.request)
            .is_some_and(|r| r.address == address && r.outstanding.contains(&read.key));
        if waiting {
            let nbytes = value.len() as u64;
            let mut data = BTreeMap::new();
            data.insert(read.key, value);
            self.data_arrived(&address, read.request, data, Vec::new());
            self.transfer_local_bytes = self.transfer_local_bytes.saturating_add(nbytes);
        }
    }

    /// A value lent on `conn` cannot be read: its lease goes back with
    /// `failed`, nothing more is read on `conn`, and the key is asked again
    /// there by `get-data` (same request id), answered by the connection.
    fn local_failed(&mut self, conn: ConnId, request: u64, key: Key, lease: u64, why: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was_usable = std::mem::replace(&mut c.local.usable, false);
        let done = ValueLocalDone {
            leases: vec![lease],
            failed: Some(true),
        };
        self.send(conn, Message::ValueLocalDone(done));
        let address = self.holder_address(conn).unwrap_or_default().to_owned();
        if was_usable {
            let line = format!(
                "values from the worker at {address} go by the connection: reading its memory failed: {why}"
            );
            let record = LogRecord::new(Level::Info, "value-local-off", line)
                .with("address", address.as_str());
            self.outputs.push_back(WorkerOutput::Log(record));
        }
        let waiting = self
            .requests
            .get(&request)
            .is_some_and(|r| r.address == address && r.outstanding.contains(&key));
        if waiting {
            let keys = vec![key];
            self.send(conn, Message::GetData(GetData { request, keys }));
        }
    }
}
