//! The field tables of `spec/PROTOCOL.md` against the generated schema:
//! every message and struct has one table, whose rows are the schema's
//! fields in encoding order, each with the schema's type (`x-dask-type`,
//! itself checked against the plain JSON Schema), required-ness, version
//! (`x-since`), ignorability (`x-ignorable`) and description (the field's
//! doc comment: the Meaning, then "Absent: ..." for an optional field).
//! So the prose cannot drift from `core/src/messages/`.

use std::path::PathBuf;

use serde_json::{Map, Value as Json};

/// The header of a field table in the message reference.
const FIELD_TABLE_HEADER: &str =
    "| Field | Type | Req. | Absent means | Since | Ignorable | Meaning |";

/// One row of a field table.
#[derive(Debug)]
struct Row {
    line: usize,
    field: String,
    wire_type: String,
    required: bool,
    absent_means: String,
    since: String,
    ignorable: bool,
    meaning: String,
}

/// Whose table it is.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    /// `#### op` heading.
    Message(String),
    /// A "`Name`:" line (a struct nested in messages).
    Struct(String),
}

struct Table {
    owner: Owner,
    line: usize,
    /// The text between the owner's heading (or line) and the table.
    preamble: String,
    rows: Vec<Row>,
}

fn protocol_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn code_span(cell: &str, line: usize) -> String {
    cell.strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| panic!("PROTOCOL.md:{line}: expected a `code` cell, found {cell:?}"))
        .to_owned()
}

fn yes_no(cell: &str, line: usize) -> bool {
    match cell {
        "yes" => true,
        "no" => false,
        other => panic!("PROTOCOL.md:{line}: expected yes or no, found {other:?}"),
    }
}

fn parse_row(text: &str, line: usize) -> Row {
    let cells: Vec<&str> = text
        .trim()
        .strip_prefix('|')
        .and_then(|t| t.strip_suffix('|'))
        .unwrap_or(text)
        .split('|')
        .map(str::trim)
        .collect();
    assert!(
        cells.len() == 7,
        "PROTOCOL.md:{line}: a field row has 7 cells, this one {}: {text}",
        cells.len()
    );
    Row {
        line,
        field: code_span(cells[0], line),
        wire_type: code_span(cells[1], line),
        required: yes_no(cells[2], line),
        absent_means: cells[3].to_owned(),
        since: cells[4].to_owned(),
        ignorable: yes_no(cells[5], line),
        meaning: cells[6].to_owned(),
    }
}

/// Every field table of the message reference, with its owner.
fn field_tables(doc: &str) -> Vec<Table> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut tables = Vec::new();
    let mut owner: Option<(Owner, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(op) = line.strip_prefix("#### ") {
            owner = Some((Owner::Message(op.trim().to_owned()), i));
        } else if line.starts_with('#') {
            owner = None;
        } else if let Some(name) = line.strip_prefix('`').and_then(|l| l.strip_suffix("`:")) {
            owner = Some((Owner::Struct(name.to_owned()), i));
        } else if line == FIELD_TABLE_HEADER {
            let (who, from) = owner
                .take()
                .unwrap_or_else(|| panic!("PROTOCOL.md:{}: a field table with no owner (a `#### op` heading or a \"`Struct`:\" line before it)", i + 1));
            let preamble = lines[from + 1..i].join("\n");
            let start = i + 1;
            i += 2; // header and separator
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].starts_with('|') {
                rows.push(parse_row(lines[i], i + 1));
                i += 1;
            }
            tables.push(Table {
                owner: who,
                line: start,
                preamble,
                rows,
            });
            continue;
        }
        i += 1;
    }
    tables
}

/// The spec type in the schema's notation (`Resources` is the spec's
/// name for `map<str, float>`).
fn normalized(spec_type: &str) -> String {
    spec_type.replace("Resources", "map<str, float>")
}

