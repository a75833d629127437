//! Every message of dask/1. Each is a msgpack map whose first entry is
//! `op` (its name) followed by its fields; see `spec/PROTOCOL.md` for who
//! sends which and when.
//!
//! Each field's doc comment is the Meaning column of its row in the spec's
//! field tables, followed by "Absent: ..." for an optional (`Option`)
//! field, which a sender leaves out (or sends as nil). A field or message
//! added after dask/1.0 says so with `#[schemars(extend("x-since" =
//! "1.1"))]`, a field a receiver may ignore with `extend("x-ignorable" =
//! true)`. `core/tests/spec_tables.rs` holds the tables to all of this.

use std::collections::BTreeMap;

use crate::error::{ErrorCode, WireError};
use crate::msgpack::{check_utf8, write, RawValue, Reader, WriteBuf};
use crate::wire::{check_struct_len, Key, UnknownNames, Wire, FIELD_DEPTH_MAX};
use crate::{wire_enum, wire_struct};

mod client;
mod key_list;
mod peer;
mod session;
mod types;
mod worker;

pub use client::*;
pub use key_list::{KeyIter, KeyList, KeyListBuilder};
pub use peer::*;
pub use session::*;
pub use types::*;
pub use worker::*;

/// Declares the message enum: one variant per op.
macro_rules! messages {
    (boxed { $($boxed:ident = $boxed_op:literal),* $(,)? } plain { $($variant:ident = $op:literal),* $(,)? }) => {
        /// Any dask/1 message.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Message {
            $(#[doc = concat!("`", $boxed_op, "`")] $boxed(Box<$boxed>),)*
            $(#[doc = concat!("`", $op, "`")] $variant($variant),)*
        }

        /// Every op with the name of its Rust type, in spec order.
        pub const OPS: &[(&str, &str)] = &[$(($boxed_op, stringify!($boxed)),)* $(($op, stringify!($variant)),)*];

        impl Message {
            /// The message's op.
            pub fn op(&self) -> &'static str {
                match self { $(Message::$boxed(_) => $boxed_op,)* $(Message::$variant(_) => $op,)* }
            }

            /// Appends the canonical encoding: a map with `op` first.
            pub fn write(&self, w: &mut WriteBuf<'_>) {
                match self {
                    $(Message::$boxed(m) => {
                        const OP: [u8; $boxed_op.len() + 4] = op_entry($boxed_op);
                        write::map_len(w, m.field_count() + 1);
                        w.extend_from_slice(&OP);
                        m.write_fields(w);
                    })*
                    $(Message::$variant(m) => {
                        const OP: [u8; $op.len() + 4] = op_entry($op);
                        write::map_len(w, m.field_count() + 1);
                        w.extend_from_slice(&OP);
                        m.write_fields(w);
                    })*
                }
            }

            /// Reads one message. A canonical one has `op` first: it is
            /// read once, and the message's other entries after it; else
            /// `op` is looked for ([`find_op`]) and the map read whole.
            pub fn read(r: &mut Reader<'_>) -> Result<Message, WireError> {
                let mut ahead = r.clone();
                let len = ahead.read_map_len()?;
                check_struct_len(len)?;
                if len > 0 && ahead.read_str_bytes().ok() == Some(b"op") {
                    // Compared as bytes, as `match` on a `str` would (one
                    // op after the other), so a known op needs no UTF-8
                    // check.
                    let op = ahead.read_str_bytes().map_err(|e| e.in_field("op"))?;
                    *r = ahead;
                    let seen = UnknownNames::after_op();
                    let len = len - 1;
                    // The ops of a task's messages first: one comparison
                    // each rather than twenty or thirty.
                    if op == b"compute-task" {
                        return ComputeTask::read_entries(r, len, seen)
                            .map(Message::ComputeTask)
                            .map_err(|e| e.in_op("compute-task"));
                    }
                    if op == b"task-finished" {
                        return TaskFinished::read_entries(r, len, seen)
                            .map(Message::TaskFinished)
                            .map_err(|e| e.in_op("task-finished"));
                    }
                    if op == b"key-finished" {
                        return KeyFinished::read_entries(r, len, seen)
                            .map(Message::KeyFinished)
                            .map_err(|e| e.in_op("key-finished"));
                    }
                    $(if op == $boxed_op.as_bytes() {
                        return $boxed::read_entries(r, len, seen)
                            .map(Message::from)
                            .map_err(|e| e.in_op($boxed_op));
                    })*
                    $(if op == $op.as_bytes() {
                        return $variant::read_entries(r, len, seen)
                            .map(Message::$variant)
                            .map_err(|e| e.in_op($op));
                    })*
                    let op = check_utf8(op).map_err(|e| e.in_field("op"))?;
                    return Err(WireError::new(ErrorCode::UnknownOp, format!("unknown op {op:?}"))
                        .in_op(op));
                }
                let op = find_op(r.clone())?;
                match op {
                    $($boxed_op => <$boxed as Wire>::read(r).map(Message::from),)*
                    $($op => <$variant as Wire>::read(r).map(Message::$variant),)*
                    _ => Err(WireError::new(ErrorCode::UnknownOp, format!("unknown op {op:?}"))),
                }
                .map_err(|e| e.in_op(op))
            }

            /// Reads one message by first indexing its map (every value
            /// checked), then each field by name: the reader `read` was
            /// before it went over the map once. Kept to test that both
            /// accept the same messages and read them the same.
            #[doc(hidden)]
            pub fn read_indexed(r: &mut Reader<'_>) -> Result<Message, WireError> {
                let table = crate::wire::FieldTable::read(r)?;
                let op = table.str_field("op")?;
                match op {
                    $($boxed_op => $boxed::from_table(&table).map(Message::from),)*
                    $($op => $variant::from_table(&table).map(Message::$variant),)*
                    _ => Err(WireError::new(ErrorCode::UnknownOp, format!("unknown op {op:?}"))),
                }
                .map_err(|e| e.in_op(op))
            }

            /// JSON Schema of each message, by op.
            pub fn schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($boxed_op, g.subschema_for::<$boxed>()),)* $(($op, g.subschema_for::<$variant>()),)*]
            }
        }

        $(impl From<$boxed> for Message {
            fn from(m: $boxed) -> Message { Message::$boxed(Box::new(m)) }
        })*

        $(impl From<$variant> for Message {
            fn from(m: $variant) -> Message { Message::$variant(m) }
        })*
    };
}

