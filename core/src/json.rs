//! The JSON form of msgpack values, used by test vectors and graph files.
//!
//! nil, booleans, numbers, strings, arrays and maps with string keys map to
//! their JSON kin (integers stay integers; floats are written with a
//! fraction or exponent). The rest use one-key objects:
//! `{"$ref": key}` a task reference (ext type 1), `{"$bin": hex}` binary,
//! `{"$ext": [type, hex]}` another ext, `{"$float": "NaN" | "inf" | "-inf"}`,
//! and `{"$map": [[k, v], ...]}` a map whose keys are not all strings, or
//! that would itself read as one of these forms.

use serde_json::{Map, Number, Value as Json};

use crate::error::WireError;
use crate::msgpack::{write, Reader, TASK_REF_EXT, VALUE_DEPTH_MAX};

/// Deepest nesting of arrays and maps these conversions accept. It keeps
/// the recursion off the end of the stack; the protocol's own limits are
/// checked by the decoder. Four levels above [`VALUE_DEPTH_MAX`] leave room
/// for a frame's array, a message's map, `update-graph`'s `tasks` array and
/// a task's map around a value of the deepest nesting the protocol allows,
/// so every valid frame has a JSON form.
pub const JSON_DEPTH_MAX: usize = VALUE_DEPTH_MAX + 4;

fn too_deep() -> String {
    format!("value nested deeper than {JSON_DEPTH_MAX} levels")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase or uppercase hex.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() & 1 == 1 {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex {s:?}: {e}")))
        .collect()
}

/// Hex of bytes, lowercase.
pub fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

fn special(obj: &Map<String, Json>) -> Option<(&str, &Json)> {
    if obj.len() != 1 {
        return None;
    }
    let (k, v) = obj.iter().next()?;
    matches!(k.as_str(), "$ref" | "$bin" | "$ext" | "$float" | "$map").then_some((k.as_str(), v))
}

/// Appends the canonical msgpack encoding of a JSON-form value.
pub fn write_json(w: &mut Vec<u8>, v: &Json) -> Result<(), String> {
    write_json_depth(w, v, 0)
}

/// `depth` is the number of containers around `v`.
fn write_json_depth(w: &mut Vec<u8>, v: &Json, depth: usize) -> Result<(), String> {
    if matches!(v, Json::Array(_) | Json::Object(_)) && depth >= JSON_DEPTH_MAX {
        return Err(too_deep());
    }
    match v {
        Json::Null => write::nil(w),
        Json::Bool(b) => write::bool(w, *b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                write::uint(w, u)
            } else if let Some(i) = n.as_i64() {
                write::int(w, i)
            } else {
                write::f64(w, n.as_f64().ok_or("number out of range")?)
            }
        }
        Json::String(s) => write::str(w, s),
        Json::Array(items) => {
            write::array_len(w, items.len());
            for item in items {
                write_json_depth(w, item, depth + 1)?;
            }
        }
        Json::Object(obj) => match special(obj) {
            Some(("$ref", Json::String(key))) => write::task_ref(w, key),
            Some(("$bin", Json::String(h))) => write::bin(w, &unhex(h)?),
            Some(("$ext", Json::Array(parts))) => match parts.as_slice() {
                [Json::Number(t), Json::String(h)] => {
                    let ty = t
                        .as_i64()
                        .and_then(|t| i8::try_from(t).ok())
                        .ok_or("ext type out of range")?;
                    write::ext(w, ty, &unhex(h)?)
                }
                _ => return Err("$ext takes [type, hex]".into()),
            },
            Some(("$float", Json::String(s))) => write::f64(
                w,
                match s.as_str() {
                    "NaN" => f64::NAN,
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    other => return Err(format!("$float takes NaN, inf or -inf, not {other:?}")),
                },
            ),
            Some(("$map", Json::Array(pairs))) => {
                write::map_len(w, pairs.len());
                for pair in pairs {
                    match pair.as_array().map(|p| p.as_slice()) {
                        Some([k, v]) => {
                            write_json_depth(w, k, depth + 1)?;
                            write_json_depth(w, v, depth + 1)?;
                        }
                        _ => return Err("$map takes [[key, value], ...]".into()),
                    }
                }
            }
            Some((form, _)) => return Err(format!("malformed {form} form")),
            None => {
                write::map_len(w, obj.len());
                for (k, v) in obj {
                    write::str(w, k);
                    write_json_depth(w, v, depth + 1)?;
                }
            }
        },
    }
    Ok(())
}

/// The canonical msgpack encoding of a JSON-form value.
pub fn json_to_msgpack(v: &Json) -> Result<Vec<u8>, String> {
    let mut w = Vec::new();
    write_json(&mut w, v)?;
    Ok(w)
}

