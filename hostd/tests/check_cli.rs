//! Golden tests of the `horcrux` binary: `check` (human and JSON output,
//! exit codes) and `schema`.
//!
//! The expected human output lives in `tests/golden/`. After an intended
//! change of messages, regenerate it with
//! `UPDATE_GOLDEN=1 cargo test -p horcrux-hostd --test check_cli` and review
//! the diff; by default the tests only compare.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// A tree with errors of every family, spread over several files:
/// a TOML syntax error, an unknown key (with a hint), a bad size, missing
/// references, a bad file name and a file outside the layout. Files not
/// ending in `.toml` and dot-files are ignored by the loader.
const BROKEN_TREE: &[(&str, &str)] = &[
    (
        "node.toml",
        "name = \"node1\"\n\n[uplinks]\nlan = \"eth0\"\n\n[zfs]\npools = [\"tank\"]\n",
    ),
    (
        "cluster/networks/lan.toml",
        "kind = \"bridge\"\nuplink = \"lan\nvlan = 10\n",
    ),
    (
        "cluster/storage/local-zfs.toml",
        "kind = \"zfs\"\npool = \"tank/vms\"\n",
    ),
    (
        "cluster/vms/web.toml",
        "cpu = 2\nmemory = \"2GB\"\n\n[[disk]]\nstorage = \"local-zfz\"\nsize = \"20GiB\"\n\n\
         [[nic]]\nnetwork = \"lan\"\nfirewall = [\"web\"]\n",
    ),
    ("cluster/vms/Web_1.toml", "cpus = 1\n"),
    ("vms/stray.toml", "cpus = 1\n"),
    ("cluster/vms/notes.txt", "not a config file = [\n"),
    ("cluster/vms/.web.toml.swp", "\u{0}\u{1}swap"),
];

/// Files of [`BROKEN_TREE`] whose errors concern the whole file (no line).
const WHOLE_FILE_ERRORS: &[&str] = &["cluster/vms/Web_1.toml", "vms/stray.toml"];

fn horcrux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_horcrux"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the horcrux binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

fn write_tree(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().expect("a temporary directory");
    for (path, content) in files {
        let path = dir.path().join(path);
        let parent = path.parent().expect("tree paths have a parent");
        fs::create_dir_all(parent).expect("directories of the tree");
        fs::write(path, content).expect("a file of the tree");
    }
    dir
}

fn path_str(dir: &Path) -> &str {
    dir.to_str().expect("temporary paths are UTF-8")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Compares `actual` with `tests/golden/<name>`, or rewrites the golden
/// file when `UPDATE_GOLDEN` is set.
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0") {
        let dir = path.parent().expect("golden files are in tests/golden");
        fs::create_dir_all(dir).expect("tests/golden is writable");
        fs::write(&path, actual).expect("the golden file is writable");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\n(run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "output differs from {} (rerun with UPDATE_GOLDEN=1 to accept it)\n\
         --- expected ---\n{expected}--- actual ---\n{actual}---",
        path.display()
    );
}

