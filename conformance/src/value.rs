//! Values in case files: templates the runner sends and patterns it
//! matches against what the worker sends.
//!
//! Both start from the JSON form of msgpack values (`core/src/json.rs`:
//! `{"$ref": key}`, `{"$bin": hex}`, `{"$ext": [type, hex]}`,
//! `{"$float": "NaN"}`, `{"$map": [[k, v], ...]}`). Templates add
//! `{"$var": name}` (a variable's value) and `{"$bin_pattern": n}` (n bytes,
//! byte i = i % 251, as `conformance.bytes(n)` returns). Patterns add the
//! matchers listed in [`MATCHERS`].
//!
//! Matching rules: a message pattern lists the fields that must match;
//! other fields are ignored (a newer minor may add fields). Objects nested
//! inside must match exactly (same keys) unless written `{"$has": {...}}`.
//! Numbers keep their kind: `5` matches only an integer 5, `5.0` only a
//! float.

use std::collections::HashMap;

use dask_core::msgpack::{write, TASK_REF_EXT};
use rmpv::Value;
use serde_json::{Map, Value as Json};

/// Variables of a running case, by name.
pub type Vars = HashMap<String, Value>;

/// Largest `$bin_pattern` accepted: a frame's limit.
pub const BIN_PATTERN_BYTES_MAX: u64 = dask_core::FRAME_BYTES_MAX as u64;

/// Deepest value the runner decodes from a worker.
const DECODE_DEPTH_MAX: usize = 2 * dask_core::msgpack::VALUE_DEPTH_MAX + 8;

/// The special one-key objects of core's JSON form.
const CORE_FORMS: &[&str] = &["$ref", "$bin", "$ext", "$float", "$map"];

/// Matchers a pattern may use, with what each matches.
pub const MATCHERS: &[(&str, &str)] = &[
    (
        "$any",
        "a value of a type: any, nil, bool, int, uint, float, number, string, bin, array, map, ext",
    ),
    ("$capture", "anything; binds it to a variable of that name"),
    ("$var", "a value equal to the variable's"),
    ("$has", "a map holding at least these entries"),
    (
        "$contains",
        "an array holding, for each pattern listed, an item it matches",
    ),
    ("$prefix", "a string starting with this text"),
    ("$one_of", "a value any of the listed patterns matches"),
    ("$bin_pattern", "binary of n bytes, byte i = i % 251"),
];

/// The bytes `conformance.bytes(n)` returns: byte i is i % 251.
pub fn bin_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn special(obj: &Map<String, Json>) -> Option<(&str, &Json)> {
    if obj.len() != 1 {
        return None;
    }
    let (k, v) = obj.iter().next()?;
    k.starts_with('$').then_some((k.as_str(), v))
}

/// The msgpack encoding of a template, variables substituted.
pub fn encode(template: &Json, vars: &Vars) -> Result<Vec<u8>, String> {
    let mut w = Vec::new();
    encode_into(&mut w, template, vars, 0)?;
    Ok(w)
}

fn encode_into(w: &mut Vec<u8>, t: &Json, vars: &Vars, depth: usize) -> Result<(), String> {
    // A message map and its field sit above the values the spec limits.
    if depth > dask_core::msgpack::VALUE_DEPTH_MAX + 2 {
        return Err("template nested too deep".into());
    }
    match t {
        Json::Object(obj) => match special(obj) {
            Some(("$var", name)) => {
                let name = name.as_str().ok_or("$var takes a variable name")?;
                let v = vars
                    .get(name)
                    .ok_or_else(|| format!("variable {name:?} is not set"))?;
                rmpv::encode::write_value(w, v).map_err(|e| e.to_string())?;
            }
            Some(("$bin_pattern", n)) => {
                let n = n
                    .as_u64()
                    .filter(|n| *n <= BIN_PATTERN_BYTES_MAX)
                    .ok_or("$bin_pattern takes a byte count up to 256 MiB")?;
                write::bin(w, &bin_pattern(n as usize));
            }
            // Entries are templates too (a key may be a variable).
            Some(("$map", Json::Array(pairs))) => {
                write::map_len(w, pairs.len());
                for pair in pairs {
                    let [k, v] = pair.as_array().map(Vec::as_slice).unwrap_or_default() else {
                        return Err("$map takes [key, value] pairs".into());
                    };
                    encode_into(w, k, vars, depth + 1)?;
                    encode_into(w, v, vars, depth + 1)?;
                }
            }
            Some((form, _)) if CORE_FORMS.contains(&form) => {
                dask_core::json::write_json(w, t)?;
            }
            Some((form, _)) => return Err(format!("unknown template form {form:?}")),
            None => {
                write::map_len(w, obj.len());
                for (k, v) in obj {
                    write::str(w, k);
                    encode_into(w, v, vars, depth + 1)?;
                }
            }
        },
        Json::Array(items) => {
            write::array_len(w, items.len());
            for item in items {
                encode_into(w, item, vars, depth + 1)?;
            }
        }
        other => dask_core::json::write_json(w, other)?,
    }
    Ok(())
}

