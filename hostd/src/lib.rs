//! Horcrux node daemon and operator CLI.

pub mod cli;
