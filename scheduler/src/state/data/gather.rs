//! Gathers: the holders asked for a client's values over their
//! connections (get-data), busy holders asked again, missing keys asked of
//! another holder, and the reply cut to what fits in a frame.

use super::*;

impl SchedulerState {
    // ---- gather -----------------------------------------------------------

    /// Asks the holders for a gather's values (when
    /// [`outflow`](super::outflow) lets it start).
    pub(crate) fn start_gather(&mut self, conn: ConnId, m: Gather, estimate: u64) {
        let id = self.data.next_gather;
        self.data.next_gather += 1;
        let mut g = PendingGather {
            client: conn,
            request: m.request,
            outstanding: 0,
            data: BTreeMap::new(),
            missing: Vec::new(),
            too_large: Vec::new(),
            estimate,
            relays: Default::default(),
        };
        let mut per_worker: BTreeMap<WorkerIdx, Vec<Key>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for key in m.keys {
            // A key listed twice is answered once (a holder's reply has
            // it once, so a second ask would look like a lost replica).
            if !seen.insert(key.clone()) {
                continue;
            }
            if self.relays(conn, &key) {
                g.relays.waiting.push_back(key);
                continue;
            }
            match self.holder(&key, None) {
                Some(w) => per_worker.entry(w).or_default().push(key),
                None => g.missing.push(key),
            }
        }
        self.data.gathers.insert(id, g);
        self.request_gets(id, per_worker);
        self.maybe_answer_gather(id);
    }

    /// Whether a gather of `conn` is being answered.
    pub(crate) fn gather_in_progress(&self, conn: ConnId) -> bool {
        self.data.gathers.values().any(|g| g.client == conn)
    }

    /// Bytes of the large gathers being answered (see
    /// [`outflow`](super::outflow)).
    pub(crate) fn large_gathers_in_flight(&self) -> u64 {
        self.data
            .gathers
            .values()
            .map(|g| g.estimate)
            .filter(|&e| e > super::outflow::GATHER_SMALL_BYTES)
            .fold(0u64, u64::saturating_add)
    }

    /// A worker holding `key` in memory, other than `except`: the one with
    /// the fewest tasks assigned.
    pub(super) fn holder(&self, key: &Key, except: Option<WorkerIdx>) -> Option<WorkerIdx> {
        self.holder_where(key, except, |_| true)
    }

    /// As [`SchedulerState::holder`], among the holders `fit` accepts.
    pub(crate) fn holder_where(
        &self,
        key: &Key,
        except: Option<WorkerIdx>,
        fit: impl Fn(WorkerIdx) -> bool,
    ) -> Option<WorkerIdx> {
        let t = self.task_id(key)?;
        let task = &self.tasks[t];
        if task.state() != TaskState::Memory {
            return None;
        }
        task.who_has
            .iter()
            .copied()
            .filter(|&w| Some(w) != except && fit(w))
            .min_by_key(|w| {
                self.workers
                    .get(w.ix())
                    .map_or(usize::MAX, |k| k.processing.len())
            })
    }

    pub(super) fn request_gets(&mut self, gather: u64, per_worker: BTreeMap<WorkerIdx, Vec<Key>>) {
        for (w, keys) in per_worker {
            self.request_get(gather, w, keys);
        }
    }

    pub(super) fn request_get(&mut self, gather: u64, w: WorkerIdx, keys: Vec<Key>) {
        let request = self.request_id();
        self.send_worker(
            w,
            Message::GetData(GetData {
                request,
                keys: keys.clone(),
            }),
        );
        self.data.gets.insert(
            request,
            PendingGet {
                gather,
                worker: w,
                keys,
                busy_retries: 0,
            },
        );
        if let Some(g) = self.data.gathers.get_mut(&gather) {
            g.outstanding += 1;
        }
    }

