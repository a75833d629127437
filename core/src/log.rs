//! Operator log records: what a state machine tells the person running
//! it (a worker joined, a connection was refused, a task erred), with a
//! level, and their two written forms (a text line, a JSON object).
//!
//! Pure: a state machine queues [`LogRecord`]s; the edge (`dask-net`'s
//! `Logger`) filters them by level, adds the wall-clock time and writes
//! them. One record per event an operator cares about, never one per task
//! at the default level.

use std::fmt::{self, Write as _};

/// How much a record matters; a logger shows its level and those above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Every task and message (tracing).
    Debug,
    /// Events an operator cares about: joins, departures, refusals.
    Info,
    /// Something is wrong but the process goes on (a task erred, a worker
    /// declared dead, a slow event).
    Warn,
    /// The process cannot do what it was asked.
    Error,
}

impl Level {
    /// The level's name, lowercase: `debug`, `info`, `warn`, `error`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// Reads a level's name (either case; `warning` too).
    pub fn from_name(name: &str) -> Option<Level> {
        match name.to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value of a record's field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Text.
    Str(String),
    /// A count, an id, a number of bytes.
    U64(u64),
    /// A duration in seconds, a fraction.
    F64(f64),
}

impl From<String> for FieldValue {
    fn from(s: String) -> FieldValue {
        FieldValue::Str(s)
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> FieldValue {
        FieldValue::Str(s.to_owned())
    }
}

impl From<u64> for FieldValue {
    fn from(n: u64) -> FieldValue {
        FieldValue::U64(n)
    }
}

impl From<u32> for FieldValue {
    fn from(n: u32) -> FieldValue {
        FieldValue::U64(n.into())
    }
}

impl From<f64> for FieldValue {
    fn from(x: f64) -> FieldValue {
        FieldValue::F64(x)
    }
}

/// One thing that happened, for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// How much it matters.
    pub level: Level,
    /// What happened, as a stable kebab-case name (`worker-joined`,
    /// `connection-refused`): what a program reading JSON logs matches on.
    pub event: &'static str,
    /// The sentence a person reads.
    pub message: String,
    /// The same facts as named values (JSON logs carry them).
    pub fields: Vec<(&'static str, FieldValue)>,
}

impl LogRecord {
    /// A record without fields.
    pub fn new(level: Level, event: &'static str, message: impl Into<String>) -> LogRecord {
        LogRecord {
            level,
            event,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, name: &'static str, value: impl Into<FieldValue>) -> LogRecord {
        self.fields.push((name, value.into()));
        self
    }

    /// The text form: `TIME LEVEL COMPONENT: message` (one line; line
    /// breaks in the message are written as `\n`).
    pub fn to_text(&self, time: &str, component: &str) -> String {
        let mut line = format!(
            "{time} {:<5} {component}: ",
            self.level.name().to_ascii_uppercase()
        );
        for c in self.message.chars() {
            match c {
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                c => line.push(c),
            }
        }
        line
    }

    /// The JSON form, one object on one line: `time`, `level`,
    /// `component`, `event`, `message`, then the fields.
    pub fn to_json(&self, time: &str, component: &str) -> String {
        let mut out = String::with_capacity(96 + self.message.len());
        out.push('{');
        let mut first = true;
        let mut entry = |out: &mut String, name: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            json_string(out, name);
            out.push(':');
        };
        for (name, value) in [
            ("time", time),
            ("level", self.level.name()),
            ("component", component),
            ("event", self.event),
            ("message", self.message.as_str()),
        ] {
            entry(&mut out, name);
            json_string(&mut out, value);
        }
        for (name, value) in &self.fields {
            entry(&mut out, name);
            match value {
                FieldValue::Str(s) => json_string(&mut out, s),
                FieldValue::U64(n) => {
                    let _ = write!(out, "{n}");
                }
                FieldValue::F64(x) if x.is_finite() => {
                    let _ = write!(out, "{x}");
                }
                FieldValue::F64(_) => out.push_str("null"),
            }
        }
        out.push('}');
        out
    }
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_line_and_json_parses_with_every_field() {
        let r = LogRecord::new(
            Level::Warn,
            "task-erred",
            "task \"x\"\nerred: ZeroDivisionError",
        )
        .with("key", "x\u{1}")
        .with("nbytes", 12u64)
        .with("seconds", 0.5)
        .with("bad", f64::NAN);
        let text = r.to_text("2026-12-05T11:00:00.000Z", "dask-scheduler");
        assert_eq!(
            text,
            "2026-12-05T11:00:00.000Z WARN  dask-scheduler: task \"x\"\\nerred: ZeroDivisionError"
        );
        let json: serde_json::Value =
            serde_json::from_str(&r.to_json("T", "dask-scheduler")).unwrap();
        assert_eq!(json["level"], "warn");
        assert_eq!(json["event"], "task-erred");
        assert_eq!(json["message"], "task \"x\"\nerred: ZeroDivisionError");
        assert_eq!(json["key"], "x\u{1}");
        assert_eq!(json["nbytes"], 12);
        assert_eq!(json["seconds"], 0.5);
        assert!(json["bad"].is_null());
    }

    #[test]
    fn levels_order_and_names_round_trip() {
        assert!(Level::Debug < Level::Info && Level::Info < Level::Warn);
        for l in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
            assert_eq!(Level::from_name(l.name()), Some(l));
        }
        assert_eq!(Level::from_name("WARNING"), Some(Level::Warn));
        assert_eq!(Level::from_name("verbose"), None);
    }
}
