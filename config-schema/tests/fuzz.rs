//! Property-based fuzzing of the loader (stable toolchain, no cargo-fuzz).
//!
//! Whatever the bytes and paths of a tree, `check_files` must not panic, and
//! every diagnostic must point into a file that was given, at a line and
//! column that exist in it. Each property runs 256 cases by default, which
//! keeps this file well under 30 s in a debug build; raise it with e.g.
//! `PROPTEST_CASES=20000 cargo test -p horcrux-config --test fuzz --release`.

use std::collections::BTreeSet;

use horcrux_config::{Checked, TreeFile, check_files};
use proptest::prelude::*;
use proptest::sample::select;

/// Both example trees, as (path relative to the root, content).
const SINGLE_NODE: &[(&str, &str)] = &[
    (
        "node.toml",
        include_str!("../../examples/single-node/node.toml"),
    ),
    (
        "cluster/containers/cache.toml",
        include_str!("../../examples/single-node/cluster/containers/cache.toml"),
    ),
    (
        "cluster/firewall/web.toml",
        include_str!("../../examples/single-node/cluster/firewall/web.toml"),
    ),
    (
        "cluster/networks/isolated.toml",
        include_str!("../../examples/single-node/cluster/networks/isolated.toml"),
    ),
    (
        "cluster/networks/lan.toml",
        include_str!("../../examples/single-node/cluster/networks/lan.toml"),
    ),
    (
        "cluster/storage/images.toml",
        include_str!("../../examples/single-node/cluster/storage/images.toml"),
    ),
    (
        "cluster/storage/local-zfs.toml",
        include_str!("../../examples/single-node/cluster/storage/local-zfs.toml"),
    ),
    (
        "cluster/vms/build.toml",
        include_str!("../../examples/single-node/cluster/vms/build.toml"),
    ),
    (
        "cluster/vms/www.toml",
        include_str!("../../examples/single-node/cluster/vms/www.toml"),
    ),
];

const CLUSTER_3: &[(&str, &str)] = &[
    (
        "node.toml",
        include_str!("../../examples/cluster-3/node.toml"),
    ),
    (
        "cluster/cluster.toml",
        include_str!("../../examples/cluster-3/cluster/cluster.toml"),
    ),
    (
        "cluster/firewall/db.toml",
        include_str!("../../examples/cluster-3/cluster/firewall/db.toml"),
    ),
    (
        "cluster/firewall/web.toml",
        include_str!("../../examples/cluster-3/cluster/firewall/web.toml"),
    ),
    (
        "cluster/networks/lan.toml",
        include_str!("../../examples/cluster-3/cluster/networks/lan.toml"),
    ),
    (
        "cluster/networks/overlay.toml",
        include_str!("../../examples/cluster-3/cluster/networks/overlay.toml"),
    ),
    (
        "cluster/storage/local-zfs.toml",
        include_str!("../../examples/cluster-3/cluster/storage/local-zfs.toml"),
    ),
    (
        "cluster/storage/scratch.toml",
        include_str!("../../examples/cluster-3/cluster/storage/scratch.toml"),
    ),
    (
        "cluster/vms/db.toml",
        include_str!("../../examples/cluster-3/cluster/vms/db.toml"),
    ),
    (
        "cluster/vms/web-1.toml",
        include_str!("../../examples/cluster-3/cluster/vms/web-1.toml"),
    ),
    (
        "cluster/vms/web-2.toml",
        include_str!("../../examples/cluster-3/cluster/vms/web-2.toml"),
    ),
    (
        "cluster/vms/web-3.toml",
        include_str!("../../examples/cluster-3/cluster/vms/web-3.toml"),
    ),
];

const TREES: [&[(&str, &str)]; 2] = [SINGLE_NODE, CLUSTER_3];

/// One path of every file kind.
const KIND_PATHS: &[&str] = &[
    "node.toml",
    "cluster/cluster.toml",
    "cluster/networks/x.toml",
    "cluster/storage/x.toml",
    "cluster/firewall/x.toml",
    "cluster/vms/x.toml",
    "cluster/containers/x.toml",
];