    /// Once a gather's values are in, its relays go (unless a value is
    /// too large to send at all), then its reply.
    pub(super) fn maybe_answer_gather(&mut self, id: u64) {
        let Some(g) = self.data.gathers.get(&id) else {
            return;
        };
        if g.outstanding > 0 {
            return;
        }
        if g.too_large.is_empty() && g.relays.is_pending() {
            return self.relay_next(id);
        }
        self.answer_gather(id);
    }

    /// Answers gather `id` with what it has (its relayed values went
    /// before, in parts): then the client's messages held meanwhile.
    pub(crate) fn answer_gather(&mut self, id: u64) {
        let Some(g) = self.data.gathers.remove(&id) else {
            return;
        };
        let client = g.client;
        let held = self.data.relaying.remove(&client);
        self.answer(g);
        for message in held.into_iter().flatten() {
            self.send(client, message);
        }
    }

    pub(super) fn answer(&mut self, g: PendingGather) {
        self.gather_answered(g.client, 0);
        if !self.clients.contains_key(&g.client) {
            return;
        }
        if !g.too_large.is_empty() {
            let message = format!(
                "the values of {} do not fit in one message (frame_bytes_max {FRAME_BYTES_MAX} bytes): no client can gather them",
                key_list(&g.too_large)
            );
            return self.reply_error(
                g.client,
                ErrorCode::ValueTooLarge,
                message,
                Some(g.request),
                Some(g.too_large),
            );
        }
        let reply = GatherReply {
            request: g.request,
            status: self.status_for(g.client, g.missing.iter()),
            data: g.data,
            missing: g.missing,
        };
        let in_parts = self.clients.get(&g.client).is_some_and(|c| c.value_parts);
        if !in_parts && !fits_in_a_frame(&reply) {
            // Each value fits alone (holders sent them), not all together.
            let keys: Vec<Key> = reply.data.into_keys().collect();
            let message = format!(
                "the values of the {} keys asked for do not fit in one message together (frame_bytes_max {FRAME_BYTES_MAX} bytes): gather fewer keys per request",
                keys.len()
            );
            return self.reply_error(
                g.client,
                ErrorCode::ValueTooLarge,
                message,
                Some(g.request),
                Some(keys),
            );
        }
        let bytes = reply.data.values().map(|v| v.len() as u64).sum();
        self.gather_answered(g.client, bytes);
        self.send(g.client, Message::GatherReply(reply));
    }

    /// A worker refused a request of ours with a non-fatal `error` (its
    /// fatal errors close the connection). For a `get-data`, 5002 means
    /// the values would not fit in one message: each key it lists is asked
    /// for alone and the others together, and a key refused alone cannot
    /// be sent at all (the gather fails with 5002 naming it); any other
    /// code counts as the keys not delivered. For a `put-data` (its 5002:
    /// a value it will not store), the keys are not stored there.
    pub(crate) fn request_refused(&mut self, w: WorkerIdx, e: ErrorReport) {
        let Some(request) = e.request else {
            return;
        };
        if self.check_answered(w, request, None) {
            return;
        }
        if self.data.puts.get(&request).is_some_and(|p| p.worker == w) {
            let Some(put) = self.data.puts.remove(&request) else {
                return;
            };
            for key in put.keys {
                self.put_done(&key, None, "the worker refused to store it");
            }
            return;
        }
        if self.range_refused(w, request) {
            return;
        }
        if self.data.gets.get(&request).is_none_or(|g| g.worker != w) {
            return;
        }
        let Some(get) = self.data.gets.remove(&request) else {
            return;
        };
        self.data.busy.retain(|&r| r != request);
        if e.code != ErrorCode::ValueTooLarge.number() {
            return self.get_failed(get.gather, w, get.keys, false);
        }
        let Some(g) = self.data.gathers.get_mut(&get.gather) else {
            return;
        };
        g.outstanding = g.outstanding.saturating_sub(1);
        if let [key] = &get.keys[..] {
            g.too_large.push(key.clone());
            return self.maybe_answer_gather(get.gather);
        }
        let listed = e.keys.unwrap_or_default();
        let (mut alone, mut together): (Vec<Key>, Vec<Key>) =
            get.keys.into_iter().partition(|k| listed.contains(k));
        if alone.is_empty() {
            // It named none of them: find out key by key.
            std::mem::swap(&mut alone, &mut together);
        }
        for key in alone {
            self.request_get(get.gather, w, vec![key]);
        }
        if !together.is_empty() {
            self.request_get(get.gather, w, together);
        }
    }

