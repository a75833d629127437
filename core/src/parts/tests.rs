use std::collections::BTreeMap;

use super::*;
use crate::frame::{FrameBuffers, FrameDecoder, FrameEncoder};
use crate::messages::{Data, GatherReply, Heartbeat, PutData, Scatter};

/// A binary value whose encoding is `n` bytes or a few more.
fn blob(n: usize, seed: u8) -> RawValue {
    let bytes = (0..n).map(|b| (b % 251) as u8 ^ seed).collect();
    RawValue::from_value(&rmpv::Value::Binary(bytes))
}

fn data(values: &[(&str, RawValue)]) -> Message {
    Message::Data(Data {
        request: 3,
        data: values
            .iter()
            .map(|(k, v)| (Key::from(*k), v.clone()))
            .collect(),
        missing: vec![Key::from("gone")],
    })
}

fn part(key: &str, nbytes: u64, bytes: &[u8]) -> Message {
    Message::ValuePart(ValuePart {
        key: Key::from(key),
        nbytes,
        part: Bin(bytes::Bytes::copy_from_slice(bytes)),
    })
}

/// The bytes an encoder of `frame_bytes_max` that sends parts writes.
fn encode(messages: &[Message], frame_bytes_max: usize) -> Vec<u8> {
    let mut enc = FrameEncoder::new(frame_bytes_max);
    enc.send_value_parts(true);
    for m in messages {
        enc.push(m).expect("fits, in parts if need be");
    }
    enc.take()
}

/// Every message the stream decodes to, fed in pieces of `step` bytes.
fn decode(bytes: &[u8], step: usize) -> Result<Vec<Message>, WireError> {
    let mut d = FrameDecoder::default();
    let mut out = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        d.push(piece);
        while let Some(batch) = d.poll()? {
            out.extend(batch);
        }
    }
    assert!(!d.is_mid_frame(), "nothing left over");
    Ok(out)
}

#[test]
fn a_message_too_large_for_a_frame_goes_with_its_large_values_in_parts() {
    let frame_bytes_max = 256 * 1024;
    let big = blob(3 * 1024 * 1024 + 17, 1);
    let other = blob(100 * 1024, 2);
    let small = blob(10, 3);
    let m = data(&[("big", big.clone()), ("other", other), ("small", small)]);
    let after = Message::Heartbeat(Heartbeat { metrics: None });
    let bytes = encode(&[m.clone(), after.clone()], frame_bytes_max);
    // Many frames, none over the limit.
    let mut at = 0;
    let mut frames = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(len <= frame_bytes_max, "frame of {len} bytes");
        at += 4 + len;
        frames += 1;
    }
    assert!(frames > 12, "{frames} frames");
    for step in [1 << 20, 65_536, 7_777] {
        assert_eq!(
            decode(&bytes, step).unwrap(),
            vec![m.clone(), after.clone()]
        );
    }
}

#[test]
fn parts_are_written_from_where_the_value_is_kept() {
    let big = blob(1024 * 1024, 4);
    let m = data(&[("big", big.clone())]);
    let mut enc = FrameEncoder::new(256 * 1024);
    enc.send_value_parts(true);
    enc.push(&m).unwrap();
    enc.finish();
    let range = big.as_bytes().as_ptr_range();
    let shared: usize = enc
        .chunks()
        .filter(|c| range.contains(&c.as_ptr()))
        .map(|c| c.len())
        .sum();
    // Every part goes from the store, but a last one under 64 KiB (copied
    // like any small value).
    assert!(
        shared > big.len() - SHARED_VALUE_BYTES_MIN,
        "{shared} of {} bytes sent from the store",
        big.len()
    );
}

#[test]
fn parts_are_read_straight_into_the_values_buffer() {
    let big = blob(3 * 1024 * 1024 + 17, 6);
    let other = blob(100 * 1024, 7);
    let m = data(&[("big", big.clone()), ("other", other)]);
    let after = Message::Heartbeat(Heartbeat { metrics: None });
    let bytes = encode(&[m.clone(), after.clone()], 256 * 1024);
    let mut d = FrameDecoder::default();
    let (got, read) = read_as_a_connection(&mut d, &bytes);
    assert_eq!(got, vec![m, after]);
    let Message::Data(received) = &got[0] else {
        unreachable!()
    };
    let value = received.data[&Key::from("big")].as_bytes().as_ptr_range();
    let in_place: usize = read
        .rooms
        .iter()
        .filter(|r| value.contains(&r.start) && r.end <= value.end)
        .map(|r| r.end as usize - r.start as usize)
        .sum();
    // All but the bytes that came with each part's first 16 KiB (its
    // head) were read where the value is kept: nothing copied them.
    let parts = big.len().div_ceil(256 * 1024 - PART_OVERHEAD_BYTES);
    assert!(
        in_place >= big.len() - parts * 16 * 1024,
        "{in_place} of {} bytes read in place",
        big.len()
    );
}

