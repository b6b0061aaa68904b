//! `horcrux`: the operator CLI.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horcrux_config::model::FileKind;
use horcrux_hostd::backend::Layout;
use horcrux_hostd::cli::{Outcome, check, generations, plan, render, schema};
use horcrux_hostd::paths::Dirs;

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
    /// Show what hostd would change on this node: + create, ~ change,
    /// `-` remove, ! needs restart. Exit 0 when nothing is pending, 2 when
    /// changes are pending, 1 on error.
    Plan {
        #[arg(default_value = "/etc/horcrux")]
        dir: PathBuf,
    },
    /// Print every artifact hostd would create on a node (systemd units,
    /// QEMU command lines) without touching the system.
    Render {
        #[command(flatten)]
        dirs: Dirs,
        /// The node to render; default: the name in node.toml.
        #[arg(long)]
        node: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: render::Format,
    },
    /// List the accepted config generations (the audit log), newest last.
    Generations {
        #[arg(long, default_value = "/var/lib/horcrux")]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write an earlier generation back into the config directory; hostd
    /// accepts it as a new generation with source "rollback".
    Rollback {
        /// Generation id, as listed by `horcrux generations`.
        id: u64,
        #[command(flatten)]
        dirs: Dirs,
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
    let Outcome {
        stdout,
        stderr,
        code,
    } = match args.command {
        Command::Check { dir, format } => check::run(&dir, format),
        Command::Schema { kind } => Outcome::ok(schema::run(kind)),
        Command::Plan { dir } => plan::run(&dir),
        Command::Render { dirs, node, format } => render::run(
            &dirs.config_dir,
            node.as_deref(),
            format,
            &Layout::new(dirs.run_dir, dirs.state_dir),
        ),
        Command::Generations { state_dir, json } => generations::list(&state_dir, json),
        Command::Rollback { id, dirs } => {
            generations::rollback(id, &dirs.config_dir, &dirs.state_dir, &dirs.run_dir)
        }
        Command::Reference => Outcome::ok(horcrux_config::reference::markdown()),
    };
    // A closed pipe (`horcrux check | head`) is not worth a panic.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    ExitCode::from(code)
}
