//! Frames on real sockets, on the runner's side. Each connection has a
//! reader thread that blocks on the socket and hands whole frames, checked
//! by core's decoder, to the session through a channel; the session writes
//! with blocking writes bounded by a timeout.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dask_core::frame::LENGTH_PREFIX_BYTES;
use dask_core::msgpack::write;
use dask_core::FRAME_BYTES_MAX;
use rmpv::Value;

use crate::case::Conn;
use crate::tls::{ChannelBinding, RunnerTls};

/// How often an accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Something that happened on a connection, stamped when it happened.
#[derive(Debug)]
pub struct Event {
    /// The connection.
    pub conn: Conn,
    /// Which one, for peer connections (1, 2, ...); 0 otherwise.
    pub index: u32,
    /// When the reader saw it.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// What happened on a connection.
#[derive(Debug)]
pub enum EventKind {
    /// The messages of one frame, each a valid dask/1 message.
    Frame(Vec<Value>),
    /// Bytes that are not a valid dask/1 frame (the reader stops).
    BadFrame(String),
    /// The worker closed or reset the connection.
    Closed(String),
    /// Messages the runner's peer sent by itself, rendered for the transcript.
    PeerSent(Vec<String>),
    /// A connection accepted on the scheduler address (after its TLS
    /// handshake with `--tls`, then with the connection's channel binding).
    Accepted(TcpStream, Option<ChannelBinding>),
    /// A line the client's test harness printed (client cases).
    Output(String),
}

impl Event {
    /// An event stamped now.
    pub fn now(conn: Conn, index: u32, kind: EventKind) -> Event {
        Event {
            conn,
            index,
            at: Instant::now(),
            kind,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection ended (EOF in the middle of a frame, or an I/O error).
    Closed(String),
    /// The bytes break the framing rules.
    Bad(String),
}

/// Reads one frame's payload; `Ok(None)` at a clean end of stream. The
/// payload buffer grows as bytes arrive, so a lying prefix allocates
/// nothing it does not receive.
pub fn read_frame(stream: &mut impl Read) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let mut got = 0;
    while got < prefix.len() {
        match stream.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ReadError::Closed("closed inside a length prefix".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Closed(e.to_string())),
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(ReadError::Bad(format!(
            "frame-too-large: length prefix {len} is over the limit of {FRAME_BYTES_MAX} bytes"
        )));
    }
    let mut payload = Vec::with_capacity(len.min(1 << 20));
    let read = (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut payload)
        .map_err(|e| ReadError::Closed(e.to_string()))?;
    if read < len {
        return Err(ReadError::Closed(format!(
            "closed after {read} of a frame's {len} bytes"
        )));
    }
    Ok(Some(payload))
}

/// Checks a payload with core's decoder (a msgpack array of valid dask/1
/// messages) and returns the messages as trees, exactly as sent.
pub fn decode_frame(payload: &[u8]) -> Result<Vec<Value>, String> {
    dask_core::frame::decode_payload(payload).map_err(|e| e.to_string())?;
    match crate::value::decode(payload)? {
        Value::Array(items) => Ok(items),
        _ => Err("a frame must hold a msgpack array".into()),
    }
}

/// One frame holding already encoded messages.
pub fn frame_bytes(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + messages.iter().map(Vec::len).sum::<usize>());
    write::array_len(&mut body, messages.len());
    for m in messages {
        body.extend_from_slice(m);
    }
    let mut out = Vec::with_capacity(LENGTH_PREFIX_BYTES + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads frames from `stream` until it ends, sending each as an event.
pub fn spawn_reader(mut stream: TcpStream, conn: Conn, index: u32, tx: Sender<Event>) {
    thread::spawn(move || loop {
        let kind = match read_frame(&mut stream) {
            Ok(Some(payload)) => match decode_frame(&payload) {
                Ok(messages) => EventKind::Frame(messages),
                Err(e) => EventKind::BadFrame(e),
            },
            Ok(None) => EventKind::Closed("end of stream".into()),
            Err(ReadError::Closed(e)) => EventKind::Closed(e),
            Err(ReadError::Bad(e)) => EventKind::BadFrame(e),
        };
        let last = !matches!(kind, EventKind::Frame(_));
        if tx.send(Event::now(conn, index, kind)).is_err() || last {
            return;
        }
    });
}

/// Accepts connections on `listener` until `stop` is set, sending each as
/// an [`EventKind::Accepted`] event; with `tls`, after its TLS handshake
/// (a failed one is sent as [`EventKind::Closed`], saying why).
pub fn spawn_acceptor(
    listener: TcpListener,
    conn: Conn,
    tls: Option<Arc<RunnerTls>>,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) {
    thread::spawn(move || {
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_nodelay(true);
                    let Some(tls) = tls.clone() else {
                        let event = Event::now(conn, 0, EventKind::Accepted(stream, None));
                        if tx.send(event).is_err() {
                            return;
                        }
                        continue;
                    };
                    let tx = tx.clone();
                    thread::spawn(move || {
                        let kind = match tls.accept(stream) {
                            Ok(t) => EventKind::Accepted(t.stream, Some(t.channel_binding)),
                            Err(e) => EventKind::Closed(format!(
                                "a TLS handshake on the scheduler address failed: {e}"
                            )),
                        };
                        let _ = tx.send(Event::now(conn, 0, kind));
                    });
                }
                Err(_) => thread::sleep(ACCEPT_POLL),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_prefixes_are_refused() {
        let msg =
            crate::value::encode(&serde_json::json!({"op": "close"}), &Default::default()).unwrap();
        let bytes = frame_bytes(&[msg]);
        let payload = read_frame(&mut &bytes[..]).unwrap().unwrap();
        let values = decode_frame(&payload).unwrap();
        assert_eq!(crate::value::op_of(&values[0]), Some("close"));
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        assert!(matches!(
            read_frame(&mut &[0xff, 0xff, 0xff, 0xff][..]),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 9, 0x90][..]),
            Err(ReadError::Closed(_))
        ));
        assert!(decode_frame(&[0x91, 0x01]).is_err());
    }
}
