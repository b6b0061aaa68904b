//! `hostd`: the node daemon. Thin: arguments, logging, signals.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use horcrux_hostd::cluster::Tuning;
use horcrux_hostd::daemon::{self, Options};
use horcrux_hostd::errors::chain;
use horcrux_hostd::paths::Dirs;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser)]
#[command(
    name = "hostd",
    version,
    about = "Horcrux node daemon: makes this node match /etc/horcrux"
)]
struct Args {
    #[command(flatten)]
    dirs: Dirs,
    /// Listen here instead of node.toml's `[status] listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Full rescan interval of the config tree (safety net for missed events).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    rescan_every: Duration,
    /// Drift check interval.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drift_every: Duration,
    /// Leave this host's links, nftables and management address alone and
    /// manage VMs only: for running hostd on a development machine.
    #[arg(long)]
    no_host_network: bool,
    /// Cluster gossip interval.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    gossip_interval: Duration,
    /// How long deletions of replicated files are remembered (testing).
    #[arg(long, hide = true, default_value = "7days", value_parser = humantime::parse_duration)]
    tombstone_ttl: Duration,
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("HOSTD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Under systemd, log structured fields to the journal; else stderr.
    let journal = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    match journal {
        Some(journal) => registry.with(journal).init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let opts = Options {
        listen: args.listen,
        rescan_every: args.rescan_every,
        drift_every: args.drift_every,
        host_network: !args.no_host_network,
        cluster: Tuning {
            gossip_interval: args.gossip_interval,
            tombstone_ttl: args.tombstone_ttl,
        },
        ..Options::with_dirs(args.dirs.config_dir, args.dirs.state_dir, args.dirs.run_dir)
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("hostd: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    };
    match daemon::run(opts, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %chain(&e), "hostd failed");
            eprintln!("hostd: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