/// Decodes one msgpack value (used on whole frames from the worker, after
/// core's decoder has checked them).
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut r = bytes;
    rmpv::decode::read_value_with_max_depth(&mut r, DECODE_DEPTH_MAX).map_err(|e| e.to_string())
}

/// Checks a pattern's matchers are known and well formed; collects the
/// variables it uses and the ones it captures.
pub fn check_pattern(
    p: &Json,
    used: &mut Vec<String>,
    captured: &mut Vec<String>,
) -> Result<(), String> {
    match p {
        Json::Object(obj) => match special(obj) {
            Some(("$any", Json::String(t))) if TYPE_NAMES.contains(&t.as_str()) => Ok(()),
            Some(("$any", other)) => Err(format!("$any takes one of {TYPE_NAMES:?}, not {other}")),
            Some(("$capture", Json::String(name))) => {
                captured.push(name.clone());
                Ok(())
            }
            Some(("$var", Json::String(name))) => {
                used.push(name.clone());
                Ok(())
            }
            Some(("$has", Json::Object(inner))) => inner
                .values()
                .try_for_each(|v| check_pattern(v, used, captured)),
            Some(("$contains" | "$one_of", Json::Array(items))) => items
                .iter()
                .try_for_each(|v| check_pattern(v, used, captured)),
            Some(("$prefix", Json::String(_))) => Ok(()),
            Some(("$bin_pattern", n)) if n.as_u64().is_some() => Ok(()),
            Some((form, _)) if CORE_FORMS.contains(&form) => dask_core::json::json_to_msgpack(p)
                .map(|_| ())
                .map_err(|e| format!("literal {form}: {e}")),
            Some((form, v)) => Err(format!("unknown or malformed matcher {{{form:?}: {v}}}")),
            None => obj
                .values()
                .try_for_each(|v| check_pattern(v, used, captured)),
        },
        Json::Array(items) => items
            .iter()
            .try_for_each(|v| check_pattern(v, used, captured)),
        _ => Ok(()),
    }
}

const TYPE_NAMES: &[&str] = &[
    "any", "nil", "bool", "int", "uint", "float", "number", "string", "bin", "array", "map", "ext",
];

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "any" => true,
        "nil" => v.is_nil(),
        "bool" => v.is_bool(),
        "int" => v.is_i64() || v.is_u64(),
        "uint" => v.is_u64(),
        "float" => v.is_f32() || v.is_f64(),
        "number" => v.is_number(),
        "string" => v.is_str(),
        "bin" => v.is_bin(),
        "array" => v.is_array(),
        "map" => v.is_map(),
        "ext" => v.is_ext(),
        _ => false,
    }
}

/// Matches a message pattern against a message; on success returns the
/// variables the pattern captured, on failure where and how it differs.
pub fn match_message(pattern: &Map<String, Json>, v: &Value, vars: &Vars) -> Result<Vars, String> {
    let mut captures = Vars::new();
    match_map(pattern, v, false, "", vars, &mut captures)?;
    Ok(captures)
}

