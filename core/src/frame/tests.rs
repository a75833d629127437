use super::encoder::{array_header_len, write_array_header, ARRAY_HEADER_BYTES_MAX};
use super::*;
use crate::messages::{Close, Data, Heartbeat};
use crate::msgpack::{write, RawValue, SHARED_VALUE_BYTES_MIN};
use crate::wire::Key;

/// A `data` message holding binary values of these sizes.
fn data(sizes: &[usize]) -> Message {
    Message::Data(Data {
        request: 7,
        data: sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bytes = (0..n).map(|b| (b % 251) as u8).collect();
                (
                    Key::from(format!("k{i}").as_str()),
                    RawValue::from_value(&rmpv::Value::Binary(bytes)),
                )
            })
            .collect(),
        missing: vec![],
    })
}

fn values(m: &Message) -> Vec<&RawValue> {
    match m {
        Message::Data(d) => d.data.values().collect(),
        _ => panic!("not data"),
    }
}

fn within(inner: &[u8], outer: std::ops::Range<*const u8>) -> bool {
    outer.contains(&inner.as_ptr())
}

#[test]
fn a_large_frame_is_read_into_its_own_buffer_and_its_large_values_share_it() {
    let m = data(&[300_000, 100]);
    let bytes = encode_frame(std::slice::from_ref(&m)).unwrap();
    let mut d = FrameDecoder::default();
    d.push(&bytes[..1000]);
    assert_eq!(d.poll().unwrap(), None);
    assert!(d.is_mid_frame());
    assert_eq!(d.buffered(), 1000);
    let room = d.frame_room().expect("a frame of its own");
    assert_eq!(room.len(), bytes.len() - 1000);
    // The whole payload: what came before, then the room.
    let already = 1000 - LENGTH_PREFIX_BYTES;
    let range = room.as_ptr().wrapping_sub(already)..room.as_ptr_range().end;
    room.copy_from_slice(&bytes[1000..]);
    let n = room.len();
    d.filled(n);
    assert!(d.frame_room().is_none() || d.frame_room().is_some_and(|r| r.is_empty()));
    let got = d.poll().unwrap().expect("the frame");
    assert_eq!(got, vec![m]);
    assert!(!d.is_mid_frame());
    let vs = values(&got[0]);
    assert!(
        within(vs[0].as_bytes(), range.clone()),
        "the large value shares the frame"
    );
    assert!(
        !within(vs[1].as_bytes(), range),
        "the small one is copied out"
    );
}

#[test]
fn large_frames_split_anywhere_reassemble_with_what_follows() {
    let big = data(&[OWN_BUFFER_FRAME_BYTES_MIN * 2]);
    let small = Message::Heartbeat(Heartbeat { metrics: None });
    let mut bytes = encode_frame(std::slice::from_ref(&big)).unwrap();
    bytes.extend(encode_frame(std::slice::from_ref(&small)).unwrap());
    for cut in [0, 3, 4, 5, 100, 70_000, bytes.len() - 10, bytes.len()] {
        let mut d = FrameDecoder::default();
        d.push(&bytes[..cut]);
        let mut got = Vec::new();
        while let Some(f) = d.poll().unwrap() {
            got.extend(f);
        }
        d.push(&bytes[cut..]);
        while let Some(f) = d.poll().unwrap() {
            got.extend(f);
        }
        assert_eq!(got, vec![big.clone(), small.clone()], "cut at {cut}");
        assert!(!d.is_mid_frame());
    }
}

#[test]
fn a_frame_of_its_own_that_does_not_decode_fails_the_decoder() {
    let mut payload = vec![0x91, 0xc4];
    payload.resize(OWN_BUFFER_FRAME_BYTES_MIN, 0);
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend(&payload);
    let mut d = FrameDecoder::default();
    d.push(&bytes[..10]);
    assert_eq!(d.poll().unwrap(), None);
    d.push(&bytes[10..]);
    let e = d.poll().unwrap_err();
    assert_eq!(d.poll().unwrap_err(), e);
    assert!(d.frame_room().is_none());
}

#[test]
fn shared_decoding_shares_only_values_large_for_the_frame() {
    let m = data(&[SHARED_VALUE_BYTES_MIN, 10]);
    let bytes = Bytes::from(encode_frame(std::slice::from_ref(&m)).unwrap());
    let payload = bytes.slice(LENGTH_PREFIX_BYTES..);
    let range = payload.as_ptr_range();
    let got = decode_shared_payload(&payload).unwrap();
    assert_eq!(got, vec![m.clone()]);
    let vs = values(&got[0]);
    assert!(within(vs[0].as_bytes(), range.clone()));
    assert!(!within(vs[1].as_bytes(), range.clone()));
    // A value under an eighth of its frame is copied: keeping it must
    // not keep the whole frame.
    let m = data(&[SHARED_VALUE_BYTES_MIN, SHARED_VALUE_BYTES_MIN * 8]);
    let bytes = Bytes::from(encode_frame(std::slice::from_ref(&m)).unwrap());
    let payload = bytes.slice(LENGTH_PREFIX_BYTES..);
    let range = payload.as_ptr_range();
    let got = decode_shared_payload(&payload).unwrap();
    let vs = values(&got[0]);
    assert!(!within(vs[0].as_bytes(), range.clone()));
    assert!(within(vs[1].as_bytes(), range));
}

