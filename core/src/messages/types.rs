//! The field types messages share: the protocol version, the connection's
//! role, and fixed and free-length binaries.

use super::*;

/// A protocol version: `[major, minor]` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Peers with different majors cannot talk.
    pub major: u32,
    /// Peers speak the lower of their minors.
    pub minor: u32,
}

impl Wire for Version {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::array_len(w, 2);
        write::uint(w, self.major as u64);
        write::uint(w, self.minor as u64);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        if r.read_array_len()? != 2 {
            return Err(WireError::wrong_type(
                "[major, minor]",
                "array of another length",
            ));
        }
        Ok(Version {
            major: u32::read(r)?,
            minor: u32::read(r)?,
        })
    }
}

impl schemars::JsonSchema for Version {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Version".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "[major, minor]",
            "type": "array",
            "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 0}],
            "items": false,
            "minItems": 2
        })
    }
}

wire_enum! {
    /// What a connection is for, declared in `hello`.
    pub enum Role {
        /// A program that submits graphs and reads results (connects to the scheduler).
        Client = "client",
        /// A worker registering with the scheduler.
        Worker = "worker",
        /// Anything that connects to a worker's data address to fetch data.
        Peer = "peer",
        /// The scheduler, in its `hello` reply.
        Scheduler = "scheduler",
    }
}

/// 32 bytes, a msgpack bin of exactly that length (a nonce or a proof).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bin32(pub [u8; 32]);

impl std::fmt::Debug for Bin32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bin32(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Wire for Bin32 {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::bin(w, &self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let bytes = r.read_bin()?;
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            WireError::wrong_type(
                "a bin of 32 bytes",
                &format!("a bin of {} bytes", bytes.len()),
            )
        })?;
        Ok(Bin32(array))
    }
}

impl schemars::JsonSchema for Bin32 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bin32".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "32 bytes: a msgpack bin of exactly 32 bytes; its JSON form is {\"$bin\": 64 hex digits}.",
            "type": "object",
            "patternProperties": {"^\\$bin$": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
            "required": ["$bin"],
            "additionalProperties": false
        })
    }
}

/// Binary data of any length, a msgpack bin (the bytes of a value in
/// parts). Large ones share the frame they were read from and are written
/// from where they are kept, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin(pub bytes::Bytes);

impl Wire for Bin {
    fn write(&self, w: &mut WriteBuf<'_>) {
        w.shared_bin(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.read_bin_shared().map(Bin)
    }
}

impl schemars::JsonSchema for Bin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bin".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Binary data: a msgpack bin (bin 8, 16 or 32); its JSON form is {\"$bin\": hex}.",
            "type": "object",
            "patternProperties": {"^\\$bin$": {"type": "string", "pattern": "^([0-9a-f]{2})*$"}},
            "required": ["$bin"],
            "additionalProperties": false
        })
    }
}

impl crate::schema::WireType for Bin {
    fn wire_type() -> String {
        "bin".to_owned()
    }
}

impl crate::schema::WireType for Bin32 {
    fn wire_type() -> String {
        "bin32".to_owned()
    }
}