/// Pieces of TOML and of this schema, to build inputs that get past the
/// parser more often than random bytes do.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "=", "[", "]", "[[", "]]", "{", "}", ",", ".", "\"", "'", "\"\"\"", "'''", "\n", "\r\n", "\t",
    " ", "#", "\\", "\\u0000", "\u{0}", "é", "日本", "🦀", "\u{feff}", "\u{202e}", "true", "false",
    "0", "-1", "1", "65536", "4095", "16777216", "99999999999999999999999999",
    "-9223372036854775809", "0x7fffffffffffffffff", "0o777", "0b101", "1_000", "1e999", "inf",
    "nan", "-0.0", "1979-05-27T07:32:00Z", "name", "node", "kind", "cpus", "cpu", "memory", "disk",
    "nic", "storage", "network", "firewall", "size", "mac", "member", "address", "uplink", "vlan",
    "vni", "mtu", "pool", "path", "nodes", "rule", "direction", "proto", "ports", "source", "dest",
    "cloud_init", "snapshots", "every", "keep", "trust", "keys", "gossip", "port", "uplinks",
    "zfs", "pools", "image", "volumes", "env", "\"node1\"", "\"lan\"", "\"x\"", "\"2GiB\"",
    "\"0MiB\"", "\"18446744073709551616PiB\"", "\"bridge\"", "\"vxlan\"", "\"zfs\"", "\"dir\"",
    "\"tcp\"", "\"80,443,8000-8100\"", "\"65535-1\"", "\"10.0.0.0/8\"", "\"::/0\"",
    "\"52:54:00:12:34:56\"", "\"1h\"", "\"0s\"", "\"image:x\"", "\"clone:x/disk0@a\"",
];

/// Case count: `PROPTEST_CASES` when set, else 256.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Failures are printed with their input; no files in tests/.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn tree(files: &[(String, Vec<u8>)]) -> Vec<TreeFile> {
    files
        .iter()
        .map(|(path, bytes)| TreeFile {
            path: path.clone(),
            content: Ok(bytes.clone()),
        })
        .collect()
}

fn example(files: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect()
}

/// Runs the loader and checks what must hold for any input: every
/// diagnostic names a given file (or the missing `node.toml`), lines and
/// columns exist in that file, the snippet is that line, and errors are
/// sorted.
fn check(files: &[(String, Vec<u8>)]) -> Checked {
    let checked = check_files(tree(files));
    let paths: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for d in &checked.errors {
        assert!(!d.message.is_empty(), "empty message: {d:?}");
        match (d.line, d.column) {
            (Some(line), Some(column)) => {
                assert!(line >= 1 && column >= 1, "{d:?}");
                assert!(paths.contains(d.file.as_str()), "unknown file in {d:?}");
                // Several files may share a path; one of them must fit.
                let fits = files
                    .iter()
                    .filter(|(p, _)| *p == d.file)
                    .any(|(_, bytes)| {
                        let Ok(text) = std::str::from_utf8(bytes) else {
                            return false;
                        };
                        let Some(line_text) = text.split('\n').nth(line - 1) else {
                            return false;
                        };
                        // The column may point at the line terminator (`\r\n` is
                        // two characters), never further.
                        let last_column = line_text.chars().count() + 1;
                        let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
                        let snippet_ok = d
                            .snippet
                            .as_ref()
                            .is_some_and(|s| s.line_text == line_text && s.width >= 1);
                        snippet_ok && column <= last_column
                    });
                assert!(fits, "location outside the file: {d:?}");
            }
            (None, None) => assert!(
                paths.contains(d.file.as_str()) || d.file == "node.toml",
                "unknown file in {d:?}"
            ),
            _ => panic!("line without column or the reverse: {d:?}"),
        }
        // Display must not panic either.
        let _ = d.to_string();
    }
    let keys: Vec<_> = checked
        .errors
        .iter()
        .map(|d| (&d.file, d.line, d.column))
        .collect();
    assert!(keys.is_sorted(), "errors are not sorted: {keys:?}");
    checked
}

/// File contents: raw bytes, arbitrary text, or a soup of TOML tokens.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(select(TOKENS), 0..64).prop_map(|t| t.concat().into_bytes()),
        // Lines of `key = value` pairs, which mostly parse.
        prop::collection::vec(
            (
                select(TOKENS),
                select(TOKENS),
                select(&["", "[", "[[", "\n"][..])
            ),
            0..24
        )
        .prop_map(|lines| {
            lines
                .into_iter()
                .map(|(k, v, pre)| format!("{pre}{k} = {v}\n"))
                .collect::<String>()
                .into_bytes()
        }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), select(TOKENS)).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match *m {
        Mutation::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
        Mutation::Delete { at, len } if n > 0 => {
            let at = at % n;
            bytes.drain(at..(at + len).min(n));
        }
        Mutation::Insert { at, token } => {
            let at = at % (n + 1);
            bytes.splice(at..at, token.bytes());
        }
        Mutation::Duplicate { at, len } if n > 0 => {
            let at = at % n;
            let piece = bytes[at..(at + len).min(n)].to_vec();
            bytes.splice(at..at, piece);
        }
        _ => {}
    }
}

