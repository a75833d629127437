//! core's codec, reachable from JS for the golden vectors of
//! `spec/vectors` and for tools: JSON form <-> msgpack for values and
//! messages, frames, and both sides of the handshake. Inputs and outputs
//! are JSON text or msgpack bytes as each operation says; a refused input
//! comes back with its dask/1 error code, so a test can compare codes.

use dask_core::frame::{FrameDecoder, FrameEncoder};
use dask_core::handshake;
use dask_core::json::{json_to_msgpack, msgpack_to_json, unhex};
use dask_core::messages::Role;
use dask_core::{ErrorCode, Message, RawValue, WireError};
use serde_json::{json, Value as Json};

/// Why a codec operation gave no output.
#[derive(Debug)]
pub enum CodecError {
    /// The request itself is wrong (unknown op, input not JSON).
    Request(String),
    /// The codec refused the input, with the dask/1 error code.
    Wire(WireError),
}

impl From<WireError> for CodecError {
    fn from(e: WireError) -> Self {
        CodecError::Wire(e)
    }
}

impl CodecError {
    /// `{"code": n, "error": name, "message": text}` for [`CodecError::Wire`].
    pub fn to_json(&self) -> Json {
        match self {
            CodecError::Wire(e) => {
                json!({"code": e.code.number(), "error": e.code.name(), "message": e.message})
            }
            CodecError::Request(m) => json!({"code": null, "error": "request", "message": m}),
        }
    }
}

/// Runs codec operation `op` on `input`:
///
/// | op | input | output |
/// |---|---|---|
/// | `value_encode` | JSON form of a value | its canonical msgpack |
/// | `value_decode` | msgpack bytes | the JSON form (one well-formed value, else an error) |
/// | `message_encode` | JSON form of a message | its canonical msgpack |
/// | `message_decode` | msgpack bytes | the JSON form of the decoded message |
/// | `frame_encode` | JSON array of messages | one frame's bytes |
/// | `frame_decode` | `{"hex", "frame_bytes_max"?, "bytewise"?}` | `{"batches", "pending", "error"}` |
/// | `handshake_accept` | `{"speaks", "first", "role", "serves", "id"}` | `{"reply"}` |
/// | `handshake_connect` | `{"offer", "reply", "expect_role"}` | `{"version", "features"}` |
/// | `handshake_offer` | `{"role"}` | the hello dask-rs offers |
///
/// JSON outputs are UTF-8 text. A refused input is [`CodecError::Wire`]
/// with the code a receiver would send; `frame_decode` instead returns the
/// batches before the error and the error in `"error"`.
pub fn run(op: &str, input: &[u8]) -> Result<Vec<u8>, CodecError> {
    match op {
        "value_encode" => Ok(value_encode(&parse(input)?)?),
        "value_decode" => json_out(value_decode(input)?),
        "message_encode" => Ok(message_encode(&parse(input)?)?),
        "message_decode" => json_out(message_decode(input)?),
        "frame_encode" => Ok(frame_encode(&parse(input)?)?),
        "frame_decode" => json_out(frame_decode(&parse(input)?)?),
        "handshake_accept" => json_out(handshake_accept(&parse(input)?)?),
        "handshake_connect" => json_out(handshake_connect(&parse(input)?)?),
        "handshake_offer" => json_out(handshake_offer(&parse(input)?)?),
        other => Err(CodecError::Request(format!(
            "unknown codec operation {other:?}"
        ))),
    }
}

fn parse(input: &[u8]) -> Result<Json, CodecError> {
    serde_json::from_slice(input)
        .map_err(|e| CodecError::Request(format!("input is not JSON: {e}")))
}

fn json_out(v: Json) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(&v).map_err(|e| CodecError::Request(e.to_string()))
}

fn malformed(message: impl Into<String>) -> WireError {
    WireError::malformed(message)
}