#[test]
fn without_the_feature_a_message_too_large_for_a_frame_is_refused() {
    let m = data(&[("big", blob(300 * 1024, 5))]);
    let mut enc = FrameEncoder::new(256 * 1024);
    assert_eq!(enc.push(&m).unwrap_err().code, ErrorCode::ValueTooLarge);
    assert!(enc.is_empty());
    // With it, but what is left without the large values is still too
    // large: nothing is queued either.
    let many: Vec<(String, RawValue)> =
        (0..8).map(|i| (format!("k{i}"), blob(40_000, i))).collect();
    let many: Vec<(&str, RawValue)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut enc = FrameEncoder::new(256 * 1024);
    enc.send_value_parts(true);
    assert_eq!(
        enc.push(&data(&many)).unwrap_err().code,
        ErrorCode::ValueTooLarge
    );
    assert!(enc.is_empty());
}

#[test]
fn every_message_that_carries_values_can_carry_them_in_parts() {
    let v = blob(200 * 1024, 6);
    let map: BTreeMap<Key, RawValue> = [(Key::from("v"), v)].into_iter().collect();
    let messages = [
        Message::GatherReply(GatherReply {
            request: 1,
            data: map.clone(),
            missing: vec![],
            status: None,
        }),
        Message::PutData(PutData {
            request: 2,
            data: map.clone(),
        }),
        Message::Scatter(Scatter {
            request: 3,
            data: map.clone(),
            workers: None,
            broadcast: Some(true),
            ack: None,
        }),
    ];
    for m in messages {
        let bytes = encode(std::slice::from_ref(&m), 64 * 1024 + PART_OVERHEAD_BYTES);
        assert_eq!(decode(&bytes, 50_000).unwrap(), vec![m]);
    }
}

fn assemble(batches: Vec<Vec<Message>>) -> Result<Vec<Message>, WireError> {
    let mut a = ValueAssembler::new(1000);
    let mut out = Vec::new();
    for b in batches {
        out.extend(a.take(b)?);
    }
    Ok(out)
}

fn code(r: Result<Vec<Message>, WireError>) -> ErrorCode {
    r.expect_err("refused").code
}

#[test]
fn a_value_in_parts_is_put_into_the_message_that_follows_them() {
    let value = RawValue::from_value(&rmpv::Value::from("hello parts"));
    let b = value.as_bytes();
    let n = b.len() as u64;
    let got = assemble(vec![
        vec![part("x", n, &b[..3])],
        vec![part("x", n, &b[3..5]), part("x", n, &b[5..])],
        vec![data(&[("y", RawValue::nil())])],
    ])
    .unwrap();
    assert_eq!(got, vec![data(&[("x", value), ("y", RawValue::nil())])]);
}

#[test]
fn parts_that_do_not_add_up_close_the_connection() {
    let v = RawValue::from_value(&rmpv::Value::from("0123456789"));
    let b = v.as_bytes();
    let n = b.len() as u64;
    let heartbeat = Message::Heartbeat(Heartbeat { metrics: None });
    // Another message while a value is not whole.
    assert_eq!(
        code(assemble(vec![vec![
            part("x", n, &b[..4]),
            heartbeat.clone()
        ]])),
        ErrorCode::UnexpectedMessage
    );
    // A message that carries no values after whole ones.
    assert_eq!(
        code(assemble(vec![vec![part("x", n, b), heartbeat]])),
        ErrorCode::UnexpectedMessage
    );
    // Parts of another key (or another size) before the first is whole.
    assert_eq!(
        code(assemble(vec![vec![
            part("x", n, &b[..4]),
            part("z", n, &b[4..])
        ]])),
        ErrorCode::UnexpectedMessage
    );
    assert_eq!(
        code(assemble(vec![vec![
            part("x", n, &b[..4]),
            part("x", n + 1, &b[4..])
        ]])),
        ErrorCode::UnexpectedMessage
    );
    // Past the announced size, an empty part, a key twice.
    let mut long = b.to_vec();
    long.push(0xc0);
    assert_eq!(
        code(assemble(vec![vec![part("x", n, &long)]])),
        ErrorCode::UnexpectedMessage
    );
    assert_eq!(
        code(assemble(vec![vec![part("x", n, &[])]])),
        ErrorCode::UnexpectedMessage
    );
    assert_eq!(
        code(assemble(vec![vec![part("x", n, b), part("x", n, b)]])),
        ErrorCode::UnexpectedMessage
    );
    assert_eq!(
        code(assemble(vec![vec![
            part("x", n, b),
            data(&[("x", RawValue::nil())])
        ]])),
        ErrorCode::UnexpectedMessage
    );
    // Bytes that are not one value: two values, or half of one.
    assert_eq!(
        code(assemble(vec![vec![part("x", 2, &[0x01, 0x02])]])),
        ErrorCode::MalformedFrame
    );
    assert_eq!(
        code(assemble(vec![vec![part("x", 2, &[0x92, 0x01])]])),
        ErrorCode::MalformedFrame
    );
}

