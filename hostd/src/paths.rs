//! Where hostd keeps things; shared by the daemon and the CLI so both
//! default to the same directories and can be pointed elsewhere in tests.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct Dirs {
    /// The config tree (node.toml, cluster/).
    #[arg(long, default_value = "/etc/horcrux")]
    pub config_dir: PathBuf,
    /// Generations and other state that survives reboots.
    #[arg(long, default_value = "/var/lib/horcrux")]
    pub state_dir: PathBuf,
    /// Runtime files (sockets, hints); gone at reboot.
    #[arg(long, default_value = "/run/horcrux")]
    pub run_dir: PathBuf,
}