fn value_encode(v: &Json) -> Result<Vec<u8>, WireError> {
    let bytes = json_to_msgpack(v).map_err(malformed)?;
    Ok(RawValue::from_bytes(bytes)?.into_bytes())
}

fn value_decode(bytes: &[u8]) -> Result<Json, WireError> {
    let raw = RawValue::from_bytes(bytes.to_vec())?;
    msgpack_to_json(raw.as_bytes())
}

fn message_from_json(v: &Json) -> Result<Message, WireError> {
    let bytes = json_to_msgpack(v).map_err(malformed)?;
    Message::from_bytes(&bytes)
}

fn message_encode(v: &Json) -> Result<Vec<u8>, WireError> {
    Ok(message_from_json(v)?.to_bytes())
}

fn message_decode(bytes: &[u8]) -> Result<Json, WireError> {
    msgpack_to_json(&Message::from_bytes(bytes)?.to_bytes())
}

fn frame_encode(v: &Json) -> Result<Vec<u8>, WireError> {
    let items = v
        .as_array()
        .ok_or_else(|| malformed("frame_encode takes an array of messages"))?;
    let mut enc = FrameEncoder::default();
    for item in items {
        enc.push(&message_from_json(item)?)?;
    }
    if items.is_empty() {
        // An empty batch is a frame too: length 1, an empty array.
        return Ok(vec![0, 0, 0, 1, 0x90]);
    }
    Ok(enc.take())
}

fn frame_decode(v: &Json) -> Result<Json, WireError> {
    let hex = v["hex"]
        .as_str()
        .ok_or_else(|| malformed("frame_decode needs \"hex\""))?;
    let bytes = unhex(hex).map_err(malformed)?;
    let mut decoder = match v["frame_bytes_max"].as_u64() {
        Some(max) => FrameDecoder::new(usize::try_from(max).unwrap_or(usize::MAX)),
        None => FrameDecoder::default(),
    };
    let chunk = if v["bytewise"].as_bool() == Some(true) {
        1
    } else {
        bytes.len().max(1)
    };
    let mut batches = Vec::new();
    let mut error = None;
    'feed: for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.poll() {
                Ok(Some(messages)) => {
                    let batch = messages
                        .iter()
                        .map(|m| msgpack_to_json(&m.to_bytes()))
                        .collect::<Result<Vec<_>, _>>()?;
                    batches.push(Json::Array(batch));
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(CodecError::Wire(e).to_json());
                    break 'feed;
                }
            }
        }
    }
    Ok(json!({
        "batches": batches,
        "pending": decoder.is_mid_frame(),
        "error": error,
    }))
}

