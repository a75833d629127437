//! Error codes of dask/1 and the decoder's error type.
//!
//! Codes are numbered by family (spec: "Error codes"): 1xxx framing,
//! 2xxx messages, 3xxx handshake, 4xxx graphs and keys, 5xxx workers and data.
//! A code once published is never reused for another meaning.

use std::fmt;

/// Every error code of dask/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// The bytes of a frame are not a msgpack array of maps.
    MalformedFrame = 1001,
    /// A frame's length prefix is larger than the receiver's limit.
    FrameTooLarge = 1002,
    /// A message has an `op` this version does not define.
    UnknownOp = 2001,
    /// A message lacks a required field.
    MissingField = 2002,
    /// A field holds a value of the wrong type or out of range.
    WrongType = 2003,
    /// A well-formed message that is not allowed here (wrong role or state).
    UnexpectedMessage = 2004,
    /// The peers' major versions differ.
    VersionMismatch = 3001,
    /// The first message is not a valid `hello`.
    BadHandshake = 3002,
    /// Authentication failed (reserved: dask/1.0 defines no authentication).
    AuthFailed = 3003,
    /// A worker registers with a name a live worker already has.
    NameInUse = 3004,
    /// A key named in a request is not known to the receiver.
    UnknownKey = 4001,
    /// A key is submitted again with a different definition.
    DuplicateKey = 4002,
    /// The tasks of a graph depend on each other in a cycle.
    Cycle = 4003,
    /// A dataset name is not published.
    UnknownDataset = 4004,
    /// A dataset name is already published.
    DatasetExists = 4005,
    /// No worker can ever hold the data (scatter with no worker connected).
    NoWorkers = 5001,
    /// A result is too large to fit in one frame.
    ValueTooLarge = 5002,
}

impl ErrorCode {
    /// All codes, in numeric order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownOp,
        ErrorCode::MissingField,
        ErrorCode::WrongType,
        ErrorCode::UnexpectedMessage,
        ErrorCode::VersionMismatch,
        ErrorCode::BadHandshake,
        ErrorCode::AuthFailed,
        ErrorCode::NameInUse,
        ErrorCode::UnknownKey,
        ErrorCode::DuplicateKey,
        ErrorCode::Cycle,
        ErrorCode::UnknownDataset,
        ErrorCode::DatasetExists,
        ErrorCode::NoWorkers,
        ErrorCode::ValueTooLarge,
    ];

    /// The number sent on the wire.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The code with this number, if there is one.
    pub fn from_number(n: u32) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.number() == n)
    }

    /// The short name used in the spec and in vectors, e.g. `frame-too-large`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed-frame",
            ErrorCode::FrameTooLarge => "frame-too-large",
            ErrorCode::UnknownOp => "unknown-op",
            ErrorCode::MissingField => "missing-field",
            ErrorCode::WrongType => "wrong-type",
            ErrorCode::UnexpectedMessage => "unexpected-message",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::BadHandshake => "bad-handshake",
            ErrorCode::AuthFailed => "auth-failed",
            ErrorCode::NameInUse => "name-in-use",
            ErrorCode::UnknownKey => "unknown-key",
            ErrorCode::DuplicateKey => "duplicate-key",
            ErrorCode::Cycle => "cycle",
            ErrorCode::UnknownDataset => "unknown-dataset",
            ErrorCode::DatasetExists => "dataset-exists",
            ErrorCode::NoWorkers => "no-workers",
            ErrorCode::ValueTooLarge => "value-too-large",
        }
    }

    /// The code with this short name.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the receiver closes the connection after reporting it: the
    /// usual `fatal` flag of an `error` with this code. One exception
    /// (spec: "Requests, replies and errors"): `wrong-type` from the
    /// scheduler's validation of an `update-graph` that decoded fine (args
    /// not an array, kwargs not a map) is sent with `fatal: false`.
    pub fn is_fatal(self) -> bool {
        self.number() < 4000
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// A decoding or protocol error: a code from the spec and a message that
/// says what was expected and what came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The spec's code.
    pub code: ErrorCode,
    /// What was expected and what came, with the field path when known.
    pub message: String,
}

impl WireError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }

    /// Bytes that are not well-formed msgpack, or not the shape a frame needs.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedFrame, message)
    }

    /// The input ended in the middle of an object.
    pub fn truncated() -> Self {
        Self::malformed("truncated msgpack object")
    }

    /// A value of the wrong type.
    pub fn wrong_type(expected: &str, found: &str) -> Self {
        Self::new(
            ErrorCode::WrongType,
            format!("expected {expected}, found {found}"),
        )
    }

    /// A required field is absent.
    pub fn missing_field(field: &str) -> Self {
        Self::new(
            ErrorCode::MissingField,
            format!("missing required field `{field}`"),
        )
    }

    /// Prefixes the message with the field it happened in.
    pub fn in_field(mut self, field: &str) -> Self {
        self.message = format!("field `{field}`: {}", self.message);
        self
    }

    /// Prefixes the message with the op of the message it happened in.
    pub fn in_op(mut self, op: &str) -> Self {
        self.message = format!("in `{op}`: {}", self.message);
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_unique_and_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_number(c.number()), Some(c));
            assert_eq!(ErrorCode::from_name(c.name()), Some(c));
        }
        let mut numbers: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.number()).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), ErrorCode::ALL.len());
    }
}
