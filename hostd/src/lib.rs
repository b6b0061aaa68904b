//! Horcrux node daemon and operator CLI.

pub mod apply;
pub mod backend;
pub mod cli;
pub mod cluster;
pub mod daemon;

pub mod deploy;
pub mod errors;
pub mod fsutil;
pub mod generation;
pub mod paths;
pub mod plan;
pub mod readiness;
pub mod status;
pub mod update;
pub mod watch;
