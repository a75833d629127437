//! The JSON Schema of every message, generated from the types in
//! [`crate::messages`]; `spec/schema/dask-1.schema.json` is this output.

use serde_json::{json, Value as Json};

use crate::messages::Message;

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
    let doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dask-rs.dev/spec/dask-1/dask-1.schema.json",
        "title": "dask/1 message",
        "description": "One dask/1 message in its JSON form (see spec/PROTOCOL.md, 'JSON form'). Generated from core/src/messages.rs: do not edit.",
        "oneOf": one_of,
        "$defs": defs,
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