    pub(crate) fn data_reply(&mut self, w: WorkerIdx, mut m: Data) {
        if self.check_answered(w, m.request, Some(&m)) || self.range_missing(w, &m) {
            return;
        }
        if self.data.gets.get(&m.request).is_none_or(|g| g.worker != w) {
            return;
        }
        let Some(get) = self.data.gets.remove(&m.request) else {
            return;
        };
        self.data.busy.retain(|&r| r != m.request);
        let mut not_there = Vec::new();
        if let Some(g) = self.data.gathers.get_mut(&get.gather) {
            for key in get.keys {
                match m.data.remove(&key) {
                    Some(value) => {
                        g.data.insert(key, value);
                    }
                    None => not_there.push(key),
                }
            }
        }
        self.get_failed(get.gather, w, not_there, true);
    }

    /// Keys a worker did not deliver for a gather: its replica is dropped
    /// (when `drop_replica`) and another holder is asked, else missing.
    pub(super) fn get_failed(
        &mut self,
        gather: u64,
        w: WorkerIdx,
        keys: Vec<Key>,
        drop_replica: bool,
    ) {
        let mut retry: BTreeMap<WorkerIdx, Vec<Key>> = BTreeMap::new();
        let mut missing = Vec::new();
        // Its client may have left: nothing more to ask for.
        let answering = self.data.gathers.contains_key(&gather);
        for key in keys {
            if drop_replica {
                if let Some(t) = self.task_id(&key) {
                    if self.remove_replica(t, w) {
                        let task = &self.tasks[t];
                        if task.state() == TaskState::Memory && task.who_has.is_empty() {
                            self.lose_data(t);
                        }
                    }
                }
            }
            if !answering {
                continue;
            }
            match self.holder(&key, Some(w)) {
                Some(x) => retry.entry(x).or_default().push(key),
                None => missing.push(key),
            }
        }
        if let Some(g) = self.data.gathers.get_mut(&gather) {
            g.outstanding = g.outstanding.saturating_sub(1);
            g.missing.extend(missing);
        }
        self.request_gets(gather, retry);
        self.maybe_answer_gather(gather);
    }

    pub(crate) fn busy_reply(&mut self, w: WorkerIdx, m: Busy) {
        if self.check_answered(w, m.request, None) || self.range_refused(w, m.request) {
            return;
        }
        let Some(get) = self.data.gets.get_mut(&m.request) else {
            return;
        };
        if get.worker != w {
            return;
        }
        get.busy_retries += 1;
        if get.busy_retries > GATHER_BUSY_RETRIES_MAX {
            let Some(get) = self.data.gets.remove(&m.request) else {
                return;
            };
            self.get_failed(get.gather, w, get.keys, false);
        } else if !self.data.busy.contains(&m.request) {
            self.data.busy.push(m.request);
            if self.data.busy_retry_at.is_none() {
                self.data.busy_retry_at = Some(self.now + GATHER_BUSY_RETRY_INTERVAL);
            }
        }
    }

    /// Asks again for gets answered `busy`.
    pub(crate) fn retry_busy_gets(&mut self) {
        for request in std::mem::take(&mut self.data.busy) {
            let Some(get) = self.data.gets.get(&request) else {
                continue;
            };
            let (w, keys) = (get.worker, get.keys.clone());
            self.send_worker(w, Message::GetData(GetData { request, keys }));
        }
    }

