//! Property tests of the codec: every message type round-trips; the frame
//! decoder and `Message::from_bytes` return `Ok` or a typed error on any
//! bytes, however they are split; mutated valid frames likewise, and what
//! still decodes re-encodes to something that decodes the same.

use std::collections::BTreeMap;

use dask_core::error::ErrorCode;
use dask_core::frame::{encode_frame, FrameEncoder};
use dask_core::json::{json_to_msgpack, msgpack_to_json};
use dask_core::messages::*;
use dask_core::msgpack::{task_ref_value, write, RawValue, Reader};
use dask_core::wire::Key;
use dask_core::Message;
use dask_testkit::wire::{decode_pieces, DECODER_CODES};
use proptest::prelude::*;
use rmpv::Value;

// ---------------------------------------------------------------------------
// Strategies

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![
        4 => "[a-z][a-z0-9_-]{0,10}",
        1 => "\\PC{1,6}",
        1 => "k{30,40}",
    ]
    .prop_map(Key)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[ -~]{0,12}", 1 => "\\PC{0,40}", 1 => "x{250,300}"]
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..4)
}

fn keys() -> impl Strategy<Value = Vec<Key>> {
    prop::collection::vec(key(), 0..5)
}

fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL
}

fn resources() -> impl Strategy<Value = Resources> {
    prop::collection::btree_map("[A-Z]{1,4}", finite(), 0..3)
}

fn request() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u64>()]
}

/// Any msgpack value a task may take or give, task references included.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-40i64..300).prop_map(Value::from),
        // NaN payloads are not kept by the JSON form; one NaN is enough.
        prop_oneof![
            finite(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY)
        ]
        .prop_map(Value::F64),
        text().prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Binary),
        (
            any::<i8>().prop_filter("not a task reference", |t| *t != 1),
            prop::collection::vec(any::<u8>(), 0..18)
        )
            .prop_map(|(t, d)| Value::Ext(t, d)),
        key().prop_map(|k| task_ref_value(k.as_str())),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..5).prop_map(Value::Map),
        ]
    })
}

fn raw() -> impl Strategy<Value = RawValue> {
    value().prop_map(|v| RawValue::from_value(&v))
}

fn args() -> impl Strategy<Value = RawValue> {
    prop::collection::vec(value(), 0..4)
        .prop_map(|items| RawValue::from_value(&Value::Array(items)))
}

fn kwargs() -> impl Strategy<Value = RawValue> {
    prop::collection::vec(("[a-z]{1,6}", value()), 0..4).prop_map(|entries| {
        RawValue::from_value(&Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        ))
    })
}

fn data() -> impl Strategy<Value = BTreeMap<Key, RawValue>> {
    prop::collection::btree_map(key(), raw(), 0..4)
}

fn nbytes() -> impl Strategy<Value = BTreeMap<Key, u64>> {
    prop::collection::btree_map(key(), any::<u64>(), 0..4)
}

fn who_has() -> impl Strategy<Value = BTreeMap<Key, Vec<String>>> {
    prop::collection::btree_map(key(), names(), 0..4)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Client),
        Just(Role::Worker),
        Just(Role::Peer),
        Just(Role::Scheduler)
    ]
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        key(),
        text(),
        args(),
        prop::option::of(kwargs()),
        prop::option::of(any::<i64>()),
        prop::option::of(resources()),
        prop::option::of(any::<u32>()),
        prop::option::of(names()),
    )
        .prop_map(
            |(key, function, args, kwargs, priority, resources, retries, workers)| TaskSpec {
                key,
                function,
                args,
                kwargs,
                priority,
                resources,
                retries,
                workers,
            },
        )
}

/// Boxed: inline, its strategy and value tree grew `any_message()`'s past
/// the test thread's stack.
fn metrics() -> BoxedStrategy<Metrics> {
    let load = (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>());
    let told = (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    );
    (load, told)
        .prop_map(
            |(
                (executing, ready, stored_keys, stored_bytes),
                (spilled_bytes, paused, spill_error, transfer_us, transfer_bytes),
            )| Metrics {
                executing,
                ready,
                stored_keys,
                stored_bytes,
                spilled_bytes,
                paused,
                spill_error,
                transfer_us,
                transfer_bytes,
                transfer_local_bytes: None,
            },
        )
        .boxed()
}

