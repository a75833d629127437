//! Encoding helpers: canonical bytes, frames and batches, the "also accepted"
//! rewrites (widened, reordered, nil for absent fields, unknown fields added),
//! and the case builders.

use dask_core::json::{json_to_msgpack, to_hex};
use dask_core::msgpack::{write, Reader};
use serde_json::{json, Map, Value as Json};

pub(super) fn canonical(v: &Json) -> Vec<u8> {
    json_to_msgpack(v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

pub(super) fn hex(bytes: &[u8]) -> Json {
    Json::String(to_hex(bytes))
}

/// The bytes of one frame holding `payload`.
pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The payload of a batch: an array header and the messages' bytes.
pub(super) fn batch(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    write::array_len(&mut out, messages.len());
    for m in messages {
        out.extend_from_slice(m);
    }
    out
}

pub(super) fn frame_of(messages: &[Json]) -> Vec<u8> {
    frame(&batch(&messages.iter().map(canonical).collect::<Vec<_>>()))
}

/// An encoding of `v` with every integer, string, binary, array, map and
/// task reference in its widest form: valid, never canonical. Only for
/// typed fields (values would keep the wide bytes).
pub(super) fn wide(v: &Json) -> Vec<u8> {
    let mut w = Vec::new();
    wide_into(&mut w, v);
    w
}

pub(super) fn wide_str(w: &mut Vec<u8>, s: &str) {
    w.push(0xdb);
    w.extend_from_slice(&(s.len() as u32).to_be_bytes());
    w.extend_from_slice(s.as_bytes());
}

pub(super) fn wide_into(w: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Number(n) if n.is_u64() => {
            w.push(0xcf);
            w.extend_from_slice(&n.as_u64().unwrap_or(0).to_be_bytes());
        }
        Json::Number(n) if n.is_i64() => {
            w.push(0xd3);
            w.extend_from_slice(&n.as_i64().unwrap_or(0).to_be_bytes());
        }
        Json::String(s) => wide_str(w, s),
        Json::Array(items) => {
            w.push(0xdd);
            w.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                wide_into(w, item);
            }
        }
        Json::Object(obj) if !is_special(obj) => {
            w.push(0xdf);
            w.extend_from_slice(&(obj.len() as u32).to_be_bytes());
            for (k, item) in obj {
                wide_str(w, k);
                wide_into(w, item);
            }
        }
        other => w.extend_from_slice(&canonical(other)),
    }
}

pub(super) fn is_special(obj: &Map<String, Json>) -> bool {
    obj.len() == 1 && obj.keys().all(|k| k.starts_with('$'))
}

/// A map's entries as raw bytes: (encoded key, encoded value).
pub(super) fn entries(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut r = Reader::new(bytes);
    let n = r.read_map_len().expect("a map");
    let mut out = Vec::new();
    for _ in 0..n {
        let k = r.skip_value(&mut |_| {}).expect("key").to_vec();
        let v = r.skip_value(&mut |_| {}).expect("value").to_vec();
        out.push((k, v));
    }
    out
}

pub(super) fn key_bytes(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    write::str(&mut w, name);
    w
}

pub(super) fn map_bytes(entries: &[(Vec<u8>, Vec<u8>)], map16: bool) -> Vec<u8> {
    let mut w = Vec::new();
    if map16 {
        w.push(0xde);
        w.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    } else {
        write::map_len(&mut w, entries.len());
    }
    for (k, v) in entries {
        w.extend_from_slice(k);
        w.extend_from_slice(v);
    }
    w
}

/// Reverses the entries of a map, or of each map in an array; keeps every
/// key and value byte as it is.
pub(super) fn reverse_entries(bytes: &[u8]) -> Vec<u8> {
    match bytes[0] {
        0x80..=0x8f | 0xde | 0xdf => {
            let mut e = entries(bytes);
            e.reverse();
            map_bytes(&e, false)
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let mut r = Reader::new(bytes);
            let n = r.read_array_len().expect("array");
            let mut w = Vec::new();
            write::array_len(&mut w, n);
            for _ in 0..n {
                let item = r.skip_value(&mut |_| {}).expect("item");
                w.extend_from_slice(&reverse_entries(item));
            }
            w
        }
        _ => panic!("reverse_entries: not a map or array"),
    }
}

