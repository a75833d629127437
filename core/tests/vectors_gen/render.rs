//! Rendering: one case per block, JSON forms on one line.

use serde_json::Value as Json;

pub(super) fn render(doc: &Json) -> String {
    let mut out = String::new();
    render_into(&mut out, doc, 0, "");
    out.push('\n');
    out
}

pub(super) fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

pub(super) fn render_into(out: &mut String, v: &Json, depth: usize, key: &str) {
    let expand_strings = matches!(key, "msgpack" | "frame") && v.is_array();
    match v {
        Json::Object(obj) if depth < 3 && !obj.is_empty() => {
            out.push_str("{\n");
            for (i, (k, item)) in obj.iter().enumerate() {
                indent(out, depth + 1);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                render_into(out, item, depth + 1, k);
                out.push_str(if i + 1 < obj.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push('}');
        }
        Json::Array(items)
            if !items.is_empty()
                && ((depth < 2 && items.iter().all(Json::is_object)) || expand_strings) =>
        {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                render_into(out, item, depth + 1, "");
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push(']');
        }
        other => out.push_str(&inline(other)),
    }
}

/// Compact JSON with a space after each `:` and `,`.
pub fn inline(v: &Json) -> String {
    match v {
        Json::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(inline).collect::<Vec<_>>().join(", ")
            )
        }
        Json::Object(obj) => format!(
            "{{{}}}",
            obj.iter()
                .map(|(k, item)| format!("{}: {}", Json::String(k.clone()), inline(item)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