#[test]
fn a_value_over_the_receivers_bound_is_refused_before_it_is_held() {
    // Announced larger than the bound: refused on the first part.
    assert_eq!(
        code(assemble(vec![vec![part("x", 1001, &[0xc4])]])),
        ErrorCode::FrameTooLarge
    );
    // Two values for one message, over the bound together.
    let a = vec![0xc5, 0x02, 0x00];
    let mut first = a.clone();
    first.resize(3 + 512, 7);
    assert_eq!(
        code(assemble(vec![vec![
            part("x", first.len() as u64, &first),
            part("y", first.len() as u64, &first[..10]),
        ]])),
        ErrorCode::FrameTooLarge
    );
    // Memory grows with the parts, not with the announced size.
    let mut a = ValueAssembler::new(u64::MAX);
    a.take(vec![part("x", u64::MAX / 2, &[0xc6])]).unwrap();
    let held = a.current.as_ref().map(|c| c.bytes.capacity()).unwrap();
    assert!(held < 1024, "{held} bytes held for 1 received");
}

/// Where a connection's reads went: the rooms the decoder offered, and
/// whether any was offered as mapped already.
struct Reads {
    rooms: Vec<std::ops::Range<*const u8>>,
    mapped: bool,
}

/// Reads `bytes` as a connection does: into the decoder's room while it
/// offers one, else through a small buffer.
fn read_as_a_connection(d: &mut FrameDecoder, bytes: &[u8]) -> (Vec<Message>, Reads) {
    let mut got = Vec::new();
    let mut reads = Reads {
        rooms: Vec::new(),
        mapped: false,
    };
    let mut at = 0;
    while at < bytes.len() {
        let mapped = d.frame_room_is_mapped();
        match d.frame_room() {
            Some(room) => {
                reads.mapped |= mapped;
                let n = room.len().min(bytes.len() - at).min(100_000);
                room[..n].copy_from_slice(&bytes[at..at + n]);
                reads
                    .rooms
                    .push(room.as_ptr_range().start..room[n..].as_ptr());
                d.filled(n);
                at += n;
            }
            None => {
                let n = (bytes.len() - at).min(16 * 1024);
                d.push(&bytes[at..at + n]);
                at += n;
            }
        }
        while let Some(batch) = d.poll().unwrap() {
            got.extend(batch);
        }
    }
    (got, reads)
}

#[test]
fn a_dropped_values_buffer_is_kept_for_the_next_value_in_parts() {
    let buffers = FrameBuffers::new(8 << 20);
    let mut d = FrameDecoder::default();
    d.use_buffers(Arc::clone(&buffers));
    let first = data(&[("a", blob(3 * 1024 * 1024, 1))]);
    let (got, read) =
        read_as_a_connection(&mut d, &encode(std::slice::from_ref(&first), 256 * 1024));
    assert_eq!(got, vec![first]);
    assert!(!read.mapped, "the first value's buffer is fresh memory");
    let Message::Data(received) = &got[0] else {
        unreachable!()
    };
    let was_at = received.data[&Key::from("a")].as_bytes().as_ptr();
    assert_eq!(buffers.kept_bytes(), 0, "kept while the value lives");
    drop(got);
    assert!(
        buffers.kept_bytes() >= 3 * 1024 * 1024,
        "given back once dropped"
    );

    // A value a little smaller goes into the same pages, read in place.
    let second = data(&[("b", blob(3 * 1024 * 1024 - 5000, 2))]);
    let (got, read) =
        read_as_a_connection(&mut d, &encode(std::slice::from_ref(&second), 256 * 1024));
    assert_eq!(got, vec![second], "none of the old bytes shows through");
    assert!(read.mapped, "the kept buffer is offered as mapped");
    let Message::Data(received) = &got[0] else {
        unreachable!()
    };
    assert_eq!(received.data[&Key::from("b")].as_bytes().as_ptr(), was_at);
    assert_eq!(buffers.kept_bytes(), 0);
}
