//! The Horcrux configuration model.
//!
//! [`load`] reads a config root (normally `/etc/horcrux`) into a [`Config`],
//! decoding every file and validating every cross-file rule; problems come
//! back as [`Diagnostic`]s located at `file:line:column`, all of them at once.

pub mod assemble;
pub mod decode;
pub mod diagnostic;
pub mod load;
pub mod model;
pub mod reference;
pub mod schema;
pub mod source;
pub mod types;
mod validate;

pub use assemble::{Checked, TreeFile, check_files, load};
pub use diagnostic::Diagnostic;
pub use load::LoadError;
pub use model::Config;
pub use validate::against_previous;