fn worker_info() -> impl Strategy<Value = WorkerInfo> {
    (
        any::<u64>(),
        text(),
        text(),
        any::<u32>(),
        prop::option::of(any::<u64>()),
        resources(),
        names(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                id,
                name,
                address,
                nthreads,
                memory_limit,
                resources,
                functions,
                processing,
                stored_keys,
                stored_bytes,
            )| {
                WorkerInfo {
                    id,
                    name,
                    address,
                    nthreads,
                    memory_limit,
                    resources,
                    functions,
                    processing,
                    stored_keys,
                    stored_bytes,
                }
            },
        )
}

fn auth() -> impl Strategy<Value = Auth> {
    (
        text(),
        any::<[u8; 32]>(),
        prop::option::of(any::<[u8; 32]>()),
    )
        .prop_map(|(method, nonce, proof)| Auth {
            method,
            nonce: Bin32(nonce),
            proof: proof.map(Bin32),
        })
}

fn any_message() -> impl Strategy<Value = Message> {
    let any_direction = prop_oneof![
        (
            text(),
            any::<(u32, u32)>(),
            role(),
            prop::option::of(text()),
            prop::option::of(any::<u64>()),
            prop::option::of(names()),
            prop::option::of(auth()),
            prop::option::of(any::<bool>()),
            prop::option::of(text()),
        )
            .prop_map(
                |(protocol, (major, minor), role, name, id, features, auth, tls, session)| {
                    Message::from(Hello {
                        protocol,
                        version: Version { major, minor },
                        role,
                        name,
                        id,
                        features,
                        auth,
                        tls,
                        session,
                        local: None,
                    })
                }
            ),
        (
            any::<u32>(),
            text(),
            any::<bool>(),
            prop::option::of(any::<u64>()),
            prop::option::of(keys())
        )
            .prop_map(|(code, message, fatal, request, keys)| {
                Message::from(ErrorReport {
                    code,
                    message,
                    fatal,
                    request,
                    keys,
                })
            }),
        prop::option::of(text()).prop_map(|reason| Message::from(Close {
            reason,
            reconnect: None
        })),
        prop::option::of(metrics()).prop_map(|metrics| Message::from(Heartbeat { metrics })),
    ];
    let client = prop_oneof![
        (request(), prop::collection::vec(task_spec(), 0..4), keys()).prop_map(
            |(request, tasks, wanted)| Message::from(UpdateGraph {
                request,
                tasks,
                wanted,
                ack: None,
            })
        ),
        keys().prop_map(|keys| Message::from(ReleaseKeys { keys: keys.into() })),
        (keys(), prop::option::of(any::<bool>()))
            .prop_map(|(keys, force)| Message::from(CancelKeys { keys, force })),
        (
            request(),
            data(),
            prop::option::of(names()),
            prop::option::of(any::<bool>())
        )
            .prop_map(
                |(request, data, workers, broadcast)| Message::from(Scatter {
                    request,
                    data,
                    workers,
                    broadcast,
                    ack: None,
                })
            ),
        (request(), keys()).prop_map(|(request, keys)| Message::from(Gather { request, keys })),
        (request(), data(), keys()).prop_map(|(request, data, missing)| Message::from(
            GatherReply {
                request,
                data,
                missing,
                status: None,
            }
        )),
        (request(), keys()).prop_map(|(request, keys)| Message::from(WhoHas { request, keys })),
        (request(), who_has()).prop_map(|(request, who_has)| Message::from(WhoHasReply {
            request,
            who_has,
            status: None,
        })),
        request().prop_map(|request| Message::from(ClusterInfo { request })),
        (
            request(),
            prop::collection::vec(worker_info(), 0..3),
            prop::collection::btree_map(text(), any::<u64>(), 0..4),
            any::<u32>()
        )
            .prop_map(|(request, workers, tasks, clients)| {
                Message::from(ClusterInfoReply {
                    request,
                    workers,
                    tasks,
                    clients,
                })
            }),
    ];
    let datasets = prop_oneof![
        (request(), text(), keys(), prop::option::of(any::<bool>())).prop_map(
            |(request, name, keys, overwrite)| Message::from(PublishDataset {
                request,
                name,
                keys,
                overwrite
            })
        ),
        (request(), text())
            .prop_map(|(request, name)| Message::from(UnpublishDataset { request, name })),
        (request(), text()).prop_map(|(request, name)| Message::from(GetDataset { request, name })),
        (request(), text(), keys()).prop_map(|(request, name, keys)| Message::from(Dataset {
            request,
            name,
            keys
        })),
        request().prop_map(|request| Message::from(ListDatasets { request })),
        (request(), names())
            .prop_map(|(request, names)| Message::from(Datasets { request, names })),
        request().prop_map(|request| Message::from(OkReply { request })),
    ];
    let events = prop_oneof![
        (key(), any::<u64>()).prop_map(|(key, nbytes)| Message::from(KeyFinished {
            key,
            nbytes,
            request: None,
            value: None,
        })),
        (key(), text(), text(), text(), prop::option::of(key())).prop_map(
            |(key, error_type, message, traceback, cause)| {
                Message::from(KeyErred {
                    key,
                    error_type,
                    message,
                    traceback,
                    cause,
                    request: None,
                })
            }
        ),
        (key(), text()).prop_map(|(key, message)| Message::from(KeyLost {
            key,
            message,
            request: None,
        })),
        key().prop_map(|key| Message::from(KeyCancelled { key, request: None })),
    ];
    let worker = prop_oneof![
        (
            text(),
            text(),
            any::<u32>(),
            prop::option::of(any::<u64>()),
            prop::option::of(resources()),
            names(),
            prop::option::of(any::<u32>()),
            prop::option::of(prop::collection::btree_map(key(), any::<u64>(), 0..4)),
        )
            .prop_map(
                |(name, address, nthreads, memory_limit, resources, functions, pid, held)| {
                    Message::from(RegisterWorker {
                        name,
                        address,
                        nthreads,
                        memory_limit,
                        resources,
                        functions,
                        pid,
                        held,
                    })
                }
            ),
        (any::<u64>(), any::<u64>()).prop_map(|(id, heartbeat_interval_ms)| {
            Message::from(WorkerRegistered {
                id,
                heartbeat_interval_ms,
                inline_bytes_max: None,
            })
        }),
        (
            key(),
            text(),
            args(),
            prop::option::of(kwargs()),
            who_has(),
            prop::option::of(any::<i64>()),
            prop::option::of(resources())
        )
            .prop_map(
                |(key, function, args, kwargs, who_has, priority, resources)| {
                    Message::from(ComputeTask {
                        key,
                        function,
                        args,
                        kwargs,
                        who_has,
                        priority,
                        resources,
                    })
                }
            ),
        (key(), any::<u64>(), prop::option::of(any::<u64>())).prop_map(
            |(key, nbytes, duration_us)| {
                Message::from(TaskFinished {
                    key,
                    nbytes,
                    duration_us,
                    value: None,
                })
            }
        ),
        (key(), text(), text(), text()).prop_map(|(key, error_type, message, traceback)| {
            Message::from(TaskErred {
                key,
                error_type,
                message,
                traceback,
            })
        }),
        keys().prop_map(|keys| Message::from(FreeKeys { keys: keys.into() })),
        key().prop_map(|key| Message::from(StealRequest { key })),
        (key(), any::<bool>())
            .prop_map(|(key, stolen)| Message::from(StealResponse { key, stolen })),
        (request(), data()).prop_map(|(request, data)| Message::from(PutData { request, data })),
        (request(), nbytes())
            .prop_map(|(request, nbytes)| Message::from(DataStored { request, nbytes })),
        nbytes().prop_map(|nbytes| Message::from(AddKeys { nbytes })),
        (key(), names(), key()).prop_map(|(key, addresses, task)| Message::from(MissingData {
            key,
            addresses,
            task
        })),
    ];
    let peer = prop_oneof![
        (request(), keys()).prop_map(|(request, keys)| Message::from(GetData { request, keys })),
        (request(), data(), keys()).prop_map(|(request, data, missing)| Message::from(Data {
            request,
            data,
            missing
        })),
        request().prop_map(|request| Message::from(Busy { request })),
    ];
    prop_oneof![any_direction, client, datasets, events, worker, peer]
}