#[test]
fn broken_tree_human_output_is_golden() {
    let tree = write_tree(BROKEN_TREE);
    let out = horcrux(&["check", path_str(tree.path())]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    assert_golden("broken-tree.txt", &text);

    // Whatever the golden file says, these must be in it.
    for needle in [
        "TOML syntax error",
        "--> cluster/networks/lan.toml:2:",
        "unknown key `cpu`",
        "hint: did you mean `cpus`?",
        "invalid size \"2GB\"",
        "storage `local-zfz` does not exist",
        "did you mean `local-zfs`?",
        "firewall `web` does not exist",
        "invalid vm name \"Web_1\"",
        "--> vms/stray.toml\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The network file exists (with a syntax error): referring to it is
    // not a second error; ignored files produce nothing.
    assert!(!text.contains("network `lan` does not exist"), "{text}");
    assert!(
        !text.contains("notes.txt") && !text.contains(".swp"),
        "{text}"
    );
    assert!(text.ends_with("error: 7 errors in 4 files\n"), "{text}");
}

#[test]
fn broken_tree_json_has_exactly_the_contract_shape() {
    let tree = write_tree(BROKEN_TREE);
    let out = horcrux(&["check", path_str(tree.path()), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    let report: Value = serde_json::from_str(&text).expect("stdout is one JSON document");
    let top = report.as_object().expect("an object");
    assert_eq!(
        top.keys().map(String::as_str).collect::<Vec<_>>(),
        ["valid", "errors"]
    );
    assert_eq!(top["valid"], Value::Bool(false));
    let errors = top["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 7, "{text}");
    let inputs: Vec<&str> = BROKEN_TREE.iter().map(|(p, _)| *p).collect();
    for error in errors {
        let error = error.as_object().expect("each error is an object");
        assert_eq!(
            error.keys().map(String::as_str).collect::<Vec<_>>(),
            ["file", "line", "column", "message", "hint"],
            "{error:?}"
        );
        let file = error["file"].as_str().expect("file is a string");
        assert!(inputs.contains(&file), "{file} is not an input file");
        assert!(
            !error["message"]
                .as_str()
                .expect("message is a string")
                .is_empty(),
            "{error:?}"
        );
        assert!(
            error["hint"].is_null() || error["hint"].is_string(),
            "{error:?}"
        );
        if WHOLE_FILE_ERRORS.contains(&file) {
            assert!(error["line"].is_null(), "{error:?}");
            assert!(error["column"].is_null(), "{error:?}");
        } else {
            assert!(error["line"].as_u64().is_some_and(|l| l >= 1), "{error:?}");
            assert!(
                error["column"].as_u64().is_some_and(|c| c >= 1),
                "{error:?}"
            );
        }
    }
    // The same errors as the human output, in the same order.
    let human = stdout(&horcrux(&["check", path_str(tree.path())]));
    let human_messages: Vec<&str> = human
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .collect();
    let json_messages: Vec<&str> = errors
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        human_messages[..human_messages.len() - 1],
        json_messages[..]
    );
}

#[test]
fn valid_examples_pass_with_a_summary() {
    for example in ["single-node", "cluster-3"] {
        let dir = examples().join(example);
        let out = horcrux(&["check", path_str(&dir)]);
        let text = stdout(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example}: {text}{}",
            stderr(&out)
        );
        assert_eq!(stderr(&out), "");
        assert!(text.starts_with("ok: "), "{example}: {text}");
        assert!(text.contains(" files checked: "), "{example}: {text}");
        assert_eq!(text.lines().count(), 1, "{example}: {text}");

        let out = horcrux(&["check", path_str(&dir), "--format", "json"]);
        assert_eq!(out.status.code(), Some(0));
        let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(report, serde_json::json!({ "valid": true, "errors": [] }));
    }
}

#[test]
fn valid_tree_in_a_temp_dir_ignores_editor_files() {
    let tree = write_tree(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/vms/a.toml", "cpus = 2\nmemory = \"512MiB\"\n"),
        ("cluster/vms/.a.toml.swp", "garbage = = ["),
        ("cluster/vms/a.toml~", "garbage = = ["),
        (".git/config", "[core]\n"),
        ("secrets/gossip.key", "not toml at all ["),
    ]);
    let out = horcrux(&["check", path_str(tree.path())]);
    assert_eq!(
        (
            out.status.code(),
            stdout(&out).as_str(),
            stderr(&out).as_str()
        ),
        (
            Some(0),
            "ok: 2 files checked: 1 node, 0 networks, 0 storages, 0 firewall groups, 1 VM, 0 containers\n",
            ""
        )
    );
}

#[test]
fn unusable_directory_exits_2_with_a_message_on_stderr() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("no-such-dir");
    for format in ["human", "json"] {
        let out = horcrux(&["check", path_str(&missing), "--format", format]);
        assert_eq!(out.status.code(), Some(2), "{format}");
        assert_eq!(stdout(&out), "", "{format}");
        let err = stderr(&out);
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("no-such-dir"), "{err}");
    }

    let file = tmp.path().join("node.toml");
    fs::write(&file, "name = \"node1\"\n").unwrap();
    let out = horcrux(&["check", path_str(&file)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
}

/// Every object schema that lists properties must reject unknown keys.
fn assert_closed(value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") {
                assert_eq!(
                    map.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "{at} accepts unknown keys"
                );
            }
            for (key, v) in map {
                assert_closed(v, &format!("{at}/{key}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                assert_closed(v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[test]
fn schema_of_vm_is_closed_draft_07() {
    let out = horcrux(&["schema", "vm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let schema: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    let draft = schema["$schema"].as_str().expect("$schema is set");
    assert!(draft.contains("draft-07"), "{draft}");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], Value::Bool(false));
    let properties = schema["properties"].as_object().expect("properties");
    for key in ["cpus", "memory", "disk", "nic"] {
        assert!(properties.contains_key(key), "vm schema lacks `{key}`");
    }
    assert_closed(&schema, "vm");
}

#[test]
fn schema_of_all_kinds_is_keyed_by_kind() {
    let out = horcrux(&["schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all: Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    let all = all.as_object().expect("an object");
    let mut kinds: Vec<&str> = all.keys().map(String::as_str).collect();
    kinds.sort_unstable();
    let mut expected = [
        "node",
        "cluster",
        "network",
        "storage",
        "firewall",
        "vm",
        "container",
    ];
    expected.sort_unstable();
    assert_eq!(kinds, expected);
    for (kind, schema) in all {
        assert!(
            schema["$schema"]
                .as_str()
                .is_some_and(|s| s.contains("draft-07")),
            "{kind}"
        );
        assert_closed(schema, kind);
    }
    // Each kind alone is the same document as its entry in the whole.
    let vm: Value = serde_json::from_str(&stdout(&horcrux(&["schema", "vm"]))).unwrap();
    assert_eq!(&vm, &all["vm"]);
}

#[test]
fn schema_of_an_unknown_kind_is_a_usage_error() {
    let out = horcrux(&["schema", "vms"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("vm"), "{}", stderr(&out));
}
