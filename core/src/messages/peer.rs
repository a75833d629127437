//! Any connection to a worker's data address: values asked for and
//! sent, whole, in parts, in ranges, or lent in memory on one host.

use super::*;

wire_struct! {
    /// Any connection to a worker (a peer, or the scheduler): send me these values.
    pub struct GetData {
        /// Requester-chosen id, echoed in the reply.
        pub request: u64,
        /// Keys wanted.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Worker -> requester: the answer to `get-data`.
    pub struct Data {
        /// The `get-data` this answers.
        pub request: u64,
        /// Values by key, for the keys it holds.
        pub data: BTreeMap<Key, RawValue>,
        /// Requested keys it does not hold.
        pub missing: Vec<Key>,
    }
}

wire_struct! {
    /// Holder -> fetcher (since 1.1, feature `value-local`): values
    /// answering a `get-data` that the fetcher reads from the holder's
    /// memory; the holder keeps each where it is until its lease is done.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct DataLocal {
        /// The `get-data` this answers (its other keys come in `data`).
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// Where each value's encoding is, by key.
        #[schemars(extend("x-since" = "1.1"))]
        pub values: BTreeMap<Key, LocalValue>,
    }
}

wire_struct! {
    /// One value of a `data-local`.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct LocalValue {
        /// The address of the value's encoding in the holder's memory.
        #[schemars(extend("x-since" = "1.1"))]
        pub at: u64,
        /// The length of the encoding (its nbytes).
        #[schemars(extend("x-since" = "1.1"))]
        pub nbytes: u64,
        /// The holder's id of this loan, unique on the connection, given back in `value-local-done`.
        #[schemars(extend("x-since" = "1.1"))]
        pub lease: u64,
    }
}

wire_struct! {
    /// Fetcher -> holder (since 1.1, feature `value-local`): these leases
    /// are over (read, or failed); the holder may let the values go.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct ValueLocalDone {
        /// Leases of `data-local` values; unknown ones are ignored.
        #[schemars(extend("x-since" = "1.1"))]
        pub leases: Vec<u64>,
        /// A read failed: the holder sends no more `data-local` on this connection (the fetcher asks those keys again). Absent: false.
        #[schemars(extend("x-since" = "1.1"))]
        pub failed: Option<bool>,
    }
}

wire_struct! {
    /// Scheduler -> worker: the bytes of one value's encoding from
    /// `offset`, at most `bytes_max` of them (feature `value-ranges`): a
    /// gather relays a large value to its client a range at a time.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct GetValueRange {
        /// Requester-chosen id, echoed in the reply.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// The key of the value.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// Where the range starts in the value's encoding.
        #[schemars(extend("x-since" = "1.1"))]
        pub offset: u64,
        /// The most bytes wanted (a worker sends at least one, and MAY send
        /// fewer than asked: dask-rs sends at most what one of its `data`
        /// replies holds).
        #[schemars(extend("x-since" = "1.1"))]
        pub bytes_max: u64,
    }
}

wire_struct! {
    /// Worker -> requester: the answer to `get-value-range` (feature
    /// `value-ranges`); a key it does not hold is answered with `data`
    /// listing it missing.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct ValueRange {
        /// The `get-value-range` this answers.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// The key of the value.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// The whole value's nbytes (the length of its encoding).
        #[schemars(extend("x-since" = "1.1"))]
        pub nbytes: u64,
        /// The request's `offset`: where `part` starts.
        #[schemars(extend("x-since" = "1.1"))]
        pub offset: u64,
        /// The bytes from `offset`: at least one and at most `bytes_max`,
        /// fewer only at the end of the value; none when `offset` is at or
        /// past `nbytes`.
        #[schemars(extend("x-since" = "1.1"))]
        pub part: Bin,
    }
}

wire_struct! {
    /// The next bytes of a value too large for one frame, sent in parts
    /// right before the `data`, `gather-reply`, `put-data` or `scatter`
    /// carrying it (feature `value-parts`).
    #[schemars(extend("x-since" = "1.1"))]
    pub struct ValuePart {
        /// The key of the value; the message after its parts carries it.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// The whole value's nbytes (the same in each of its parts).
        #[schemars(extend("x-since" = "1.1"))]
        pub nbytes: u64,
        /// The next bytes of the value's msgpack encoding (at least one).
        #[schemars(extend("x-since" = "1.1"))]
        pub part: Bin,
    }
}

wire_struct! {
    /// Worker -> requester: too many transfers in flight; ask again later.
    pub struct Busy {
        /// The `get-data` this answers.
        pub request: u64,
    }
}
