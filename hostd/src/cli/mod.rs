//! Subcommands of the `horcrux` operator CLI. Each returns the process exit
//! code; argument parsing lives in the binary.

pub mod check;
pub mod report;
pub mod schema;

/// Exit codes shared by the subcommands.
pub mod exit {
    pub const OK: u8 = 0;
    /// The tree has errors (check) / something failed.
    pub const INVALID: u8 = 1;
    /// The input could not be used at all (no such directory).
    pub const UNUSABLE: u8 = 2;
}
