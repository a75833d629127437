//! The JSON Schema of every message, generated from the types in
//! [`crate::messages`]; `spec/schema/dask-1.schema.json` is this output.
//!
//! Beside standard JSON Schema, each field's schema carries what the
//! field tables of `spec/PROTOCOL.md` say about it, so that a test can
//! hold the tables to the code: `x-dask-type` (the field's type in the
//! spec's notation, e.g. `map<key, array<str>>`), `x-since` (the dask/1
//! minor version it exists since) and `x-ignorable` (whether a receiver
//! may ignore it). Each message carries its `x-since` too.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::messages::Message;

/// The version of fields and messages that do not say otherwise.
const SINCE_DEFAULT: &str = "1.0";

/// A wire type's name in the notation of the spec's field tables
/// (`spec/PROTOCOL.md#conventions`).
pub trait WireType {
    /// E.g. `uint64`, `array<key>`, `map<key, value>`, `TaskSpec`.
    fn wire_type() -> String;
}

macro_rules! wire_type_names {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl WireType for $t {
            fn wire_type() -> String {
                $name.to_owned()
            }
        }
    )*};
}
wire_type_names!(
    bool => "bool",
    u32 => "uint32",
    u64 => "uint64",
    i64 => "int64",
    f64 => "float",
    String => "str",
    crate::wire::Key => "key",
    crate::msgpack::RawValue => "value",
    crate::messages::Version => "version",
    crate::messages::Role => "role",
);

impl<T: WireType> WireType for Option<T> {
    fn wire_type() -> String {
        T::wire_type()
    }
}

impl<T: WireType> WireType for Vec<T> {
    fn wire_type() -> String {
        format!("array<{}>", T::wire_type())
    }
}

impl<K: WireType, V: WireType> WireType for BTreeMap<K, V> {
    fn wire_type() -> String {
        format!("map<{}, {}>", K::wire_type(), V::wire_type())
    }
}

/// Applied to every field's schema by `wire_struct!`: records its
/// `x-dask-type`, and names the key schema of maps keyed by keys (plain
/// JSON Schema would not tell `map<key, T>` from `map<str, T>`).
#[doc(hidden)]
pub fn describe_field<T: WireType>(schema: &mut schemars::Schema) {
    let wire_type = T::wire_type();
    if wire_type.starts_with("map<key,") {
        schema.insert("propertyNames".into(), json!({"$ref": "#/$defs/Key"}));
    }
    schema.insert("x-dask-type".into(), Json::String(wire_type));
}

/// The whole schema document, pretty-printed with a trailing newline.
pub fn generate() -> String {
    let mut g = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut messages = Vec::new();
    for (op, schema) in Message::schemas(&mut g) {
        let name = schema
            .as_object()
            .and_then(|o| o.get("$ref"))
            .and_then(Json::as_str)
            .map(str::to_owned);
        messages.push((op, name));
    }
    let mut defs = serde_json::Map::new();
    for (name, schema) in g.take_definitions(true) {
        defs.insert(name, schema);
    }
    // Each message's definition gets its `op` as the first, required property.
    let mut one_of = Vec::new();
    for (op, reference) in messages {
        let Some(reference) = reference else { continue };
        let def_name = reference.trim_start_matches("#/$defs/").to_owned();
        if let Some(Json::Object(def)) = defs.get_mut(&def_name) {
            let mut props = serde_json::Map::new();
            props.insert("op".into(), json!({"const": op}));
            if let Some(Json::Object(old)) = def.remove("properties") {
                props.extend(old);
            }
            def.insert("properties".into(), Json::Object(props));
            let mut required = vec![json!("op")];
            if let Some(Json::Array(old)) = def.remove("required") {
                required.extend(old);
            }
            def.insert("required".into(), Json::Array(required));
        }
        one_of.push(json!({"$ref": reference}));
    }
    defs.values_mut().for_each(add_defaults);
    let doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dask-rs.dev/spec/dask-1/dask-1.schema.json",
        "title": "dask/1 message",
        "description": "One dask/1 message in its JSON form (see spec/PROTOCOL.md, 'JSON form'). Generated from core/src/messages/: do not edit. Each message and field has `x-since`, the dask/1 version it exists since; each field has `x-dask-type`, its type in the notation of PROTOCOL.md's field tables, and `x-ignorable`, whether a receiver may ignore it.",
        "oneOf": one_of,
        "$defs": defs,
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// Gives a struct's definition, and each of its fields, the `x-since`
/// and `x-ignorable` they do not state: dask/1.0, not ignorable. A struct
/// exists since the earliest version of its fields (a message whose fields
/// all came in 1.1 is a message of 1.1).
fn add_defaults(def: &mut Json) {
    let Some(def) = def.as_object_mut() else {
        return;
    };
    let Some(Json::Object(props)) = def.get_mut("properties") else {
        return;
    };
    let mut earliest: Option<(u32, u32)> = None;
    for (name, prop) in props.iter_mut() {
        let Some(prop) = prop.as_object_mut() else {
            continue;
        };
        let since = prop
            .entry("x-since")
            .or_insert_with(|| json!(SINCE_DEFAULT))
            .as_str()
            .and_then(|v| v.split_once('.'))
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        prop.entry("x-ignorable").or_insert_with(|| json!(false));
        if name != "op" {
            earliest = match (earliest, since) {
                (Some(e), Some(s)) => Some(e.min(s)),
                (e, s) => e.or(s),
            };
        }
    }
    let since = earliest.map_or_else(|| SINCE_DEFAULT.to_owned(), |(a, b)| format!("{a}.{b}"));
    def.entry("x-since").or_insert_with(|| json!(since));
}