/// Splits `bytes` at the given fractions of its length.
fn split<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for a in at {
        out.push(&bytes[prev..a]);
        prev = a;
    }
    out.push(&bytes[prev..]);
    out
}

/// A `data` message with binary values of these sizes.
fn data_message(request: usize, sizes: &[usize]) -> Message {
    Message::Data(Data {
        request: request as u64,
        data: sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bytes = (0..n).map(|b| (b * 7 + i) as u8).collect();
                (
                    Key(format!("v{i}")),
                    RawValue::from_value(&Value::Binary(bytes)),
                )
            })
            .collect(),
        missing: vec![],
    })
}

/// Feeds pieces to a decoder; every error must be a decoder code, and the
/// decoder stays failed after one.
fn drive(pieces: &[&[u8]], limit: usize) -> Result<Vec<Vec<Message>>, ErrorCode> {
    let decoded = decode_pieces(pieces.iter().copied(), limit);
    match decoded.error {
        Some(code) => Err(code),
        None => Ok(decoded.batches),
    }
}

fn mutate(bytes: &mut Vec<u8>, ops: &[(u8, prop::sample::Index, u8)]) {
    for (kind, at, byte) in ops {
        if bytes.is_empty() {
            bytes.push(*byte);
            continue;
        }
        let i = at.index(bytes.len());
        match kind % 4 {
            0 => bytes[i] = *byte,
            1 => bytes[i] ^= 1 << (byte % 8),
            2 => bytes.insert(i, *byte),
            _ => {
                bytes.remove(i);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Properties

#[test]
fn an_optional_value_holding_nil_is_written_as_absent() {
    let task = ComputeTask {
        key: Key::from("k"),
        function: "f".into(),
        args: RawValue::from_value(&Value::Array(vec![])),
        kwargs: Some(RawValue::nil()),
        who_has: BTreeMap::new(),
        priority: None,
        resources: None,
    };
    let bytes = Message::from(task.clone()).to_bytes();
    let absent = Message::from(ComputeTask {
        kwargs: None,
        ..task
    })
    .to_bytes();
    assert_eq!(bytes, absent);
}

/// 512 cases per property keeps `cargo test` fast; set `PROPTEST_CASES`
/// for a longer hunt.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_message_round_trips(m in any_message()) {
        let bytes = m.to_bytes();
        let back = Message::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_bytes(), bytes.clone());
        // The JSON form carries every message exactly.
        let json = msgpack_to_json(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(json_to_msgpack(&json).map_err(TestCaseError::fail)?, bytes);
    }

    #[test]
    fn batches_survive_framing_and_any_split(
        batch in prop::collection::vec(any_message(), 0..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let bytes = encode_frame(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = drive(&split(&bytes, &cuts), dask_core::FRAME_BYTES_MAX);
        prop_assert_eq!(got, Ok(vec![batch]));
    }

    #[test]
    fn encoder_splits_under_any_limit_and_the_decoder_reassembles(
        batch in prop::collection::vec(any_message(), 1..8),
        limit in 64usize..2048,
    ) {
        let mut enc = FrameEncoder::new(limit);
        let mut sent = Vec::new();
        for m in &batch {
            match enc.push(m) {
                Ok(()) => sent.push(m.clone()),
                Err(e) => prop_assert_eq!(e.code, ErrorCode::ValueTooLarge),
            }
        }
        let bytes = enc.take();
        let got = drive(&[&bytes], limit).map_err(|c| TestCaseError::fail(c.to_string()))?;
        prop_assert_eq!(got.concat(), sent);
    }

    #[test]
    fn large_values_survive_chunked_encoding_and_direct_reads(
        sizes in prop::collection::vec(
            prop::collection::vec(prop_oneof![0usize..100, 60_000usize..300_000], 1..4),
            1..4,
        ),
        steps in prop::collection::vec(1usize..200_000, 1..40),
        limit in prop_oneof![Just(dask_core::FRAME_BYTES_MAX), 200_000usize..700_000],
    ) {
        // Messages with large and small values, encoded as chunks (large
        // values by reference) under a limit, written in uneven steps and
        // read back: the same messages, in order.
        let batch: Vec<Message> = sizes.iter().enumerate().map(|(i, vs)| data_message(i, vs)).collect();
        let mut enc = FrameEncoder::new(limit);
        let mut sent = Vec::new();
        for m in &batch {
            match enc.push(m) {
                Ok(()) => sent.push(m.clone()),
                Err(e) => prop_assert_eq!(e.code, ErrorCode::ValueTooLarge),
            }
        }
        enc.finish();
        let mut wire = Vec::new();
        let mut i = 0;
        while enc.finished_bytes() > 0 {
            let step = steps[i % steps.len()];
            i += 1;
            let mut left = step;
            for chunk in enc.chunks() {
                let n = chunk.len().min(left);
                wire.extend_from_slice(&chunk[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            enc.consume(step - left);
        }
        // Read back in the same uneven steps (decode_pieces reads into
        // the decoder's own buffer for a large frame, pushes otherwise).
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < wire.len() {
            let step = steps[i % steps.len()].min(wire.len() - at);
            i += 1;
            pieces.push(&wire[at..at + step]);
            at += step;
        }
        let decoded = decode_pieces(pieces, limit);
        prop_assert_eq!(decoded.error, None);
        prop_assert!(!decoded.mid_frame);
        prop_assert_eq!(decoded.batches.concat(), sent);
    }

    #[test]
    fn values_in_parts_read_in_place_decode_as_when_read_whole(
        sizes in prop::collection::vec(prop_oneof![0usize..100, 70_000usize..400_000], 1..4),
        limit in 100_000usize..300_000,
        ops in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..12),
    ) {
        // A value's part at a frame's start is read straight into the
        // value's buffer when it arrives in pieces, and decoded from one
        // buffer when it arrives whole: the outcome is the same, damaged
        // bytes (anywhere: the part's head, its bytes, what follows) too.
        let m = data_message(1, &sizes);
        let mut enc = FrameEncoder::new(limit);
        enc.send_value_parts(true);
        enc.push(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut wire = enc.take();
        let intact = ops.is_empty();
        mutate(&mut wire, &ops);
        let whole = drive(&[&wire], dask_core::FRAME_BYTES_MAX);
        let pieces = drive(&split(&wire, &cuts), dask_core::FRAME_BYTES_MAX);
        prop_assert_eq!(&whole, &pieces);
        if intact {
            prop_assert_eq!(whole.map(|b| b.concat()), Ok(vec![m]));
        }
    }

    #[test]
    fn frame_decoder_on_arbitrary_bytes_and_splits(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        limit in prop_oneof![Just(dask_core::FRAME_BYTES_MAX), 0usize..64],
    ) {
        let whole = drive(&[&bytes], limit);
        let pieces = drive(&split(&bytes, &cuts), limit);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn frame_decoder_on_arbitrary_payloads(payload in prop::collection::vec(any::<u8>(), 0..256)) {
        // A correct prefix makes the decoder look at the payload itself.
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let _ = drive(&[&bytes], dask_core::FRAME_BYTES_MAX);
    }

    #[test]
    fn message_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = Message::from_bytes(&bytes) {
            prop_assert!(DECODER_CODES.contains(&e.code), "unexpected code {}", e.code);
        }
    }

    #[test]
    fn message_from_arbitrary_maps(
        entries in prop::collection::vec((prop_oneof![Just("op".to_string()), "[a-z_]{1,12}"], value()), 0..6),
        op in prop::sample::select(OPS.iter().map(|(op, _)| op.to_string()).collect::<Vec<_>>()),
    ) {
        // Maps that look like messages reach the field decoders.
        let mut w = Vec::new();
        write::map_len(&mut w, entries.len() + 1);
        write::str(&mut w, "op");
        write::str(&mut w, &op);
        for (k, v) in &entries {
            write::str(&mut w, k);
            write::value(&mut w, v);
        }
        match Message::from_bytes(&w) {
            Ok(m) => prop_assert_eq!(Message::from_bytes(&m.to_bytes()).ok(), Some(m)),
            Err(e) => prop_assert!(DECODER_CODES.contains(&e.code), "unexpected code {}", e.code),
        }
    }

    #[test]
    fn the_one_pass_reader_agrees_with_the_indexing_one(
        m in any_message(),
        ops in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 0..4),
        extra in prop::option::of(("[a-z_]{1,12}", value())),
    ) {
        // A valid message, maybe with an unknown field, maybe mutated.
        let mut bytes = m.to_bytes();
        if let Some((name, v)) = extra {
            // Bump the map's entry count (fixmap up to 14 entries) and append.
            if bytes[0] & 0xf0 == 0x80 && bytes[0] < 0x8f {
                bytes[0] += 1;
                write::str(&mut bytes, &name);
                write::value(&mut bytes, &v);
            }
        }
        for (kind, at, byte) in ops {
            let i = at.index(bytes.len());
            match kind % 3 {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let one_pass = Message::read(&mut Reader::new(&bytes));
        let indexed = Message::read_indexed(&mut Reader::new(&bytes));
        match (&one_pass, &indexed) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "one pass {:?}, indexed {:?}", one_pass, indexed),
        }
    }

    #[test]
    fn mutated_frames_fail_cleanly_or_decode_to_stable_messages(
        batch in prop::collection::vec(any_message(), 1..4),
        ops in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut bytes = encode_frame(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
        mutate(&mut bytes, &ops);
        let whole = drive(&[&bytes], dask_core::FRAME_BYTES_MAX);
        prop_assert_eq!(&whole, &drive(&split(&bytes, &cuts), dask_core::FRAME_BYTES_MAX));
        if let Ok(batches) = whole {
            for m in batches.concat() {
                prop_assert_eq!(Message::from_bytes(&m.to_bytes()).ok(), Some(m));
            }
        }
    }
}
