//! `horcrux sign`: signs a tree with plain minisign signatures, is
//! idempotent, signs deletions, and takes encrypted keys.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Command, Stdio};

use horcrux_hostd::cluster::signature::check_tree;
use minisign::KeyPair;
use sha2::{Digest as _, Sha256};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `horcrux sign ARGS` in `cwd`, with `password` in the environment.
fn sign(cwd: &Path, args: &[&str], password: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_horcrux"));
    command
        .arg("sign")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .env_remove("HORCRUX_SIGN_PASSWORD");
    if let Some(password) = password {
        command.env("HORCRUX_SIGN_PASSWORD", password);
    }
    let out = command.output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes an unencrypted secret key file as `minisign -G -W` does.
fn secret_key_file(dir: &Path, name: &str, pair: &KeyPair) -> String {
    let path = dir.join(name);
    let text = pair
        .sk
        .to_box(Some("minisign secret key"))
        .unwrap()
        .into_string();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

const FW_WEB: &str =
    "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"80,443\"\n";

/// A config dir trusting `trusted`, with three cluster files.
fn tree(root: &Path, trusted: &KeyPair) -> std::path::PathBuf {
    let etc = root.join("etc");
    write(&etc.join("node.toml"), "name = \"node1\"\n");
    write(
        &etc.join("cluster/cluster.toml"),
        &format!(
            "name = \"lab\"\n\n[[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\n\
             [trust]\nkeys = [\"{}\"]\nrequire_signatures = true\n",
            trusted.pk.to_base64()
        ),
    );
    write(
        &etc.join("cluster/networks/lan.toml"),
        "kind = \"bridge\"\n",
    );
    write(&etc.join("cluster/firewall/web.toml"), FW_WEB);
    write(&etc.join("cluster/vms/.web.toml.swp"), "editor junk");
    etc
}

/// Checks a `.minisig` the way `minisign -Vm` would, with minisign_verify.
fn assert_minisign_valid(pair: &KeyPair, message: &[u8], signature_file: &Path, comment: &str) {
    let text = std::fs::read_to_string(signature_file).unwrap();
    let signature = minisign_verify::Signature::decode(&text).unwrap();
    let public = minisign_verify::PublicKey::from_base64(&pair.pk.to_base64()).unwrap();
    public.verify(message, &signature, false).unwrap();
    assert_eq!(signature.trusted_comment(), comment);
}

fn load(etc: &Path) -> horcrux_config::Config {
    horcrux_config::load(etc).unwrap().into_valid().unwrap()
}

#[test]
fn signs_a_tree_once() {
    let dir = tempfile::tempdir().unwrap();
    let admin = KeyPair::generate_unencrypted_keypair().unwrap();
    let etc = tree(dir.path(), &admin);
    let key = secret_key_file(dir.path(), "admin.key", &admin);

    let run = sign(
        dir.path(),
        &["--secret-key", &key, "--config-dir", "etc"],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "signed cluster/cluster.toml\nsigned cluster/firewall/web.toml\n\
         signed cluster/networks/lan.toml\nsigned 3, already signed 0\n"
    );
    assert_eq!(run.stderr, "", "the key is trusted: no note");
    for (path, content) in [
        ("networks/lan.toml", "kind = \"bridge\"\n"),
        ("firewall/web.toml", FW_WEB),
    ] {
        assert_minisign_valid(
            &admin,
            content.as_bytes(),
            &etc.join(format!("cluster/{path}.minisig")),
            &format!("horcrux file path={path}"),
        );
    }
    assert!(
        !etc.join("node.toml.minisig").exists(),
        "node.toml is never replicated"
    );
    assert!(!etc.join("cluster/vms/.web.toml.swp.minisig").exists());
    assert_eq!(check_tree(&etc, &load(&etc), None), vec![]);

    // Again: nothing to do, nothing rewritten.
    let before = std::fs::read(etc.join("cluster/cluster.toml.minisig")).unwrap();
    let run = sign(&etc, &["--secret-key", &key], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "signed 0, already signed 3\n");
    assert_eq!(
        std::fs::read(etc.join("cluster/cluster.toml.minisig")).unwrap(),
        before
    );

    // An edit: only that file.
    write(
        &etc.join("cluster/networks/lan.toml"),
        "kind = \"bridge\"\nmtu = 9000\n",
    );
    let run = sign(&etc, &["--secret-key", &key], None);
    assert_eq!(
        run.stdout,
        "signed cluster/networks/lan.toml\nsigned 1, already signed 2\n"
    );

    // Named files, relative to the current directory or absolute.
    write(
        &etc.join("cluster/networks/dmz.toml"),
        "kind = \"bridge\"\n",
    );
    let absolute = etc.join("cluster/firewall/web.toml");
    let run = sign(
        &etc.join("cluster/networks"),
        &[
            "--secret-key",
            &key,
            "--config-dir",
            "../..",
            "dmz.toml",
            absolute.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "signed cluster/networks/dmz.toml\nsigned 1, already signed 1\n"
    );
    assert_eq!(check_tree(&etc, &load(&etc), None), vec![]);

    // Key material is never printed.
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret_line = secret.lines().nth(1).unwrap();
    assert!(!run.stdout.contains(secret_line) && !run.stderr.contains(secret_line));
}

#[test]
fn delete_signs_the_deletion_then_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let admin = KeyPair::generate_unencrypted_keypair().unwrap();
    let etc = tree(dir.path(), &admin);
    let key = secret_key_file(dir.path(), "admin.key", &admin);
    assert_eq!(sign(&etc, &["--secret-key", &key], None).code, 0);
    let running = load(&etc);

    let run = sign(
        &etc,
        &[
            "--secret-key",
            &key,
            "--delete",
            "cluster/firewall/web.toml",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "deleted cluster/firewall/web.toml (deletion signed)\n"
    );
    assert!(!etc.join("cluster/firewall/web.toml").exists());
    let digest: String = Sha256::digest(FW_WEB.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_minisign_valid(
        &admin,
        format!("horcrux-delete firewall/web.toml {digest}").as_bytes(),
        &etc.join("cluster/firewall/web.toml.minisig"),
        "horcrux delete path=firewall/web.toml",
    );
    assert_eq!(check_tree(&etc, &load(&etc), Some(&running)), vec![]);

    // The file is gone: its deletion can no longer be signed.
    let run = sign(
        &etc,
        &[
            "--secret-key",
            &key,
            "--delete",
            "cluster/firewall/web.toml",
        ],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no such file"), "{}", run.stderr);

    // A re-created file replaces the deletion signature with a file one.
    write(&etc.join("cluster/firewall/web.toml"), FW_WEB);
    let run = sign(&etc, &["--secret-key", &key], None);
    assert_eq!(
        run.stdout,
        "signed cluster/firewall/web.toml\nsigned 1, already signed 2\n"
    );
}

#[test]
fn another_key_re_signs_and_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, other) = (
        KeyPair::generate_unencrypted_keypair().unwrap(),
        KeyPair::generate_unencrypted_keypair().unwrap(),
    );
    let etc = tree(dir.path(), &admin);
    let admin_key = secret_key_file(dir.path(), "admin.key", &admin);
    let other_key = secret_key_file(dir.path(), "other.key", &other);
    assert_eq!(sign(&etc, &["--secret-key", &admin_key], None).code, 0);

    let run = sign(&etc, &["--secret-key", &other_key], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.ends_with("signed 3, already signed 0\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("is not in [trust] keys of cluster/cluster.toml"),
        "{}",
        run.stderr
    );
    assert_eq!(
        check_tree(&etc, &load(&etc), None).len(),
        3,
        "hostd refuses them"
    );
}

#[test]
fn password_protected_keys() {
    let dir = tempfile::tempdir().unwrap();
    let admin = KeyPair::generate_encrypted_keypair(Some("correct horse".into())).unwrap();
    let etc = tree(dir.path(), &admin);
    let key = dir.path().join("admin.key");
    std::fs::write(&key, admin.sk.to_box(None).unwrap().into_string()).unwrap();
    let key = key.to_str().unwrap();

    // No password and no terminal to ask on.
    let run = sign(&etc, &["--secret-key", key], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("HORCRUX_SIGN_PASSWORD"),
        "{}",
        run.stderr
    );

    let run = sign(&etc, &["--secret-key", key], Some("wrong"));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot use the secret key"),
        "{}",
        run.stderr
    );

    let run = sign(&etc, &["--secret-key", key], Some("correct horse"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("signed 3, already signed 0\n"));
    assert_eq!(check_tree(&etc, &load(&etc), None), vec![]);
}

#[test]
fn refuses_what_is_not_a_cluster_file() {
    let dir = tempfile::tempdir().unwrap();
    let admin = KeyPair::generate_unencrypted_keypair().unwrap();
    let etc = tree(dir.path(), &admin);
    let key = secret_key_file(dir.path(), "admin.key", &admin);
    write(&etc.join("cluster/notes.txt"), "hello");

    for (path, expected) in [
        ("node.toml", "is not under"),
        ("cluster/notes.txt", "is not a config file"),
        ("cluster/vms/.web.toml.swp", "is not a config file"),
    ] {
        let run = sign(&etc, &["--secret-key", &key, path], None);
        assert_eq!(run.code, 2, "{path}");
        assert!(run.stderr.contains(expected), "{path}: {}", run.stderr);
        assert_eq!(run.stdout, "", "nothing signed");
    }

    let run = sign(&etc, &["--secret-key", "missing.key"], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read the secret key"),
        "{}",
        run.stderr
    );

    std::fs::write(etc.join("bad.key"), "untrusted comment: x\nnot a key\n").unwrap();
    let run = sign(&etc, &["--secret-key", "bad.key"], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("is not a minisign secret key"),
        "{}",
        run.stderr
    );
}