/// A path segment: layout names, odd names and arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    let odd = select(
        &[
            "cluster",
            "vms",
            "networks",
            "storage",
            "firewall",
            "containers",
            "secrets",
            "node.toml",
            "cluster.toml",
            "x.toml",
            "web-1.toml",
            "Web_1.toml",
            "a b.toml",
            "é.toml",
            "🦀.toml",
            "x.json",
            "x.TOML",
            ".toml",
            "x.toml.toml",
            ".hidden.toml",
            "-x.toml",
            "0x.toml",
            "",
            ".",
            "..",
            "\u{0}",
            "x\u{0}.toml",
            "a\\b.toml",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.toml",
        ][..],
    )
    .prop_map(str::to_string);
    prop_oneof![3 => odd, 1 => any::<String>(), 1 => "[a-z0-9._-]{0,12}"]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..5).prop_map(|s| s.join("/"))
}

#[test]
fn unmodified_examples_have_no_errors() {
    for files in TREES {
        let checked = check(&example(files));
        assert!(checked.is_valid(), "{:#?}", checked.errors);
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) Any content in a file of any kind, alone.
    #[test]
    fn any_content_in_any_kind(kind in select(KIND_PATHS), bytes in content()) {
        check(&[(kind.to_string(), bytes)]);
    }

    /// (a) Any content in every kind at once, so that cross-file
    /// validation sees half-decoded files.
    #[test]
    fn any_content_in_every_kind(contents in prop::collection::vec(content(), KIND_PATHS.len())) {
        let files: Vec<_> = KIND_PATHS
            .iter()
            .map(|p| p.to_string())
            .zip(contents)
            .collect();
        check(&files);
    }

    /// (a) One file of an otherwise valid tree replaced by anything.
    #[test]
    fn any_content_in_a_valid_tree(
        tree in 0..TREES.len(),
        index in any::<prop::sample::Index>(),
        bytes in content(),
    ) {
        let mut files = example(TREES[tree]);
        let i = index.index(files.len());
        files[i].1 = bytes;
        check(&files);
    }

    /// (b) Small edits of the valid examples, in one or several files.
    #[test]
    fn mutated_examples(
        tree in 0..TREES.len(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::collection::vec(mutation(), 1..8)),
            1..4,
        ),
    ) {
        let mut files = example(TREES[tree]);
        for (index, mutations) in &edits {
            let i = index.index(files.len());
            for m in mutations {
                apply(&mut files[i].1, m);
            }
        }
        let checked = check(&files);
        if files == example(TREES[tree]) {
            prop_assert!(checked.is_valid(), "{:#?}", checked.errors);
        }
    }

    /// (c) Arbitrary paths (odd names, nested directories, not `.toml`),
    /// with valid or arbitrary content, next to a valid tree.
    #[test]
    fn arbitrary_paths(
        tree in 0..TREES.len(),
        extra in prop::collection::vec(
            (path(), prop_oneof![
                Just(b"cpus = 1\n".to_vec()),
                Just(b"name = \"node1\"\n".to_vec()),
                content(),
            ]),
            1..6,
        ),
    ) {
        let mut files = example(TREES[tree]);
        files.extend(extra);
        check(&files);
    }

    /// (c) Only arbitrary paths, possibly repeated, without any example.
    #[test]
    fn only_arbitrary_paths(files in prop::collection::vec((path(), content()), 0..8)) {
        check(&files);
    }
}

#[test]
fn unreadable_files_are_whole_file_errors() {
    let files = vec![
        TreeFile {
            path: "cluster/vms/a.toml".into(),
            content: Err("cannot read: permission denied".into()),
        },
        TreeFile {
            path: "node.toml".into(),
            content: Ok(vec![0xff, 0xfe, b'=']),
        },
    ];
    let checked = check_files(files);
    assert_eq!(checked.errors.len(), 2, "{:#?}", checked.errors);
    assert!(
        checked
            .errors
            .iter()
            .all(|d| d.line.is_none() && d.column.is_none())
    );
}
