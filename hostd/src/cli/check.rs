//! `horcrux check [DIR]`: validate a config tree and report every error.

use std::path::Path;

use horcrux_config::{Checked, Config, Diagnostic};
use serde::Serialize;

use super::{Outcome, exit, report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// The JSON contract of `--format json`.
#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: Vec<JsonError<'a>>,
}

#[derive(Serialize)]
struct JsonError<'a> {
    file: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
    hint: Option<&'a str>,
}

impl<'a> From<&'a Diagnostic> for JsonError<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        JsonError {
            file: &d.file,
            line: d.line,
            column: d.column,
            message: &d.message,
            hint: d.hint.as_deref(),
        }
    }
}

pub fn run(dir: &Path, format: Format) -> Outcome {
    match horcrux_config::load(dir) {
        Ok(checked) => outcome(&checked, format),
        Err(e) => Outcome::error(exit::UNUSABLE, &format!("horcrux check: {e}")),
    }
}

fn outcome(checked: &Checked, format: Format) -> Outcome {
    let code = if checked.is_valid() {
        exit::OK
    } else {
        exit::INVALID
    };
    let stdout = match format {
        Format::Json => {
            let report = JsonReport {
                valid: checked.is_valid(),
                errors: checked.errors.iter().map(JsonError::from).collect(),
            };
            // Serializing plain strings and numbers cannot fail.
            serde_json::to_string(&report).unwrap_or_default() + "\n"
        }
        Format::Human if checked.is_valid() => summary(&checked.config),
        Format::Human => report::render(&checked.errors),
    };
    Outcome {
        stdout,
        stderr: String::new(),
        code,
    }
}

fn summary(config: &Config) -> String {
    let count = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let members = config.cluster.as_ref().map_or(1, |c| c.members.len());
    format!(
        "ok: {} checked: {}, {}, {}, {}, {}, {}\n",
        count(config.sources.len(), "file"),
        count(members, "node"),
        count(config.networks.len(), "network"),
        count(config.storage.len(), "storage"),
        count(config.firewall.len(), "firewall group"),
        count(config.vms.len(), "VM"),
        count(config.containers.len(), "container"),
    )
}