/// One rewrite of a message's canonical bytes.
pub(super) enum Alt {
    /// Fields in reverse order (`op` last).
    Reversed,
    /// A map 16 header for the message map.
    Map16,
    /// Field names as str 32.
    WideNames,
    /// An absent optional field sent as nil.
    Nil(&'static str),
    /// A field this version does not define, appended.
    Unknown(&'static str, Json),
    /// A typed field's value in its widest encoding.
    Wide(&'static str),
    /// A typed map field (or array of maps) with its entries reversed.
    ReverseIn(&'static str),
    /// A field's value replaced by these bytes.
    Raw(&'static str, Vec<u8>),
}

pub(super) fn rewrite(json: &Json, alts: &[Alt]) -> Vec<u8> {
    let mut e = entries(&canonical(json));
    let mut map16 = false;
    let field = |e: &[(Vec<u8>, Vec<u8>)], name: &str| -> usize {
        let k = key_bytes(name);
        e.iter()
            .position(|(ek, _)| *ek == k)
            .unwrap_or_else(|| panic!("no field {name}"))
    };
    for alt in alts {
        match alt {
            Alt::Reversed => e.reverse(),
            Alt::Map16 => map16 = true,
            Alt::WideNames => {
                for (k, _) in e.iter_mut() {
                    let name = dask_core::json::msgpack_to_json(k).expect("name");
                    let mut w = Vec::new();
                    wide_str(&mut w, name.as_str().expect("string name"));
                    *k = w;
                }
            }
            Alt::Nil(name) => e.push((key_bytes(name), vec![0xc0])),
            Alt::Unknown(name, v) => e.push((key_bytes(name), canonical(v))),
            Alt::Wide(name) => {
                let i = field(&e, name);
                e[i].1 = wide(&json[*name]);
            }
            Alt::ReverseIn(name) => {
                let i = field(&e, name);
                e[i].1 = reverse_entries(&e[i].1);
            }
            Alt::Raw(name, bytes) => {
                let i = field(&e, name);
                e[i].1 = bytes.clone();
            }
        }
    }
    map_bytes(&e, map16)
}

pub(super) fn case(description: &str, json: Json, alts: Vec<Vec<Alt>>) -> Json {
    let canon = canonical(&json);
    let mut msgpack = vec![hex(&canon)];
    for alt in &alts {
        let bytes = rewrite(&json, alt);
        assert_ne!(
            bytes, canon,
            "{description}: an alternate equal to the canonical encoding"
        );
        msgpack.push(hex(&bytes));
    }
    json!({"description": description, "json": json, "msgpack": msgpack})
}

pub(super) fn value_case(description: &str, json: Json, alts: Vec<Vec<u8>>) -> Json {
    let canon = canonical(&json);
    let mut msgpack = vec![hex(&canon)];
    for bytes in alts {
        assert_ne!(
            bytes, canon,
            "{description}: an alternate equal to the canonical encoding"
        );
        msgpack.push(hex(&bytes));
    }
    json!({"description": description, "json": json, "msgpack": msgpack})
}

pub(super) fn unhex(s: &str) -> Vec<u8> {
    dask_core::json::unhex(s).expect("hex")
}

// ---- vocabulary the files share ------------------------------------------

/// Worker addresses the vectors name.
pub(super) const A1: &str = "tcp://127.0.0.1:40001";
pub(super) const A2: &str = "tcp://127.0.0.1:40002";

pub(super) fn nested(levels: usize, inner: Json) -> Json {
    let mut v = inner;
    for _ in 0..levels {
        v = Json::Array(vec![v]);
    }
    v
}

pub(super) fn bytes_pattern(n: usize) -> String {
    to_hex(&(0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}