/// The strings of array field `key` of a map (a message's `keys`, a
/// hello's `features`); none when absent, other items skipped.
pub fn strings(v: &Value, key: &str) -> Vec<String> {
    map_get(v, key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of field `key` of a map (a message), if it has one.
pub fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn match_map(
    pattern: &Map<String, Json>,
    v: &Value,
    exact: bool,
    path: &str,
    vars: &Vars,
    caps: &mut Vars,
) -> Result<(), String> {
    let Some(entries) = v.as_map() else {
        return Err(format!("{}: expected a map, found {}", at(path), render(v)));
    };
    for (k, p) in pattern {
        let sub = format!("{path}.{k}");
        match map_get(v, k) {
            Some(field) => match_value(p, field, &sub, vars, caps)?,
            None => return Err(format!("{}: missing", at(&sub))),
        }
    }
    if exact && entries.len() != pattern.len() {
        let extra: Vec<String> = entries
            .iter()
            .filter(|(k, _)| !k.as_str().is_some_and(|k| pattern.contains_key(k)))
            .map(|(k, _)| render(k))
            .collect();
        return Err(format!(
            "{}: unexpected entries {} (use $has to allow more)",
            at(path),
            extra.join(", ")
        ));
    }
    Ok(())
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "message".into()
    } else {
        format!("`{}`", path.trim_start_matches('.'))
    }
}

fn match_value(
    p: &Json,
    v: &Value,
    path: &str,
    vars: &Vars,
    caps: &mut Vars,
) -> Result<(), String> {
    let differ = |what: String| {
        Err(format!(
            "{}: expected {what}, found {}",
            at(path),
            render(v)
        ))
    };
    match p {
        Json::Object(obj) => match special(obj) {
            Some(("$any", t)) => {
                let t = t.as_str().unwrap_or("any");
                if has_type(v, t) {
                    Ok(())
                } else {
                    differ(format!("any {t}"))
                }
            }
            Some(("$capture", name)) => {
                caps.insert(name.as_str().unwrap_or_default().to_owned(), v.clone());
                Ok(())
            }
            Some(("$var", name)) => {
                let name = name.as_str().unwrap_or_default();
                match vars.get(name).or_else(|| caps.get(name)) {
                    Some(want) if values_equal(want, v) => Ok(()),
                    Some(want) => differ(format!("${name} = {}", render(want))),
                    None => Err(format!("{}: variable {name:?} is not set", at(path))),
                }
            }
            Some(("$has", Json::Object(inner))) => match_map(inner, v, false, path, vars, caps),
            Some(("$contains", Json::Array(items))) => {
                let Some(have) = v.as_array() else {
                    return differ("an array".into());
                };
                for item in items {
                    let found = have.iter().any(|h| {
                        let mut scratch = caps.clone();
                        match_value(item, h, path, vars, &mut scratch).is_ok()
                    });
                    if !found {
                        return differ(format!("an array containing {item}"));
                    }
                }
                Ok(())
            }
            Some(("$prefix", Json::String(prefix))) => match v.as_str() {
                Some(s) if s.starts_with(prefix.as_str()) => Ok(()),
                _ => differ(format!("a string starting with {prefix:?}")),
            },
            Some(("$one_of", Json::Array(options))) => {
                for option in options {
                    let mut scratch = caps.clone();
                    if match_value(option, v, path, vars, &mut scratch).is_ok() {
                        *caps = scratch;
                        return Ok(());
                    }
                }
                differ(format!("one of {}", Json::Array(options.clone())))
            }
            Some(("$bin_pattern", n)) => {
                let n = n.as_u64().unwrap_or(0) as usize;
                match v {
                    Value::Binary(b)
                        if b.len() == n
                            && b.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8) =>
                    {
                        Ok(())
                    }
                    Value::Binary(b) if b.len() == n => {
                        let i = b
                            .iter()
                            .enumerate()
                            .position(|(i, &x)| x != (i % 251) as u8)
                            .unwrap_or(0);
                        Err(format!(
                            "{}: binary of {n} bytes differs from the pattern at byte {i}",
                            at(path)
                        ))
                    }
                    _ => differ(format!("binary of {n} bytes (byte i = i % 251)")),
                }
            }
            Some((form, _)) if CORE_FORMS.contains(&form) => literal(p, v, path),
            Some((form, _)) => Err(format!("unknown matcher {form:?}")),
            None => match_map(obj, v, true, path, vars, caps),
        },
        Json::Array(items) => {
            let Some(have) = v.as_array() else {
                return differ(format!("an array of {}", items.len()));
            };
            if have.len() != items.len() {
                return differ(format!("an array of {} items", items.len()));
            }
            for (i, (p, h)) in items.iter().zip(have).enumerate() {
                match_value(p, h, &format!("{path}[{i}]"), vars, caps)?;
            }
            Ok(())
        }
        _ => literal(p, v, path),
    }
}