/// The map entry `op: <op>` as written (two fixstrs), built when
/// compiling; `N` is the op's length plus four.
const fn op_entry<const N: usize>(op: &str) -> [u8; N] {
    assert!(op.len() + 4 == N, "N is the op's length plus four");
    write::put_fixstr(write::put_fixstr([0u8; N], 0, "op"), 3, op)
}

/// The `op` of the message map `r` is at, found without reading the other
/// fields: canonical encoders put it first, so one entry is read; entries
/// before it are checked as when skipped.
fn find_op<'a>(mut r: Reader<'a>) -> Result<&'a str, WireError> {
    let len = r.read_map_len()?;
    check_struct_len(len)?;
    for _ in 0..len {
        let name = r.read_str().map_err(|e| e.in_field("<field name>"))?;
        if name == "op" {
            return r.read_str().map_err(|e| e.in_field("op"));
        }
        r.skip_nested(FIELD_DEPTH_MAX, &mut |_| {})
            .map_err(|e| e.in_field(name))?;
    }
    Err(WireError::missing_field("op"))
}

// `hello` (312 bytes, once per connection) is boxed so that every message
// is at most `compute-task`'s size: a message moves about 15 times between
// decoding and sending, and memcpy of the largest variant was ~15% of the
// worker's instructions per task.
messages! {
    boxed {
    Hello = "hello",
    }
    plain {
    AuthProof = "auth-proof",
    ErrorReport = "error",
    Close = "close",
    Heartbeat = "heartbeat",
    UpdateGraph = "update-graph",
    ReleaseKeys = "release-keys",
    CancelKeys = "cancel-keys",
    Scatter = "scatter",
    Gather = "gather",
    GatherReply = "gather-reply",
    WhoHas = "who-has",
    WhoHasReply = "who-has-reply",
    ClusterInfo = "cluster-info",
    ClusterInfoReply = "cluster-info-reply",
    PublishDataset = "publish-dataset",
    UnpublishDataset = "unpublish-dataset",
    GetDataset = "get-dataset",
    Dataset = "dataset",
    ListDatasets = "list-datasets",
    Datasets = "datasets",
    OkReply = "ok",
    KeyFinished = "key-finished",
    KeyErred = "key-erred",
    KeyLost = "key-lost",
    KeyCancelled = "key-cancelled",
    KeyWaiting = "key-waiting",
    WaitingKeys = "waiting-keys",
    WaitingKeysReply = "waiting-keys-reply",
    RegisterWorker = "register-worker",
    WorkerRegistered = "worker-registered",
    ComputeTask = "compute-task",
    TaskFinished = "task-finished",
    TaskErred = "task-erred",
    FreeKeys = "free-keys",
    StealRequest = "steal-request",
    StealResponse = "steal-response",
    PutData = "put-data",
    DataStored = "data-stored",
    AddKeys = "add-keys",
    MissingData = "missing-data",
    GetData = "get-data",
    Data = "data",
    Busy = "busy",
    ValuePart = "value-part",
    GetValueRange = "get-value-range",
    ValueRange = "value-range",
    DataLocal = "data-local",
    ValueLocalDone = "value-local-done",
    }
}

impl Message {
    /// The canonical encoding of one message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::new();
        self.write(&mut WriteBuf::new(&mut w));
        w
    }

    /// Decodes exactly one message from `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader::new(bytes);
        let m = Message::read(&mut r)?;
        if r.remaining() != 0 {
            return Err(WireError::malformed("bytes after the end of the message"));
        }
        Ok(m)
    }

    /// An `error` message for a [`WireError`].
    pub fn error(e: &WireError, request: Option<u64>) -> Message {
        Message::ErrorReport(ErrorReport {
            code: e.code.number(),
            message: e.message.clone(),
            fatal: e.code.is_fatal(),
            request,
            keys: None,
        })
    }
}