    /// Requests to a worker that left: gets go to other holders; puts
    /// end without a copy there (the key is lost if no worker stored it).
    pub(crate) fn data_worker_left(&mut self, w: WorkerIdx) {
        self.relays_worker_left(w);
        let mut gets: Vec<u64> = self
            .data
            .gets
            .iter()
            .filter(|(_, g)| g.worker == w)
            .map(|(&r, _)| r)
            .collect();
        gets.sort_unstable();
        for r in gets {
            self.data.busy.retain(|&b| b != r);
            if let Some(get) = self.data.gets.remove(&r) {
                self.get_failed(get.gather, w, get.keys, false);
            }
        }
        let mut puts: Vec<u64> = self
            .data
            .puts
            .iter()
            .filter(|(_, p)| p.worker == w)
            .map(|(&r, _)| r)
            .collect();
        puts.sort_unstable();
        // Copies it stored for scatters still in flight are gone with it.
        for s in self.data.scattering.values_mut() {
            s.stored.retain(|&x| x != w);
        }
        for r in puts {
            let Some(put) = self.data.puts.remove(&r) else {
                continue;
            };
            for key in put.keys {
                self.put_done(&key, None, "the worker left before storing it");
            }
        }
    }
}

/// Whether `reply` fits in a frame by itself (as the frame encoder
/// decides: the message and a batch header of up to 5 bytes).
fn fits_in_a_frame(reply: &GatherReply) -> bool {
    encoded_len(reply) + 5 <= FRAME_BYTES_MAX
}

/// The length of `reply`'s canonical encoding as a message, without
/// encoding it (its values may be hundreds of MiB).
fn encoded_len(reply: &GatherReply) -> usize {
    pub(super) fn str_len(n: usize) -> usize {
        n + match n {
            0..=31 => 1,
            32..=255 => 2,
            256..=65535 => 3,
            _ => 5,
        }
    }
    pub(super) fn container_header(n: usize) -> usize {
        match n {
            0..=15 => 1,
            16..=65535 => 3,
            _ => 5,
        }
    }
    let request = match reply.request {
        0..=127 => 1,
        128..=255 => 2,
        256..=65535 => 3,
        65536..=0xffff_ffff => 5,
        _ => 9,
    };
    container_header(4)
        + str_len(2)
        + str_len("gather-reply".len())
        + str_len("request".len())
        + request
        + str_len("data".len())
        + container_header(reply.data.len())
        + reply
            .data
            .iter()
            .map(|(k, v)| str_len(k.0.len()) + v.as_bytes().len())
            .sum::<usize>()
        + str_len("missing".len())
        + container_header(reply.missing.len())
        + reply
            .missing
            .iter()
            .map(|k| str_len(k.0.len()))
            .sum::<usize>()
}

/// Up to 8 keys, quoted, for a message a person reads.
fn key_list(keys: &[Key]) -> String {
    let mut shown: Vec<String> = keys.iter().take(8).map(|k| format!("{:?}", k.0)).collect();
    if keys.len() > 8 {
        shown.push(format!("and {} more", keys.len() - 8));
    }
    shown.join(", ")
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    pub(super) fn encoded_len_is_the_length_of_the_encoding() {
        let key = |n: usize| Key("k".repeat(n));
        let value = |n: usize| RawValue::from_value(&rmpv::Value::Binary(vec![7; n]));
        for (request, keys, missing) in [(0, 0, 0), (200, 3, 1), (70_000, 20, 17), (u64::MAX, 1, 0)]
        {
            let reply = GatherReply {
                request,
                data: (0..keys)
                    .map(|i| (key(i * 40 + 1), value(i * 100)))
                    .collect(),
                missing: (0..missing).map(|i| key(i * 300 + 1)).collect(),
                status: None,
            };
            let bytes = Message::GatherReply(reply.clone()).to_bytes();
            assert_eq!(
                encoded_len(&reply),
                bytes.len(),
                "request {request}, {keys} keys"
            );
        }
    }
}
