//! Subcommands of the `horcrux` operator CLI. Each returns the process exit
//! code; argument parsing lives in the binary.

pub mod check;
pub mod console;
pub mod deploy;
pub mod generations;
pub mod gossip_key;
pub mod management;
pub mod plan;
pub mod purge;
pub mod render;
pub mod report;
pub mod schema;
pub mod sign;
pub mod update;
pub mod vm_shutdown;

/// Exit codes shared by the subcommands.
pub mod exit {
    pub const OK: u8 = 0;
    /// The tree has errors (check) / something failed.
    pub const INVALID: u8 = 1;
    /// The input could not be used at all (no such directory).
    pub const UNUSABLE: u8 = 2;
}

/// What a subcommand prints and how it exits.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Outcome {
    pub fn ok(stdout: String) -> Self {
        Outcome {
            stdout,
            stderr: String::new(),
            code: exit::OK,
        }
    }

    pub fn error(code: u8, message: &str) -> Self {
        Outcome {
            stdout: String::new(),
            stderr: format!("{message}\n"),
            code,
        }
    }
}