fn literal(p: &Json, v: &Value, path: &str) -> Result<(), String> {
    let want = dask_core::json::json_to_msgpack(p)
        .map_err(|e| format!("{}: bad literal {p}: {e}", at(path)))
        .and_then(|b| decode(&b))?;
    if values_equal(&want, v) {
        Ok(())
    } else {
        Err(format!(
            "{}: expected {}, found {}",
            at(path),
            render(&want),
            render(v)
        ))
    }
}

fn int128(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

/// Structural equality with integers compared by value, floats of either
/// width compared by value (NaN equal to NaN), maps in any order.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(_), Value::Integer(_)) => int128(a) == int128(b),
        (Value::F32(_) | Value::F64(_), Value::F32(_) | Value::F64(_)) => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x == y || (x.is_nan() && y.is_nan())
        }
        (Value::String(x), Value::String(y)) => x.as_bytes() == y.as_bytes(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .any(|(k2, v2)| values_equal(k, k2) && values_equal(v, v2))
                })
        }
        _ => a == b,
    }
}

/// What a message answers, so that an expectation can fail at once when
/// the worker answers the same thing differently: a reply's `request`, a
/// task outcome's task (`task-finished`, `task-erred`, `missing-data`), a
/// steal answer's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answers {
    /// A reply to a request id.
    Request(u64),
    /// The outcome of running a task.
    Outcome(String),
    /// The answer to stealing a task.
    Steal(String),
}

const OUTCOME_OPS: &[&str] = &["task-finished", "task-erred", "missing-data"];

/// What a received message answers, if anything.
pub fn answers(v: &Value) -> Option<Answers> {
    let op = map_get(v, "op")?.as_str()?;
    if let Some(r) = map_get(v, "request").and_then(Value::as_u64) {
        return Some(Answers::Request(r));
    }
    let task_field = if op == "missing-data" { "task" } else { "key" };
    let key = map_get(v, task_field)?.as_str()?.to_owned();
    if OUTCOME_OPS.contains(&op) {
        Some(Answers::Outcome(key))
    } else if op == "steal-response" {
        Some(Answers::Steal(key))
    } else {
        None
    }
}

/// What a pattern expects an answer to, when its fields say so literally.
pub fn pattern_answers(p: &Map<String, Json>) -> Option<Answers> {
    let op = p.get("op")?.as_str()?;
    if let Some(r) = p.get("request").and_then(Json::as_u64) {
        return Some(Answers::Request(r));
    }
    let task_field = if op == "missing-data" { "task" } else { "key" };
    let key = p.get(task_field)?.as_str()?.to_owned();
    if OUTCOME_OPS.contains(&op) {
        Some(Answers::Outcome(key))
    } else if op == "steal-response" {
        Some(Answers::Steal(key))
    } else {
        None
    }
}

/// A message's `op`, if it has a string one.
pub fn op_of(v: &Value) -> Option<&str> {
    map_get(v, "op")?.as_str()
}

/// Longest rendering of one value in a transcript line.
const RENDER_CHARS_MAX: usize = 600;

