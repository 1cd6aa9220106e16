//! JSON, read and written without serde in the module.
//!
//! - `tape`: the one-pass lexer every reader builds on; any value read on its own.
//! - `skim`: an allocation-free scanner for the stream fast paths, as strict as serde_json.
//! - `lenient`: provider bodies, where one odd field must never cost the rest (`json_struct!`).
//! - `strict`: the plugin configuration, where an unknown or mistyped key is an error naming it.
//! - `write`: the owned `Json` value tollgate builds and sends, and string escaping.

pub mod edit;
pub mod lenient;
#[cfg(any(test, fuzzing))]
pub mod reference;
pub mod skim;
pub mod strict;
pub mod tape;
pub mod write;

pub use write::{escape_into, Json};
