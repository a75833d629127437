//! What the scheduler writes in its journal: one [`JournalRecord`] per
//! change a client was (or could be) told about, and snapshots made of the
//! same records. Pure: bytes in, bytes out.
//!
//! A record is a msgpack array `[kind, session, holders, message]`: `kind`
//! a string (below), `session` the client session it belongs to (`""` for
//! none), `holders` the names of the workers holding a result (else
//! empty), and `message` the dask/1 message that carries the change, in
//! its canonical wire encoding (so a record holds what the wire said, and
//! is read by the wire's own decoder):
//!
//! | kind        | message          | what it records                                  |
//! |-------------|------------------|--------------------------------------------------|
//! | `graph`     | `update-graph`   | a graph accepted (or keys wanted, with no tasks) |
//! | `release`   | `release-keys`   | a client released keys                           |
//! | `cancel`    | `cancel-keys`    | a client cancelled keys                          |
//! | `put`       | `publish-dataset`| a dataset published                              |
//! | `delete`    | `unpublish-dataset` | a dataset removed                             |
//! | `finished`  | `task-finished`  | a result in memory, on `holders`                 |
//! | `erred`     | `task-erred`     | a task failed for good                           |
//! | `gone`      | `close`          | a client session ended (its wants dropped)       |
//! | `retried`   | `task-erred`     | a task failed and used one of its retries        |
//! | `lost`      | `key-lost`       | a task was processing on a worker that was lost (`holders`: its name) |
//! | `scattered` | `key-finished`   | scattered data stored on `holders`, wanted by the session (the event its client was told) |
//!
//! A snapshot is a sequence of records, each as `u32 LE length | record`.

use dask_core::messages::{Close, KeyFinished, KeyLost, TaskErred, TaskFinished};
use dask_core::msgpack::{write, Reader, WriteBuf};
use dask_core::Message;

/// One change, as written to the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    /// What it records.
    pub kind: RecordKind,
    /// The client session it belongs to (`""`: none).
    pub session: String,
    /// Workers (by name) holding the result of a `finished` record.
    pub holders: Vec<String>,
    /// The change itself.
    pub message: Message,
}

/// What a [`JournalRecord`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A graph accepted, or keys wanted.
    Graph,
    /// Keys released.
    Release,
    /// Keys cancelled.
    Cancel,
    /// A dataset published.
    Put,
    /// A dataset removed.
    Delete,
    /// A result in memory.
    Finished,
    /// A task failed for good.
    Erred,
    /// A client session ended.
    Gone,
    /// A task failed and used one of its retries.
    Retried,
    /// A worker was lost while a task was processing on it.
    Lost,
    /// Scattered data stored on workers.
    Scattered,
}

impl RecordKind {
    const ALL: [(RecordKind, &'static str); 11] = [
        (RecordKind::Graph, "graph"),
        (RecordKind::Release, "release"),
        (RecordKind::Cancel, "cancel"),
        (RecordKind::Put, "put"),
        (RecordKind::Delete, "delete"),
        (RecordKind::Finished, "finished"),
        (RecordKind::Erred, "erred"),
        (RecordKind::Gone, "gone"),
        (RecordKind::Retried, "retried"),
        (RecordKind::Lost, "lost"),
        (RecordKind::Scattered, "scattered"),
    ];

    /// Its name in the record.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("", |(_, n)| n)
    }

    fn from_name(name: &str) -> Option<RecordKind> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }
}

impl JournalRecord {
    /// A record of `kind` for `session` carrying `message`.
    pub fn new(kind: RecordKind, session: &str, message: Message) -> JournalRecord {
        JournalRecord {
            kind,
            session: session.to_owned(),
            holders: Vec::new(),
            message,
        }
    }

    /// A result in memory on `holders`.
    pub fn finished(key: dask_core::Key, nbytes: u64, holders: Vec<String>) -> JournalRecord {
        JournalRecord {
            kind: RecordKind::Finished,
            session: String::new(),
            holders,
            message: Message::TaskFinished(TaskFinished {
                key,
                nbytes,
                duration_us: None,
                // The journal keeps where a result is, not the result.
                value: None,
            }),
        }
    }

