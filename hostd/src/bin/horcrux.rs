//! `horcrux`: the operator CLI.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horcrux_config::model::FileKind;
use horcrux_hostd::backend::Layout;
use horcrux_hostd::cli::{
    Outcome, check, console, deploy, generations, management, plan, purge, render, schema, update,
    vm_shutdown,
};
use horcrux_hostd::paths::Dirs;
use horcrux_hostd::update::Paths as UpdatePaths;

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
    /// Write the node's management address (node.toml `[management]`) as
    /// a systemd-networkd file; run at boot before systemd-networkd.
    #[command(hide = true)]
    ManagementNetwork {
        #[arg(long, default_value = "/etc/horcrux")]
        config_dir: PathBuf,
        #[arg(long, default_value = horcrux_hostd::backend::management::NETWORKD_DIR)]
        out: PathBuf,
    },
    /// List the accepted config generations (the audit log), newest last.
    Generations {
        #[arg(long, default_value = "/var/lib/horcrux")]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print a new random cluster key for `[gossip] key_file` (write it to
    /// the file on every member, mode 0600).
    GossipKey,
    /// Write an earlier generation back into the config directory; hostd
    /// accepts it as a new generation with source "rollback".
    Rollback {
        /// Generation id, as listed by `horcrux generations`.
        id: u64,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Check a tree and write it into the config directory atomically,
    /// announced to hostd as a push (used by the git and rsync receivers).
    /// A tree without node.toml keeps the node's own. Exit 1: invalid tree,
    /// nothing changed.
    Deploy {
        /// The tree to deploy (node.toml, cluster/).
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        dirs: Dirs,
        /// Wait this long for hostd to accept the tree, e.g. `30s`.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
        /// Only check, as the deploy would; write nothing.
        #[arg(long)]
        check_only: bool,
    },
    /// Sign files of cluster/ (or their deletion) with a minisign secret
    /// key, for clusters with `[trust] require_signatures`. Without PATHS,
    /// signs every file whose signature is missing or stale.
    ///
    /// A password-protected key takes its password from
    /// HORCRUX_SIGN_PASSWORD, else asks on the terminal.
    Sign {
        /// A minisign secret key file (`minisign -G`).
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
        /// The config root holding cluster/.
        #[arg(long, default_value = ".", value_name = "DIR")]
        config_dir: PathBuf,
        /// Sign the deletion of PATHS, then delete them (instead of `rm`).
        #[arg(long, requires = "paths")]
        delete: bool,
        /// .toml files under DIR/cluster.
        paths: Vec<PathBuf>,
    },
    /// Attach this terminal to a VM's serial console (root only); escape
    /// with Ctrl-].
    ///
    /// Without a terminal (a pipe), input is sent as is, and after it ends
    /// output is copied until the VM has been quiet for a second.
    Console {
        /// The VM.
        vm: String,
        /// The config tree, only read to explain why a VM is not running.
        #[arg(long, default_value = "/etc/horcrux")]
        config_dir: PathBuf,
        /// Runtime files of hostd, where the console sockets are.
        #[arg(long, default_value = "/run/horcrux")]
        run_dir: PathBuf,
    },
    /// Delete what a removed VM left on this node (its disks and UEFI
    /// variables). Refuses while the VM is defined or running; without
    /// --yes only lists what it would delete.
    Purge {
        #[command(subcommand)]
        what: PurgeWhat,
    },
    /// Print the Markdown config reference (docs/config-reference.md).
    #[command(hide = true)]
    Reference,
    /// Stop a VM's QEMU gracefully: ACPI power button, wait up to
    /// --timeout for the guest to power off, then quit. The ExecStop= of
    /// each VM unit. Exit 0 when QEMU is gone (or was not running).
    #[command(name = "vm-shutdown", hide = true)]
    VmShutdown {
        /// The VM's QMP socket.
        #[arg(long)]
        qmp: PathBuf,
        /// How long the guest may take to power off, e.g. "120s", "2m".
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Install a signed update bundle into the inactive A/B root slot,
    /// with a boot entry that systemd-boot tries next and falls back from.
    ///
    /// Nothing is written unless the bundle's minisign signature verifies
    /// with a key of the image's update-keys directory and every payload
    /// matches the manifest. Exit 0 when written or already running, 1
    /// when refused.
    Update {
        /// The bundle: a file, or an http:// URL (the signature, not the
        /// transport, is what is trusted).
        source: String,
        /// Boot tries of the new slot before falling back (1 to 9).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
        tries: u8,
        /// Install a bundle built before the running image.
        #[arg(long)]
        allow_downgrade: bool,
        /// Leave out the "reboot to boot slot X" line.
        #[arg(long)]
        no_reboot_hint: bool,
        #[command(flatten)]
        paths: UpdatePaths,
    },
    /// Show the running slot and image, the slots' boot entries with
    /// their boot-counting state, and which one boots next.
    UpdateStatus {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        paths: UpdatePaths,
    },
    /// On a trial boot of a new slot, wait for hostd to be ready and mark
    /// the boot entry good; reboot when it does not come up (systemd-boot
    /// then tries again, then falls back). Run by a unit before
    /// boot-complete.target.
    BootHealth {
        /// How long hostd may take to become ready, e.g. "10m".
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// This many restarts of hostd is a crash loop.
        #[arg(long, default_value_t = 5)]
        max_restarts: u32,
        /// Exit 1 instead of rebooting when the boot is not healthy.
        #[arg(long)]
        no_reboot: bool,
        #[command(flatten)]
        paths: UpdatePaths,
    },
}

#[derive(Subcommand)]
enum PurgeWhat {
    /// A VM's disks and state.
    Vm {
        /// The VM whose file was removed.
        name: String,
        #[command(flatten)]
        dirs: Dirs,
        /// Delete, instead of listing what would be deleted.
        #[arg(long)]
        yes: bool,
    },
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
        Command::ManagementNetwork { config_dir, out } => {
            management::run(&config_dir, &out, std::path::Path::new("/sys/class/net"))
        }
        Command::Generations { state_dir, json } => generations::list(&state_dir, json),
        Command::GossipKey => horcrux_hostd::cli::gossip_key::run(),
        Command::Rollback { id, dirs } => {
            generations::rollback(id, &dirs.config_dir, &dirs.state_dir, &dirs.run_dir)
        }
        Command::Deploy {
            from,
            dirs,
            wait,
            check_only,
        } => deploy::run(
            &from,
            &deploy::Target {
                config_dir: &dirs.config_dir,
                state_dir: &dirs.state_dir,
                run_dir: &dirs.run_dir,
                wait,
                check_only,
            },
        ),
        Command::Sign {
            secret_key,
            config_dir,
            delete,
            paths,
        } => horcrux_hostd::cli::sign::run(&horcrux_hostd::cli::sign::Request {
            secret_key: &secret_key,
            config_dir: &config_dir,
            delete,
            paths: &paths,
        }),
        Command::Console {
            vm,
            config_dir,
            run_dir,
        } => console::run(
            &vm,
            &config_dir,
            &Layout {
                run_dir,
                ..Layout::default()
            },
        ),
        Command::Purge {
            what: PurgeWhat::Vm { name, dirs, yes },
        } => purge::vm(
            &name,
            &dirs.config_dir,
            &Layout::new(dirs.run_dir, dirs.state_dir),
            yes,
        ),
        Command::Reference => Outcome::ok(horcrux_config::reference::markdown()),
        Command::VmShutdown { qmp, timeout } => vm_shutdown::run(&qmp, timeout),
        Command::Update {
            source,
            tries,
            allow_downgrade,
            no_reboot_hint,
            paths,
        } => update::run(&update::Request {
            source: &source,
            options: horcrux_hostd::update::install::Options {
                tries,
                allow_downgrade,
            },
            no_reboot_hint,
            paths: &paths,
        }),
        Command::UpdateStatus { json, paths } => update::status(&paths, json),
        Command::BootHealth {
            timeout,
            max_restarts,
            no_reboot,
            paths,
        } => update::boot_health(&update::HealthRequest {
            timeout,
            max_restarts,
            no_reboot,
            paths: &paths,
        }),
    };
    // A closed pipe (`horcrux check | head`) is not worth a panic.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    ExitCode::from(code)
}
