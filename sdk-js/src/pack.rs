//! The msgpack that crosses the JS <-> wasm boundary (not the wire).
//!
//! JS hands commands in as msgpack maps (its own value codec encodes
//! them), and gets replies, drained events and actions back as msgpack
//! maps. Reading goes through core's [`FieldTable`], so a command is held
//! to the same rules as a wire message: a map with string keys, at most 64
//! entries, nesting bounded, every value checked before it is used.
//! Values embedded in a command (task arguments, scattered data) are kept
//! as their bytes and checked with [`RawValue::read`].

use dask_core::msgpack::{write, Reader, WriteBuf};
use dask_core::wire::{FieldTable, Wire};
use dask_core::WireError;

/// A command or configuration map from JS.
pub struct Command<'a> {
    table: FieldTable<'a>,
}

impl<'a> Command<'a> {
    /// Reads exactly one map from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Command<'a>, String> {
        let mut r = Reader::new(bytes);
        let table = FieldTable::read(&mut r).map_err(|e| format!("command: {e}"))?;
        if r.remaining() != 0 {
            return Err("command: bytes after the map".into());
        }
        Ok(Command { table })
    }

    /// Field `name`, absent fields as [`Wire::absent`] (`None` for options).
    pub fn field<T: Wire>(&self, name: &str) -> Result<T, String> {
        self.table.field(name).map_err(describe)
    }

    /// The encoded bytes of field `name`, when present and not nil.
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.table.raw(name).filter(|b| *b != [0xc0])
    }

    /// A list of maps in field `name` (absent: empty), each as a command.
    pub fn list(&self, name: &str) -> Result<Vec<Command<'a>>, String> {
        let Some(bytes) = self.raw(name) else {
            return Ok(Vec::new());
        };
        let mut r = Reader::new(bytes);
        let len = r.read_array_len().map_err(|e| describe(e.in_field(name)))?;
        let mut out = Vec::with_capacity(len.min(1024));
        for i in 0..len {
            let table = FieldTable::read(&mut r)
                .map_err(|e| describe(e.in_field(&format!("{name}[{i}]"))))?;
            out.push(Command { table });
        }
        Ok(out)
    }

    /// A time in milliseconds (any number) in field `name`.
    pub fn millis(&self, name: &str) -> Result<f64, String> {
        let bytes = self
            .table
            .raw(name)
            .ok_or_else(|| format!("command: missing field `{name}`"))?;
        let mut r = Reader::new(bytes);
        match r.peek().map_err(describe)? {
            0xca | 0xcb => r.read_f64().map_err(describe),
            _ => r
                .read_int()
                .map(|i| i as f64)
                .map_err(|e| describe(e.in_field(name))),
        }
    }
}

fn describe(e: WireError) -> String {
    format!("command: {e}")
}

/// Builds one msgpack map whose entry count is known up front.
pub struct MapWriter<'w> {
    out: &'w mut Vec<u8>,
}

impl<'w> MapWriter<'w> {
    /// Writes the header of a map of `entries` entries.
    pub fn new(out: &'w mut Vec<u8>, entries: usize) -> MapWriter<'w> {
        write::map_len(out, entries);
        MapWriter { out }
    }

    /// A string entry.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        write::str(self.out, name);
        write::str(self.out, value);
        self
    }

    /// An unsigned integer entry.
    pub fn uint(&mut self, name: &str, value: u64) -> &mut Self {
        write::str(self.out, name);
        write::uint(self.out, value);
        self
    }

    /// A boolean entry.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        write::str(self.out, name);
        write::bool(self.out, value);
        self
    }

    /// A float entry, or nil.
    pub fn f64_or_nil(&mut self, name: &str, value: Option<f64>) -> &mut Self {
        write::str(self.out, name);
        match value {
            Some(v) => write::f64(self.out, v),
            None => write::nil(self.out),
        }
        self
    }

    /// An entry whose value is a string or nil.
    pub fn str_or_nil(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        write::str(self.out, name);
        match value {
            Some(v) => write::str(self.out, v),
            None => write::nil(self.out),
        }
        self
    }

    /// An entry holding any [`Wire`] value.
    pub fn wire<T: Wire>(&mut self, name: &str, value: &T) -> &mut Self {
        write::str(self.out, name);
        value.write(&mut WriteBuf::new(self.out));
        self
    }

    /// An entry whose value `f` writes (exactly one msgpack object).
    pub fn with(&mut self, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        write::str(self.out, name);
        f(self.out);
        self
    }
}

/// The msgpack of a map `{name: value}` with string entries only.
pub fn string_map(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut m = MapWriter::new(&mut out, entries.len());
    for (k, v) in entries {
        m.str(k, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_fields_lists_and_times() {
        let mut bytes = Vec::new();
        MapWriter::new(&mut bytes, 4)
            .str("cmd", "x")
            .with("tasks", |w| {
                write::array_len(w, 1);
                write::map_len(w, 1);
                write::str(w, "function");
                write::str(w, "inc");
            })
            .with("now_ms", |w| write::f64(w, 2.5))
            .uint("n", 7);
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.field::<String>("cmd").unwrap(), "x");
        assert_eq!(c.field::<Option<u64>>("absent").unwrap(), None);
        assert_eq!(c.millis("now_ms").unwrap(), 2.5);
        assert_eq!(c.millis("n").unwrap(), 7.0);
        let tasks = c.list("tasks").unwrap();
        assert_eq!(tasks[0].field::<String>("function").unwrap(), "inc");
        assert!(c.field::<String>("n").unwrap_err().contains("n"));
    }

    #[test]
    fn anything_but_one_map_is_refused() {
        assert!(Command::parse(&[0x90]).is_err());
        assert!(Command::parse(&[0x80, 0x80]).is_err());
        assert!(Command::parse(&[]).is_err());
        assert!(Command::parse(&[0x81, 0xa1, b'a']).is_err());
    }
}