/// A property's schema without the nil an optional field may hold.
fn without_null(prop: &Map<String, Json>) -> Map<String, Json> {
    let mut p = prop.clone();
    if let Some(Json::Array(any)) = p.get("anyOf") {
        let rest: Vec<&Json> = any.iter().filter(|s| s["type"] != "null").collect();
        if let [one] = rest[..] {
            let one = one.as_object().cloned().unwrap_or_default();
            p.remove("anyOf");
            p.extend(one);
        }
    }
    if let Some(Json::Array(types)) = p.get("type") {
        let rest: Vec<Json> = types.iter().filter(|t| *t != "null").cloned().collect();
        if let [one] = &rest[..] {
            p.insert("type".into(), one.clone());
        }
    }
    p
}

/// The spec-notation type a plain JSON Schema describes.
fn type_of_schema(schema: &Json) -> String {
    let s = without_null(schema.as_object().expect("a schema is an object"));
    if let Some(r) = s.get("$ref").and_then(Json::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return match name {
            "Key" => "key",
            "Value" => "value",
            "Version" => "version",
            "Role" => "role",
            "Bin32" => "bin32",
            "Bin" => "bin",
            other => other,
        }
        .to_owned();
    }
    match s.get("type").and_then(Json::as_str) {
        Some("boolean") => "bool".into(),
        Some("string") => "str".into(),
        Some("number") => "float".into(),
        Some("integer") => s["format"].as_str().unwrap_or("integer").to_owned(),
        Some("array") => format!("array<{}>", type_of_schema(&s["items"])),
        Some("object") => {
            let key = if s.get("propertyNames").map(type_of_schema).as_deref() == Some("key") {
                "key"
            } else {
                "str"
            };
            format!("map<{key}, {}>", type_of_schema(&s["additionalProperties"]))
        }
        other => panic!("no spec type for schema {other:?}: {s:?}"),
    }
}

/// The schema's definitions by name, and each message's definition name
/// by op.
fn schema() -> (Map<String, Json>, Vec<(String, String)>) {
    let doc: Json = serde_json::from_str(&dask_core::schema::generate()).expect("schema is JSON");
    let defs = doc["$defs"].as_object().cloned().expect("$defs");
    let ops = defs
        .iter()
        .filter_map(|(name, def)| {
            let op = def["properties"]["op"]["const"].as_str()?;
            Some((op.to_owned(), name.clone()))
        })
        .collect();
    (defs, ops)
}