    /// The bytes of [`JournalRecord::finished`] with at most one holder,
    /// written straight into `out` (one per task run: the hot path).
    pub fn encode_finished(out: &mut Vec<u8>, key: &str, nbytes: u64, holder: Option<&str>) {
        // The fixed parts as constant bytes (a test checks them against
        // `JournalRecord::encode`): written piece by piece they were 840
        // instructions per record, a twentieth of the event loop's work
        // per task (callgrind). `[kind, session, `:
        const HEAD: &[u8] = b"\x94\xa8finished\xa0";
        // `Message::TaskFinished` with `key` and `nbytes` alone, as
        // `Message::write` lays it out (op first, then fields in their
        // order), without copying the key into a message first: its map
        // of 3, the op and the key's name.
        const MESSAGE_HEAD: &[u8] = b"\x83\xa2op\xadtask-finished\xa3key";
        const NBYTES: &[u8] = b"\xa6nbytes";
        // Strings take at most 5 header bytes, the integer 9.
        out.reserve(
            HEAD.len()
                + 1
                + holder.map_or(0, |h| h.len() + 5)
                + MESSAGE_HEAD.len()
                + key.len()
                + 5
                + NBYTES.len()
                + 9,
        );
        out.extend_from_slice(HEAD);
        write::array_len(out, usize::from(holder.is_some()));
        if let Some(h) = holder {
            write::str(out, h);
        }
        out.extend_from_slice(MESSAGE_HEAD);
        write::str(out, key);
        out.extend_from_slice(NBYTES);
        write::uint(out, nbytes);
    }

    /// The bytes of a `release` record of `keys` for `session`, written
    /// straight into `out`: a client that drops the futures of a large
    /// graph releases every key in one message, and a record built first
    /// copied each key (an allocation and a free per key).
    pub fn encode_release(out: &mut Vec<u8>, session: &str, keys: &dask_core::messages::KeyList) {
        write::array_len(out, 4);
        write::str(out, RecordKind::Release.name());
        write::str(out, session);
        write::array_len(out, 0);
        // `Message::ReleaseKeys` as `Message::write` lays it out.
        write::map_len(out, 2);
        write::str(out, "op");
        write::str(out, "release-keys");
        write::str(out, "keys");
        write::array_len(out, keys.len());
        for k in keys.iter() {
            write::str(out, k);
        }
    }

    /// A task failed for good with this error.
    pub fn erred(m: TaskErred) -> JournalRecord {
        JournalRecord::new(RecordKind::Erred, "", Message::TaskErred(m))
    }

    /// Task `key` was processing on worker `worker` (`""`: not named)
    /// when that worker was lost.
    pub fn lost(key: dask_core::Key, worker: &str) -> JournalRecord {
        JournalRecord {
            kind: RecordKind::Lost,
            session: String::new(),
            holders: if worker.is_empty() {
                Vec::new()
            } else {
                vec![worker.to_owned()]
            },
            message: Message::KeyLost(KeyLost {
                key,
                message: "its worker was lost while it ran".into(),
                request: None,
            }),
        }
    }

    /// Scattered data `key` of `nbytes` stored on `holders`, wanted by
    /// `session` under `request` (the scatter's).
    pub fn scattered(
        session: &str,
        key: dask_core::Key,
        nbytes: u64,
        request: u64,
        holders: Vec<String>,
    ) -> JournalRecord {
        JournalRecord {
            kind: RecordKind::Scattered,
            session: session.to_owned(),
            holders,
            message: Message::KeyFinished(KeyFinished {
                key,
                nbytes,
                request: Some(request),
                // The journal keeps where data is, never the data.
                value: None,
            }),
        }
    }

    /// A client session ended.
    pub fn gone(session: &str) -> JournalRecord {
        JournalRecord::new(
            RecordKind::Gone,
            session,
            Message::Close(Close {
                reason: None,
                reconnect: None,
            }),
        )
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the record's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        write::array_len(out, 4);
        write::str(out, self.kind.name());
        write::str(out, &self.session);
        write::array_len(out, self.holders.len());
        for h in &self.holders {
            write::str(out, h);
        }
        self.message.write(&mut WriteBuf::new(out));
    }

    /// Reads one record; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<JournalRecord, String> {
        let mut r = Reader::new(bytes);
        let e = |e: dask_core::WireError| e.to_string();
        if r.read_array_len().map_err(e)? != 4 {
            return Err("a record is an array of 4".into());
        }
        let name = r.read_str().map_err(e)?;
        let kind =
            RecordKind::from_name(name).ok_or_else(|| format!("unknown record kind {name:?}"))?;
        let session = r.read_str().map_err(e)?.to_owned();
        let n = r.read_array_len().map_err(e)?;
        // Each name takes at least a byte: a bad length never allocates.
        let mut holders = Vec::with_capacity(n.min(r.remaining()));
        for _ in 0..n {
            holders.push(r.read_str().map_err(e)?.to_owned());
        }
        let message = Message::read(&mut r).map_err(e)?;
        if r.remaining() != 0 {
            return Err("bytes after the end of the record".into());
        }
        let expected = match kind {
            RecordKind::Graph => "update-graph",
            RecordKind::Release => "release-keys",
            RecordKind::Cancel => "cancel-keys",
            RecordKind::Put => "publish-dataset",
            RecordKind::Delete => "unpublish-dataset",
            RecordKind::Finished => "task-finished",
            RecordKind::Erred => "task-erred",
            RecordKind::Gone => "close",
            RecordKind::Retried => "task-erred",
            RecordKind::Lost => "key-lost",
            RecordKind::Scattered => "key-finished",
        };
        if message.op() != expected {
            return Err(format!(
                "a {name:?} record carries `{}`, not `{expected}`",
                message.op()
            ));
        }
        Ok(JournalRecord {
            kind,
            session,
            holders,
            message,
        })
    }
}