#[test]
fn large_values_are_written_from_where_they_are_kept() {
    let m = data(&[SHARED_VALUE_BYTES_MIN, 10, SHARED_VALUE_BYTES_MIN * 3]);
    let expected = encode_frame(std::slice::from_ref(&m)).unwrap();
    let mut enc = FrameEncoder::default();
    enc.push(&m).unwrap();
    enc.push(&close()).unwrap();
    enc.finish();
    let mut expected_two = expected.clone();
    expected_two.extend(encode_frame(&[close()]).unwrap());
    // The encoder's frame with both messages equals one frame of both.
    let both = encode_frame(&[m.clone(), close()]).unwrap();
    let chunks: Vec<&[u8]> = enc.chunks().collect();
    assert_eq!(chunks.concat(), both);
    assert_eq!(enc.finished_bytes(), both.len());
    for v in values(&m) {
        let shared = chunks.iter().any(|c| c.as_ptr() == v.as_bytes().as_ptr());
        assert_eq!(
            shared,
            v.len() >= SHARED_VALUE_BYTES_MIN,
            "{} bytes",
            v.len()
        );
    }
    // Written in uneven steps, it is the same bytes.
    let mut written = Vec::new();
    while enc.finished_bytes() > 0 {
        let step = enc.chunks().next().unwrap().len().min(7777);
        written.extend_from_slice(&enc.chunks().next().unwrap()[..step]);
        enc.consume(step);
    }
    assert_eq!(written, both);
    assert!(enc.is_empty());
    assert_ne!(expected_two, both, "two frames differ from one");
}

#[test]
fn array_headers_match_the_msgpack_writer() {
    for n in [0, 1, 15, 16, 255, 0xffff, 0x10000, 1 << 20] {
        let mut expected = Vec::new();
        write::array_len(&mut expected, n);
        let mut got = [0u8; ARRAY_HEADER_BYTES_MAX];
        let len = array_header_len(n);
        write_array_header(&mut got[..len], n);
        assert_eq!(&got[..len], &expected[..], "{n}");
    }
}

fn close() -> Message {
    Message::Close(Close {
        reason: Some("bye".into()),
        reconnect: None,
    })
}

#[test]
fn frames_split_anywhere_reassemble() {
    let bytes = encode_frame(&[close(), Message::Heartbeat(Heartbeat { metrics: None })]).unwrap();
    for cut in 0..bytes.len() {
        let mut d = FrameDecoder::default();
        d.push(&bytes[..cut]);
        assert_eq!(d.poll().unwrap(), None, "cut at {cut}");
        d.push(&bytes[cut..]);
        let got = d.poll().unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(d.poll().unwrap(), None);
        assert!(!d.is_mid_frame());
    }
}

#[test]
fn oversized_prefix_fails_before_the_payload_arrives() {
    let mut d = FrameDecoder::new(1000);
    d.push(&1001u32.to_be_bytes());
    let e = d.poll().unwrap_err();
    assert_eq!(e.code, ErrorCode::FrameTooLarge);
    d.push(&[0x90]);
    assert_eq!(d.poll().unwrap_err().code, ErrorCode::FrameTooLarge);
}

#[test]
fn encoder_splits_batches_at_the_limit() {
    let one = close().to_bytes().len();
    let mut enc = FrameEncoder::new(one * 2 + ARRAY_HEADER_BYTES_MAX);
    for _ in 0..5 {
        enc.push(&close()).unwrap();
    }
    let bytes = enc.take();
    let mut d = FrameDecoder::new(one * 2 + ARRAY_HEADER_BYTES_MAX);
    d.push(&bytes);
    let sizes: Vec<usize> = std::iter::from_fn(|| d.poll().unwrap())
        .map(|f| f.len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
}

#[test]
fn message_larger_than_any_frame_is_refused() {
    let mut enc = FrameEncoder::new(8);
    assert_eq!(
        enc.push(&close()).unwrap_err().code,
        ErrorCode::ValueTooLarge
    );
    assert!(enc.is_empty());
}

#[test]
fn a_python_dask_peer_is_named_on_its_first_bytes() {
    let python = crate::foreign::python_dask_refusal("x");
    let mut d = FrameDecoder::default();
    d.push(&python[..10]);
    // Not enough to tell yet: the decoder waits for 16 bytes.
    assert_eq!(d.poll().unwrap(), None);
    d.push(&python[10..]);
    let e = d.poll().unwrap_err();
    assert!(crate::foreign::is_python_dask_peer_error(&e), "{e}");
    let mut d = FrameDecoder::default();
    d.push(&python);
    let e = d.poll().unwrap_err();
    assert!(crate::foreign::is_python_dask_peer_error(&e), "{e}");
    // After a dask/1 frame, the same bytes are just a bad frame.
    let mut d = FrameDecoder::default();
    d.push(&encode_frame(&[]).unwrap());
    assert_eq!(d.poll().unwrap(), Some(vec![]));
    d.push(&python);
    assert_eq!(d.poll().unwrap_err().code, ErrorCode::FrameTooLarge);
}
