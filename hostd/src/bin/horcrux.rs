//! `horcrux`: the operator CLI.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horcrux_config::model::FileKind;
use horcrux_hostd::cli::{check, schema};

#[derive(Parser)]
#[command(
    name = "horcrux",
    version,
    about = "Operate a Horcrux node from its config files"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config tree and show every error with file:line:column.
    Check {
        /// The config root.
        #[arg(default_value = "/etc/horcrux")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: check::Format,
    },
    /// Print the JSON Schema of a file kind (all kinds when omitted).
    Schema {
        #[arg(value_parser = parse_kind)]
        kind: Option<FileKind>,
    },
    /// Print the Markdown config reference (docs/config-reference.md).
    #[command(hide = true)]
    Reference,
}

fn parse_kind(s: &str) -> Result<FileKind, String> {
    use horcrux_config::decode::ParseStr;
    FileKind::parse_str(s).map_err(|e| match &e.hint {
        Some(hint) => format!("{e} ({hint})"),
        None => e.to_string(),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (stdout, stderr, code) = match args.command {
        Command::Check { dir, format } => {
            let outcome = check::run(&dir, format);
            (outcome.stdout, outcome.stderr, outcome.code)
        }
        Command::Schema { kind } => (schema::run(kind), String::new(), 0),
        Command::Reference => (horcrux_config::reference::markdown(), String::new(), 0),
    };
    // A closed pipe (`horcrux check | head`) is not worth a panic.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    ExitCode::from(code)
}