/// The JSON form of one msgpack object read from `r`.
pub fn read_json(r: &mut Reader<'_>) -> Result<Json, WireError> {
    read_json_depth(r, 0)
}

fn float_json(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => {
            let s = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            one("$float", Json::String(s.into()))
        }
    }
}

fn one(k: &str, v: Json) -> Json {
    let mut m = Map::new();
    m.insert(k.into(), v);
    Json::Object(m)
}

/// `depth` is the number of containers around the object read.
fn read_json_depth(r: &mut Reader<'_>, depth: usize) -> Result<Json, WireError> {
    let m = r.peek()?;
    if matches!(m, 0x80..=0x9f | 0xdc..=0xdf) && depth >= JSON_DEPTH_MAX {
        return Err(WireError::malformed(too_deep()));
    }
    Ok(match crate::msgpack::marker_kind(m) {
        "nil" => {
            r.read_nil()?;
            Json::Null
        }
        "boolean" => Json::Bool(r.read_bool()?),
        "integer" => {
            let i = r.read_int()?;
            if i >= 0 {
                Json::Number((i as u64).into())
            } else {
                Json::Number((i as i64).into())
            }
        }
        "float" => float_json(r.read_f64()?),
        "string" => Json::String(r.read_str()?.to_owned()),
        "binary" => one("$bin", Json::String(hex(r.read_bin()?))),
        "ext" => {
            let (ty, data) = r.read_ext()?;
            if ty == TASK_REF_EXT {
                one(
                    "$ref",
                    Json::String(crate::msgpack::parse_ref(data)?.to_owned()),
                )
            } else {
                one(
                    "$ext",
                    Json::Array(vec![Json::Number(ty.into()), Json::String(hex(data))]),
                )
            }
        }
        "array" => {
            let len = r.read_array_len()?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_json_depth(r, depth + 1)?);
            }
            Json::Array(items)
        }
        "map" => {
            let len = r.read_map_len()?;
            let mut pairs = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                pairs.push((
                    read_json_depth(r, depth + 1)?,
                    read_json_depth(r, depth + 1)?,
                ));
            }
            let plain = pairs.iter().all(|(k, _)| k.is_string());
            let mut obj = Map::new();
            if plain {
                for (k, v) in &pairs {
                    if let Json::String(k) = k {
                        obj.insert(k.clone(), v.clone());
                    }
                }
            }
            if plain && obj.len() == pairs.len() && special(&obj).is_none() {
                Json::Object(obj)
            } else {
                one(
                    "$map",
                    Json::Array(
                        pairs
                            .into_iter()
                            .map(|(k, v)| Json::Array(vec![k, v]))
                            .collect(),
                    ),
                )
            }
        }
        _ => return Err(WireError::malformed("reserved msgpack byte 0xc1")),
    })
}

/// The JSON form of exactly one msgpack object.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Json, WireError> {
    let mut r = Reader::new(bytes);
    let v = read_json(&mut r)?;
    if r.remaining() != 0 {
        return Err(WireError::malformed("bytes after the end of a value"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn special_forms_round_trip() {
        let v = json!([null, true, -3, 1.5, "s", {"$ref": "k"}, {"$bin": "00ff"},
            {"$ext": [5, "01"]}, {"$map": [[1, 2]]}, {"$map": [["$ref", 1]]}, {"$float": "NaN"}, {"a": {"b": []}}]);
        let bytes = json_to_msgpack(&v).unwrap();
        assert_eq!(msgpack_to_json(&bytes).unwrap(), v);
    }

    #[test]
    fn a_message_with_a_value_of_the_deepest_allowed_nesting_has_a_json_form() {
        let mut v = json!(1);
        for _ in 0..VALUE_DEPTH_MAX {
            v = Json::Array(vec![v]);
        }
        let task = json!({"key": "k", "function": "f", "args": v});
        let m = json!([{"op": "update-graph", "request": 1, "tasks": [task], "wanted": []}]);
        let bytes = json_to_msgpack(&m).unwrap();
        assert_eq!(msgpack_to_json(&bytes).unwrap(), m);
        assert!(json_to_msgpack(&json!([m])).is_err());
        let mut bytes = vec![0x91; JSON_DEPTH_MAX + 1];
        bytes.push(0x01);
        assert!(msgpack_to_json(&bytes).is_err());
    }

    #[test]
    fn floats_keep_their_kind() {
        let bytes = json_to_msgpack(&json!(1.0)).unwrap();
        assert_eq!(bytes[0], 0xcb);
        assert_eq!(msgpack_to_json(&bytes).unwrap(), json!(1.0));
    }
}