/// What is wrong with one table against its definition.
fn compare(table: &Table, def: &Json, problems: &mut Vec<String>) {
    let at = |line: usize| format!("PROTOCOL.md:{line} ({:?})", table.owner);
    let props = def["properties"].as_object().cloned().unwrap_or_default();
    let required: Vec<&str> = def["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let schema_fields: Vec<&String> = props.keys().filter(|k| *k != "op").collect();
    let table_fields: Vec<&String> = table.rows.iter().map(|r| &r.field).collect();
    if schema_fields != table_fields {
        problems.push(format!(
            "{}: fields {table_fields:?}, the schema (in encoding order) has {schema_fields:?}",
            at(table.line)
        ));
    }
    let since = def["x-since"].as_str().unwrap_or("?");
    if since != "1.0" && !table.preamble.contains(&format!("Since dask/{since}")) {
        problems.push(format!(
            "{}: the schema says it exists since {since}; the text before its table should say \"Since dask/{since}\"",
            at(table.line)
        ));
    }
    for row in &table.rows {
        let Some(prop) = props.get(&row.field) else {
            continue;
        };
        let field = &row.field;
        let declared = prop["x-dask-type"].as_str().unwrap_or("?");
        let shape = type_of_schema(prop);
        if declared != shape {
            problems.push(format!(
                "schema field {field}: x-dask-type {declared:?} but its JSON Schema is a {shape:?}"
            ));
        }
        if normalized(&row.wire_type) != declared {
            problems.push(format!(
                "{}: `{field}` has type `{}`, the schema `{declared}`",
                at(row.line),
                row.wire_type
            ));
        }
        let schema_required = required.contains(&field.as_str());
        if row.required != schema_required {
            problems.push(format!(
                "{}: `{field}` Req. {}, the schema {}",
                at(row.line),
                if row.required { "yes" } else { "no" },
                if schema_required {
                    "requires it"
                } else {
                    "has it optional"
                }
            ));
        }
        if row.required && !row.absent_means.is_empty() {
            problems.push(format!(
                "{}: `{field}` is required, so it has no \"Absent means\" (found {:?})",
                at(row.line),
                row.absent_means
            ));
        }
        if !row.required && row.absent_means.is_empty() {
            problems.push(format!(
                "{}: `{field}` is optional: \"Absent means\" must say what its absence means",
                at(row.line)
            ));
        }
        let schema_since = prop["x-since"].as_str().unwrap_or("?");
        if row.since != schema_since {
            problems.push(format!(
                "{}: `{field}` since {}, the schema since {schema_since}",
                at(row.line),
                row.since
            ));
        }
        let mut doc = row.meaning.clone();
        if !row.required {
            doc += &format!(" Absent: {}.", row.absent_means);
        }
        let description = prop["description"].as_str().unwrap_or("");
        let description = description.split_whitespace().collect::<Vec<_>>().join(" ");
        if description != doc {
            problems.push(format!(
                "{}: `{field}`'s doc comment should be the table's Meaning (and \"Absent: ...\" when optional):\n    table: {doc}\n    code:  {description}",
                at(row.line)
            ));
        }
        let schema_ignorable = prop["x-ignorable"].as_bool().unwrap_or(false);
        if row.ignorable != schema_ignorable {
            problems.push(format!(
                "{}: `{field}` Ignorable {}, the schema {schema_ignorable}",
                at(row.line),
                if row.ignorable { "yes" } else { "no" }
            ));
        }
    }
}

#[test]
fn field_tables_match_the_schema() {
    let doc = protocol_md();
    let tables = field_tables(&doc);
    let (defs, ops) = schema();
    let mut problems = Vec::new();
    let mut covered = Vec::new();
    for table in &tables {
        let def_name = match &table.owner {
            Owner::Message(op) => match ops.iter().find(|(o, _)| o == op) {
                Some((_, name)) => name.clone(),
                None => {
                    problems.push(format!(
                        "PROTOCOL.md:{}: `#### {op}` has a field table but the schema has no such op",
                        table.line
                    ));
                    continue;
                }
            },
            Owner::Struct(name) => name.clone(),
        };
        let Some(def) = defs.get(&def_name) else {
            problems.push(format!(
                "PROTOCOL.md:{}: the schema has no definition {def_name}",
                table.line
            ));
            continue;
        };
        if covered.contains(&def_name) {
            problems.push(format!(
                "PROTOCOL.md:{}: a second table for {def_name}",
                table.line
            ));
        }
        covered.push(def_name);
        compare(table, def, &mut problems);
    }
    // Every struct of the wire (messages and nested structs) has its table.
    for (name, def) in &defs {
        if def.get("properties").is_some() && !covered.contains(name) {
            problems.push(format!(
                "the schema's {name} has no field table in PROTOCOL.md"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "spec/PROTOCOL.md's field tables disagree with the schema generated from core/src/messages/:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checker_finds_drift() {
    let doc = "#### ok\n\nText.\n\n".to_owned()
        + FIELD_TABLE_HEADER
        + "\n|---|---|---|---|---|---|---|\n\
           | `request` | `uint32` | no | | 1.1 | yes | Wrong on every count. |\n\
           | `extra` | `str` | yes | | 1.0 | no | Not in the schema. |\n";
    let tables = field_tables(&doc);
    let (defs, _) = schema();
    let mut problems = Vec::new();
    compare(&tables[0], &defs["OkReply"], &mut problems);
    let all = problems.join("\n");
    for needle in [
        "fields [\"request\", \"extra\"]",
        "has type `uint32`, the schema `uint64`",
        "Req. no, the schema requires it",
        "is optional: \"Absent means\" must say",
        "since 1.1, the schema since 1.0",
        "Ignorable yes, the schema false",
        "doc comment should be the table's Meaning",
    ] {
        assert!(all.contains(needle), "missed {needle:?} in:\n{all}");
    }
}
