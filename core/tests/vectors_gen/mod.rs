//! Builds the golden vectors in `spec/vectors/`.
//!
//! The JSON forms and the expected outcomes are written here by hand; the
//! canonical hex comes from `dask_core::json::json_to_msgpack`, and the
//! "also accepted" encodings are made by rewriting the canonical bytes
//! (fields reordered, integers widened, nil for absent fields, unknown
//! fields added). `tests/generated.rs` checks the committed files against
//! what this module builds, and separately checks what the files say
//! against the codec, so a vector never rests on this module alone.
//!
//! Rewrites that change the encoding of a value (args, kwargs, data values)
//! are not used for message vectors: dask-rs keeps values verbatim, so they
//! would not re-encode canonically. Non-canonical values have their own
//! cases in `values.json`.
//!
//! One file per vector file (`messages.rs`, `values.rs`, `frames.rs`,
//! `invalid.rs`, `handshake.rs`, `auth.rs`); `encoding.rs` holds the encoding helpers,
//! the rewrites, the case builders and the vocabulary they share;
//! `render.rs` the layout of the files.

mod auth;
mod encoding;
mod frames;
mod handshake;
mod invalid;
mod messages;
mod render;
mod values;

use auth::auth;
use frames::frames;
use handshake::handshake;
use invalid::invalid;
use messages::messages;
use render::render;
use values::values;

/// Each file of `spec/vectors/`: its name and its text.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        ("messages.json", render(&messages())),
        ("values.json", render(&values())),
        ("frames.json", render(&frames())),
        ("invalid.json", render(&invalid())),
        ("handshake.json", render(&handshake())),
        ("auth.json", render(&auth())),
    ]
}