/// A short JSON-form rendering for transcripts: long binaries, strings and
/// arrays are cut, with their full size given.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(&mut out, v, 0);
    if out.len() > RENDER_CHARS_MAX {
        let mut cut = RENDER_CHARS_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn hex_prefix(b: &[u8], n: usize) -> String {
    b.iter().take(n).map(|x| format!("{x:02x}")).collect()
}

fn render_into(out: &mut String, v: &Value, depth: usize) {
    if out.len() > RENDER_CHARS_MAX || depth > 20 {
        out.push('…');
        return;
    }
    match v {
        Value::Nil => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::F32(f) => out.push_str(&float(*f as f64)),
        Value::F64(f) => out.push_str(&float(*f)),
        Value::String(s) => match s.as_str() {
            Some(s) if s.chars().count() > 200 => {
                let head: String = s.chars().take(200).collect();
                out.push_str(&format!("{:?}", format!("{head}… ({} bytes)", s.len())));
            }
            Some(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            None => out.push_str(&format!(
                "{{\"$invalid_utf8\": \"{}\"}}",
                hex_prefix(s.as_bytes(), 32)
            )),
        },
        Value::Binary(b) if b.len() > 32 => out.push_str(&format!(
            "{{\"$bin\": \"{}…\" ({} bytes)}}",
            hex_prefix(b, 16),
            b.len()
        )),
        Value::Binary(b) => out.push_str(&format!("{{\"$bin\": \"{}\"}}", hex_prefix(b, 32))),
        Value::Ext(t, data) if *t == TASK_REF_EXT => match std::str::from_utf8(data) {
            Ok(k) => out.push_str(&format!(
                "{{\"$ref\": {}}}",
                serde_json::to_string(k).unwrap_or_default()
            )),
            Err(_) => out.push_str(&format!("{{\"$ext\": [1, \"{}\"]}}", hex_prefix(data, 32))),
        },
        Value::Ext(t, data) => out.push_str(&format!(
            "{{\"$ext\": [{t}, \"{}\"]}}",
            hex_prefix(data, 32)
        )),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if i >= 20 {
                    out.push_str(&format!("… ({} items)", items.len()));
                    break;
                }
                render_into(out, item, depth + 1);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let plain = entries.iter().all(|(k, _)| k.is_str());
            if !plain {
                out.push_str("{\"$map\": [");
            } else {
                out.push('{');
            }
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if i >= 20 {
                    out.push_str(&format!("… ({} entries)", entries.len()));
                    break;
                }
                if plain {
                    render_into(out, k, depth + 1);
                    out.push_str(": ");
                    render_into(out, v, depth + 1);
                } else {
                    out.push('[');
                    render_into(out, k, depth + 1);
                    out.push_str(", ");
                    render_into(out, v, depth + 1);
                    out.push(']');
                }
            }
            out.push_str(if plain { "}" } else { "]}" });
        }
    }
}