/// Appends `record` to a snapshot being built.
pub fn push_snapshot_record(snapshot: &mut Vec<u8>, record: &JournalRecord) {
    let at = snapshot.len();
    snapshot.extend_from_slice(&[0; 4]);
    record.encode_into(snapshot);
    let len = (snapshot.len() - at - 4) as u32;
    snapshot[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The records' bytes of a snapshot, in order.
pub fn snapshot_records(snapshot: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < snapshot.len() {
        let Some(head) = snapshot.get(at..at + 4) else {
            return Err("a snapshot cut inside a record's length".into());
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(record) = snapshot.get(at + 4..at + 4 + len) else {
            return Err("a snapshot cut inside a record".into());
        };
        out.push(record);
        at += 4 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::messages::ReleaseKeys;
    use dask_core::Key;

    #[test]
    fn records_read_back_as_written() {
        let records = [
            JournalRecord::finished(Key::from("x"), 12, vec!["w1".into(), "w2".into()]),
            JournalRecord::new(
                RecordKind::Release,
                "s1",
                Message::ReleaseKeys(ReleaseKeys {
                    keys: vec![Key::from("a")].into(),
                }),
            ),
            JournalRecord::gone("s1"),
            JournalRecord::lost(Key::from("y"), "w2"),
            JournalRecord::scattered("s1", Key::from("d"), 3, 7, vec!["w1".into()]),
        ];
        let mut snapshot = Vec::new();
        for r in &records {
            assert_eq!(JournalRecord::decode(&r.encode()).as_ref(), Ok(r));
            push_snapshot_record(&mut snapshot, r);
        }
        let back: Vec<JournalRecord> = snapshot_records(&snapshot)
            .unwrap()
            .into_iter()
            .map(|b| JournalRecord::decode(b).unwrap())
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn a_finished_record_written_directly_is_the_same_record() {
        // Long names too: their string headers are longer.
        let (long_key, long_holder) = ("k".repeat(300), "w".repeat(40));
        for key in ["x", long_key.as_str()] {
            for (holder, nbytes) in [
                (None, 12),
                (Some("w1"), 0),
                (Some("w2"), u64::MAX),
                (Some(long_holder.as_str()), 1 << 20),
            ] {
                let mut direct = Vec::new();
                JournalRecord::encode_finished(&mut direct, key, nbytes, holder);
                let record = JournalRecord::finished(
                    Key::from(key),
                    nbytes,
                    holder.map(str::to_owned).into_iter().collect(),
                );
                assert_eq!(direct, record.encode());
            }
        }
    }

    #[test]
    fn a_release_record_written_directly_is_the_same_record() {
        let long = "k".repeat(300);
        for keys in [
            vec![],
            vec![Key::from("a")],
            vec![Key::from("a"), Key::from(long.as_str())],
        ] {
            for session in ["", "s1"] {
                let mut direct = Vec::new();
                let keys = dask_core::messages::KeyList::from(keys.clone());
                JournalRecord::encode_release(&mut direct, session, &keys);
                let record = JournalRecord::new(
                    RecordKind::Release,
                    session,
                    Message::ReleaseKeys(ReleaseKeys { keys }),
                );
                assert_eq!(direct, record.encode());
            }
        }
    }

    #[test]
    fn a_record_with_the_wrong_message_or_junk_is_refused() {
        let mut r = JournalRecord::gone("s");
        r.kind = RecordKind::Graph;
        let err = JournalRecord::decode(&r.encode()).unwrap_err();
        assert!(err.contains("carries `close`"), "{err}");
        assert!(JournalRecord::decode(b"\x94\xa3zzz").is_err());
        assert!(JournalRecord::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(snapshot_records(&[9, 0, 0, 0, 1]).is_err());
    }
}