/// A `[major, minor]`.
fn version(v: &Json) -> Result<dask_core::messages::Version, WireError> {
    let part = |i: usize| {
        v.get(i)
            .and_then(Json::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    match (part(0), part(1)) {
        (Some(major), Some(minor)) => Ok(dask_core::messages::Version { major, minor }),
        _ => Err(malformed(format!("not a [major, minor]: {v}"))),
    }
}

fn role(v: &Json) -> Result<Role, WireError> {
    match v.as_str() {
        Some("client") => Ok(Role::Client),
        Some("worker") => Ok(Role::Worker),
        Some("scheduler") => Ok(Role::Scheduler),
        Some("peer") => Ok(Role::Peer),
        _ => Err(malformed(format!("not a role: {v}"))),
    }
}

fn handshake_accept(v: &Json) -> Result<Json, WireError> {
    let our_role = role(&v["role"])?;
    let serves = v["serves"]
        .as_array()
        .ok_or_else(|| malformed("handshake_accept needs \"serves\""))?
        .iter()
        .map(role)
        .collect::<Result<Vec<_>, _>>()?;
    let id = v["id"].as_u64().unwrap_or(0);
    // The first message must be a hello (PROTOCOL.md#handshake).
    let reply = match message_from_json(&v["first"])? {
        Message::Hello(h) => {
            handshake::accept_speaking(version(&v["speaks"])?, &h, our_role, &serves, id, None)?.0
        }
        other => {
            return Err(WireError::new(
                ErrorCode::BadHandshake,
                format!("expected hello, got `{}`", other.op()),
            ))
        }
    };
    Ok(json!({"reply": msgpack_to_json(&Message::from(reply).to_bytes())?}))
}

fn handshake_connect(v: &Json) -> Result<Json, WireError> {
    let expected = role(&v["expect_role"])?;
    let offered = match message_from_json(&v["offer"])? {
        Message::Hello(offer) => offer.version,
        _ => return Err(malformed("handshake_connect needs the hello \"offer\"")),
    };
    let n = match message_from_json(&v["reply"])? {
        Message::Hello(h) => handshake::check_reply_offered(offered, &h, expected)?,
        Message::ErrorReport(e) => {
            let code = ErrorCode::from_number(e.code).unwrap_or(ErrorCode::BadHandshake);
            return Err(WireError::new(code, e.message));
        }
        other => {
            return Err(WireError::new(
                ErrorCode::BadHandshake,
                format!("expected hello, got `{}`", other.op()),
            ))
        }
    };
    Ok(json!({"version": [n.version.major, n.version.minor], "features": n.features}))
}

fn handshake_offer(v: &Json) -> Result<Json, WireError> {
    let hello = handshake::offer(role(&v["role"])?, None);
    msgpack_to_json(&Message::from(hello).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::json::to_hex;

    fn text(op: &str, input: &str) -> Json {
        serde_json::from_slice(&run(op, input.as_bytes()).unwrap()).unwrap()
    }

    fn code(r: Result<Vec<u8>, CodecError>) -> Option<u32> {
        match r {
            Err(CodecError::Wire(e)) => Some(e.code.number()),
            _ => None,
        }
    }

    #[test]
    fn values_and_messages_go_both_ways() {
        assert_eq!(
            run("value_encode", b"[1, 1.0]").unwrap(),
            [0x92, 0x01, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            text_bytes("value_decode", &[0x92, 0x01, 0xc0]),
            json!([1, null])
        );
        let close = run("message_encode", br#"{"op": "close"}"#).unwrap();
        assert_eq!(to_hex(&close), "81a26f70a5636c6f7365");
        assert_eq!(text_bytes("message_decode", &close), json!({"op": "close"}));
    }

    fn text_bytes(op: &str, input: &[u8]) -> Json {
        serde_json::from_slice(&run(op, input).unwrap()).unwrap()
    }

    #[test]
    fn failures_carry_the_code() {
        assert_eq!(code(run("value_decode", &[0xc1])), Some(1001));
        assert_eq!(code(run("message_encode", br#"{"op": "fly"}"#)), Some(2001));
        let bad = text("frame_decode", r#"{"hex": "0000000191"}"#);
        assert_eq!(bad["error"]["code"], 1001);
        let pending = text("frame_decode", r#"{"hex": "00000001", "bytewise": true}"#);
        assert_eq!(pending["pending"], true);
        assert!(matches!(run("nope", b"{}"), Err(CodecError::Request(_))));
        assert!(matches!(
            run("frame_decode", b"x"),
            Err(CodecError::Request(_))
        ));
    }

    #[test]
    fn handshakes_both_ways() {
        let offer = text("handshake_offer", r#"{"role": "client"}"#);
        let accepted = text(
            "handshake_accept",
            &json!({"speaks": [1, 1], "first": offer, "role": "scheduler", "serves": ["client"], "id": 5})
                .to_string(),
        );
        assert_eq!(accepted["reply"]["id"], 5);
        let connected = text(
            "handshake_connect",
            &json!({"offer": offer, "reply": accepted["reply"], "expect_role": "scheduler"})
                .to_string(),
        );
        assert_eq!(connected["version"], json!([1, 1]));
    }
}
