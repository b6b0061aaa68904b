//! Shared helpers for the integration tests: in-memory trees, a base
//! single-node and a base cluster tree, and exact diagnostic assertions.

#![allow(dead_code)]

use std::fmt::Write as _;

use horcrux_config::{Checked, Diagnostic, TreeFile, check_files};

/// A tree given as `(path, content)` pairs.
pub fn tree(files: &[(&str, &str)]) -> Vec<TreeFile> {
    files
        .iter()
        .map(|(path, content)| TreeFile {
            path: (*path).to_string(),
            content: Ok(content.as_bytes().to_vec()),
        })
        .collect()
}

/// Checks exactly the given files.
pub fn checked(files: &[(&str, &str)]) -> Checked {
    check_files(tree(files))
}

/// The diagnostics of exactly the given files.
pub fn check(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    checked(files).errors
}

/// `base` with `extra` added; an entry of `extra` replaces the base file
/// with the same path.
pub fn merge<'a>(
    base: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut files: Vec<(&str, &str)> = base
        .iter()
        .filter(|(path, _)| !extra.iter().any(|(p, _)| p == path))
        .copied()
        .collect();
    files.extend_from_slice(extra);
    files
}

// ---------------------------------------------------------------------------
// Base trees. Both are valid as they are (see the `base_trees_are_valid` test).

pub const NODE: &str = r#"name = "node1"

[uplinks]
lan = "eth0"

[zfs]
pools = ["tank"]
"#;

pub const CLUSTER: &str = r#"name = "lab"

[[member]]
name = "node1"
address = "10.0.0.1"

[[member]]
name = "node2"
address = "10.0.0.2"

[trust]
require_signatures = false
"#;

pub const NET_LAN: &str = r#"kind = "bridge"
uplink = "lan"
"#;

pub const STORAGE_LOCAL: &str = r#"kind = "zfs"
pool = "tank/vms"
"#;

pub const STORAGE_IMAGES: &str = r#"kind = "dir"
path = "/var/lib/horcrux/images"
"#;

pub const FW_WEB: &str = r#"[[rule]]
direction = "in"
action = "accept"
proto = "tcp"
ports = "80,443"
"#;

/// The VM of the single-node tree (no `node`: it runs on this node).
pub const VM_WEB: &str = r#"cpus = 2
memory = "2GiB"

[[disk]]
storage = "local"
size = "20GiB"

[[nic]]
network = "lan"
firewall = ["web"]
"#;

/// The VM of the cluster tree.
pub const VM_WEB_CLUSTER: &str = r#"node = "node1"
cpus = 2
memory = "2GiB"

[[disk]]
storage = "local"
size = "20GiB"

[[nic]]
network = "lan"
firewall = ["web"]
"#;

pub const SINGLE: &[(&str, &str)] = &[
    ("node.toml", NODE),
    ("cluster/networks/lan.toml", NET_LAN),
    ("cluster/storage/local.toml", STORAGE_LOCAL),
    ("cluster/storage/images.toml", STORAGE_IMAGES),
    ("cluster/firewall/web.toml", FW_WEB),
    ("cluster/vms/web.toml", VM_WEB),
];

pub const CLUSTERED: &[(&str, &str)] = &[
    ("node.toml", NODE),
    ("cluster/cluster.toml", CLUSTER),
    ("cluster/networks/lan.toml", NET_LAN),
    ("cluster/storage/local.toml", STORAGE_LOCAL),
    ("cluster/storage/images.toml", STORAGE_IMAGES),
    ("cluster/firewall/web.toml", FW_WEB),
    ("cluster/vms/web.toml", VM_WEB_CLUSTER),
];

/// Diagnostics of the single-node base tree with `extra` files.
pub fn single(extra: &[(&str, &str)]) -> Vec<Diagnostic> {
    check(&merge(SINGLE, extra))
}

/// Diagnostics of the cluster base tree with `extra` files.
pub fn clustered(extra: &[(&str, &str)]) -> Vec<Diagnostic> {
    check(&merge(CLUSTERED, extra))
}

// ---------------------------------------------------------------------------
// Assertions.

/// One expected diagnostic: exact file, line and column; the message and
/// the hint must contain the given text.
#[derive(Debug, Clone)]
pub struct Expect {
    pub file: &'static str,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: &'static str,
    pub hint: Option<&'static str>,
}

/// An error at `file:line:column` whose message contains `message`.
pub fn at(file: &'static str, line: usize, column: usize, message: &'static str) -> Expect {
    Expect {
        file,
        line: Some(line),
        column: Some(column),
        message,
        hint: None,
    }
}

/// A whole-file error (no line or column).
pub fn whole(file: &'static str, message: &'static str) -> Expect {
    Expect {
        file,
        line: None,
        column: None,
        message,
        hint: None,
    }
}

impl Expect {
    /// The hint must contain `hint`.
    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    fn matches(&self, d: &Diagnostic) -> bool {
        d.file == self.file
            && d.line == self.line
            && d.column == self.column
            && d.message.contains(self.message)
            && self
                .hint
                .is_none_or(|h| d.hint.as_deref().is_some_and(|dh| dh.contains(h)))
    }
}

fn render(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let _ = writeln!(
            out,
            "  {}:{}:{}: {} (hint: {})",
            d.file,
            d.line.map_or("-".into(), |l| l.to_string()),
            d.column.map_or("-".into(), |c| c.to_string()),
            d.message,
            d.hint.as_deref().unwrap_or("-"),
        );
    }
    if out.is_empty() {
        out.push_str("  (none)\n");
    }
    out
}

/// The diagnostics are exactly `expected`, in this order (the order of the
/// loader: file, then line, then column).
#[track_caller]
pub fn assert_errors(diags: &[Diagnostic], expected: &[Expect]) {
    let ok = diags.len() == expected.len() && diags.iter().zip(expected).all(|(d, e)| e.matches(d));
    if !ok {
        let mut want = String::new();
        for e in expected {
            let _ = writeln!(
                want,
                "  {}:{}:{}: ..{}.. (hint: ..{}..)",
                e.file,
                e.line.map_or("-".into(), |l| l.to_string()),
                e.column.map_or("-".into(), |c| c.to_string()),
                e.message,
                e.hint.unwrap_or("-"),
            );
        }
        panic!(
            "diagnostics differ\nexpected:\n{want}got:\n{}",
            render(diags)
        );
    }
}

/// Exactly one diagnostic, as described.
#[track_caller]
pub fn assert_only(diags: &[Diagnostic], expected: Expect) {
    assert_errors(diags, &[expected]);
}

/// Some diagnostic is at `file:line:column` with a message containing `message`.
#[track_caller]
pub fn assert_error(diags: &[Diagnostic], file: &str, line: usize, column: usize, message: &str) {
    let found = diags.iter().any(|d| {
        d.file == file
            && d.line == Some(line)
            && d.column == Some(column)
            && d.message.contains(message)
    });
    assert!(
        found,
        "no error at {file}:{line}:{column} containing {message:?}; got:\n{}",
        render(diags)
    );
}

/// No diagnostics at all.
#[track_caller]
pub fn assert_valid(diags: &[Diagnostic]) {
    assert!(
        diags.is_empty(),
        "expected no errors, got:\n{}",
        render(diags)
    );
}