fn float(f: f64) -> String {
    if f.is_nan() {
        "{\"$float\": \"NaN\"}".into()
    } else if f.is_infinite() {
        format!(
            "{{\"$float\": \"{}\"}}",
            if f > 0.0 { "inf" } else { "-inf" }
        )
    } else {
        format!("{f:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(j: Json) -> Value {
        decode(&encode(&j, &Vars::new()).unwrap()).unwrap()
    }

    fn pattern(j: Json) -> Map<String, Json> {
        j.as_object().unwrap().clone()
    }

    #[test]
    fn templates_substitute_variables_and_patterns() {
        let mut vars = Vars::new();
        vars.insert("a".into(), Value::from("tcp://x:1"));
        let bytes = encode(&json!({"op": "x", "w": [{"$var": "a"}], "b": {"$bin_pattern": 300}, "r": {"$ref": "k"}}), &vars).unwrap();
        let v = decode(&bytes).unwrap();
        assert_eq!(
            map_get(&v, "w").unwrap().as_array().unwrap()[0].as_str(),
            Some("tcp://x:1")
        );
        assert_eq!(
            map_get(&v, "b").unwrap().as_slice().unwrap(),
            &bin_pattern(300)[..]
        );
        assert_eq!(map_get(&v, "r").unwrap(), &Value::Ext(1, b"k".to_vec()));
        assert!(encode(&json!({"$var": "nope"}), &vars).is_err());
        assert!(encode(&json!({"$nope": 1}), &vars).is_err());
    }

    #[test]
    fn message_patterns_are_partial_and_nested_maps_exact() {
        let v =
            value(json!({"op": "data", "request": 1, "data": {"x": 5}, "missing": [], "extra": 1}));
        let vars = Vars::new();
        assert!(
            match_message(&pattern(json!({"op": "data", "data": {"x": 5}})), &v, &vars).is_ok()
        );
        let e = match_message(&pattern(json!({"op": "data", "data": {"x": 6}})), &v, &vars)
            .unwrap_err();
        assert!(e.contains("`data.x`: expected 6, found 5"), "{e}");
        let v2 = value(json!({"op": "data", "data": {"x": 5, "y": 1}}));
        assert!(match_message(
            &pattern(json!({"op": "data", "data": {"x": 5}})),
            &v2,
            &vars
        )
        .is_err());
        assert!(match_message(
            &pattern(json!({"op": "data", "data": {"$has": {"x": 5}}})),
            &v2,
            &vars
        )
        .is_ok());
    }

    #[test]
    fn numbers_keep_their_kind() {
        let vars = Vars::new();
        let int = value(json!({"op": "o", "v": 4}));
        let float = value(json!({"op": "o", "v": 4.0}));
        assert!(match_message(&pattern(json!({"op": "o", "v": 4})), &int, &vars).is_ok());
        assert!(match_message(&pattern(json!({"op": "o", "v": 4})), &float, &vars).is_err());
        assert!(match_message(&pattern(json!({"op": "o", "v": 4.0})), &float, &vars).is_ok());
        assert!(match_message(
            &pattern(json!({"op": "o", "v": {"$any": "number"}})),
            &float,
            &vars
        )
        .is_ok());
        assert!(match_message(
            &pattern(json!({"op": "o", "v": {"$any": "uint"}})),
            &int,
            &vars
        )
        .is_ok());
    }

    #[test]
    fn matchers_capture_contain_and_choose() {
        let v = value(
            json!({"op": "register-worker", "address": "tcp://127.0.0.1:5", "functions": ["a", "b", "c"], "nthreads": 2}),
        );
        let vars = Vars::new();
        let caps = match_message(
            &pattern(json!({"op": "register-worker", "address": {"$capture": "addr"}, "functions": {"$contains": ["c", "a"]}, "nthreads": {"$one_of": [1, 2]}})),
            &v,
            &vars,
        )
        .unwrap();
        assert_eq!(caps["addr"].as_str(), Some("tcp://127.0.0.1:5"));
        assert!(match_message(
            &pattern(json!({"op": "register-worker", "address": {"$prefix": "tcp://"}})),
            &v,
            &vars
        )
        .is_ok());
        assert!(match_message(
            &pattern(json!({"op": "register-worker", "functions": {"$contains": ["d"]}})),
            &v,
            &vars
        )
        .is_err());
    }

    #[test]
    fn bin_patterns_match_and_say_where_they_differ() {
        let vars = Vars::new();
        let mut b = bin_pattern(1000);
        let ok = Value::Map(vec![
            (Value::from("op"), Value::from("o")),
            (Value::from("v"), Value::Binary(b.clone())),
        ]);
        assert!(match_message(
            &pattern(json!({"op": "o", "v": {"$bin_pattern": 1000}})),
            &ok,
            &vars
        )
        .is_ok());
        b[700] ^= 1;
        let bad = Value::Map(vec![
            (Value::from("op"), Value::from("o")),
            (Value::from("v"), Value::Binary(b)),
        ]);
        let e = match_message(
            &pattern(json!({"op": "o", "v": {"$bin_pattern": 1000}})),
            &bad,
            &vars,
        )
        .unwrap_err();
        assert!(e.contains("byte 700"), "{e}");
    }

    #[test]
    fn answers_pair_replies_and_outcomes() {
        let finished = value(json!({"op": "task-finished", "key": "x", "nbytes": 1}));
        let erred = pattern(json!({"op": "task-erred", "key": "x"}));
        assert_eq!(answers(&finished), pattern_answers(&erred));
        let missing =
            value(json!({"op": "missing-data", "key": "dep", "task": "x", "addresses": []}));
        assert_eq!(answers(&missing), Some(Answers::Outcome("x".into())));
        let busy = value(json!({"op": "busy", "request": 3}));
        assert_eq!(
            answers(&busy),
            pattern_answers(&pattern(json!({"op": "data", "request": 3})))
        );
        assert_eq!(answers(&value(json!({"op": "heartbeat"}))), None);
    }

    #[test]
    fn renderings_are_short() {
        let v = Value::Binary(vec![7; 1 << 20]);
        let r = render(&v);
        assert!(r.len() < 100 && r.contains("1048576 bytes"), "{r}");
        assert_eq!(
            render(&value(json!({"a": [1, 2.5, null, {"$ref": "k"}]}))),
            r#"{"a": [1, 2.5, null, {"$ref": "k"}]}"#
        );
    }
}
