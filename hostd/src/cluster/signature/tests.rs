#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use horcrux_config::Config;
use minisign::KeyPair;

use super::*;

fn keypair() -> KeyPair {
    KeyPair::generate_unencrypted_keypair().unwrap()
}

fn trusting(pairs: &[&KeyPair]) -> TrustedKeys {
    let keys: Vec<String> = pairs.iter().map(|p| p.pk.to_base64()).collect();
    TrustedKeys::from_base64(keys.iter().map(String::as_str))
}

const CONTENT: &[u8] = b"kind = \"bridge\"\n";

// --- verify_file / verify_deletion -----------------------------------------

#[test]
fn a_file_signature_verifies() {
    let pair = keypair();
    let signature = sign_file(&pair.sk, "networks/lan.toml", CONTENT).unwrap();
    assert_eq!(
        verify_file(
            &trusting(&[&pair]),
            "networks/lan.toml",
            CONTENT,
            &signature
        ),
        Ok(())
    );
    // A standard minisign signature, with our trusted comment.
    let parsed = minisign_verify::Signature::decode(&signature).unwrap();
    assert_eq!(
        parsed.trusted_comment(),
        "horcrux file path=networks/lan.toml"
    );
}

#[test]
fn any_trusted_key_may_sign() {
    let (first, second) = (keypair(), keypair());
    let signature = sign_file(&second.sk, "vms/a.toml", CONTENT).unwrap();
    let keys = trusting(&[&first, &second]);
    assert_eq!(keys.len(), 2);
    assert_eq!(
        verify_file(&keys, "vms/a.toml", CONTENT, &signature),
        Ok(())
    );
}

#[test]
fn tampered_content_is_refused() {
    let pair = keypair();
    let signature = sign_file(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    assert_eq!(
        verify_file(
            &trusting(&[&pair]),
            "vms/a.toml",
            b"kind = \"vxlan\"\n",
            &signature
        ),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn a_signature_moved_to_another_path_is_refused() {
    let pair = keypair();
    let signature = sign_file(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    assert_eq!(
        verify_file(&trusting(&[&pair]), "vms/b.toml", CONTENT, &signature),
        Err(SignatureError::WrongPath {
            signed: "vms/a.toml".into()
        })
    );
}

#[test]
fn an_edited_trusted_comment_is_refused() {
    let pair = keypair();
    let signature = sign_file(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    let forged = signature.replace("path=vms/a.toml", "path=vms/b.toml");
    assert_ne!(forged, signature);
    assert_eq!(
        verify_file(&trusting(&[&pair]), "vms/b.toml", CONTENT, &forged),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn an_unknown_key_is_named() {
    let (trusted, stranger) = (keypair(), keypair());
    let signature = sign_file(&stranger.sk, "vms/a.toml", CONTENT).unwrap();
    let err = verify_file(&trusting(&[&trusted]), "vms/a.toml", CONTENT, &signature).unwrap_err();
    // The key ID as minisign prints it in minisign.pub.
    let box_text = stranger.pk.to_box().unwrap().into_string();
    let expected = box_text.lines().next().unwrap().rsplit(' ').next().unwrap();
    assert_eq!(
        err,
        SignatureError::UnknownKey {
            key_id: expected.to_string()
        }
    );
    assert!(
        err.to_string()
            .contains("not signed by a trusted key ([trust] keys in cluster.toml)"),
        "{err}"
    );
    assert!(
        trusting(&[&stranger]).contains_id(expected),
        "contains_id uses the same format"
    );
}

#[test]
fn no_trusted_key_refuses_everything() {
    let pair = keypair();
    let signature = sign_file(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    let err = verify_file(&TrustedKeys::default(), "vms/a.toml", CONTENT, &signature);
    assert!(matches!(err, Err(SignatureError::UnknownKey { .. })));
}

#[test]
fn deletion_signatures() {
    let pair = keypair();
    let keys = trusting(&[&pair]);
    let signature = sign_deletion(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    let digest = sha256_hex(CONTENT);
    assert_eq!(
        verify_deletion(&keys, "vms/a.toml", &digest, &signature),
        Ok(())
    );
    // The deletion of other content.
    assert_eq!(
        verify_deletion(&keys, "vms/a.toml", &sha256_hex(b"other"), &signature),
        Err(SignatureError::BadSignature)
    );
    // The deletion of another file.
    assert_eq!(
        verify_deletion(&keys, "vms/b.toml", &digest, &signature),
        Err(SignatureError::WrongPath {
            signed: "vms/a.toml".into()
        })
    );
    // What it covers, so it can be reproduced with plain minisign.
    let parsed = minisign_verify::Signature::decode(&signature).unwrap();
    assert_eq!(parsed.trusted_comment(), "horcrux delete path=vms/a.toml");
    let message = format!("horcrux-delete vms/a.toml {digest}");
    let public = minisign_verify::PublicKey::from_base64(&pair.pk.to_base64()).unwrap();
    public.verify(message.as_bytes(), &parsed, false).unwrap();
}

#[test]
fn a_file_signature_is_not_a_deletion_signature_nor_the_reverse() {
    let pair = keypair();
    let keys = trusting(&[&pair]);
    let file = sign_file(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    assert_eq!(
        verify_deletion(&keys, "vms/a.toml", &sha256_hex(CONTENT), &file),
        Err(SignatureError::WrongKind {
            expected: SignatureKind::Deletion,
            found: SignatureKind::File
        })
    );
    let deletion = sign_deletion(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    assert_eq!(
        verify_file(&keys, "vms/a.toml", CONTENT, &deletion),
        Err(SignatureError::WrongKind {
            expected: SignatureKind::File,
            found: SignatureKind::Deletion
        })
    );
}

#[test]
fn a_plain_minisign_signature_is_not_a_horcrux_one() {
    let pair = keypair();
    let plain = minisign::sign(None, &pair.sk, CONTENT, None, None)
        .unwrap()
        .into_string();
    let err = verify_file(&trusting(&[&pair]), "vms/a.toml", CONTENT, &plain).unwrap_err();
    assert!(matches!(err, SignatureError::Foreign(_)), "{err:?}");
}

#[test]
fn garbage_signatures_are_refused_without_panicking() {
    let pair = keypair();
    let keys = trusting(&[&pair]);
    let valid = sign_file(&pair.sk, "vms/a.toml", CONTENT).unwrap();
    let lines: Vec<&str> = valid.lines().collect();
    let garbage = [
        String::new(),
        " \n\n".into(),
        "hello".into(),
        "untrusted comment: x\n!!!\ntrusted comment: y\n!!!\n".into(),
        "\n\n\n\n".into(),
        // Valid base64 of the wrong lengths.
        "untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA\n".into(),
        lines[..2].join("\n"),
        lines[..3].join("\n"),
        // The trusted comment without its prefix.
        format!(
            "{}\n{}\n{}\n{}\n",
            lines[0], lines[1], "horcrux file path=vms/a.toml", lines[3]
        ),
        // A truncated global signature.
        format!(
            "{}\n{}\n{}\n{}\n",
            lines[0],
            lines[1],
            lines[2],
            &lines[3][..10]
        ),
        "é\u{0}\u{ffff}".into(),
    ];
    for text in &garbage {
        let result = verify_file(&keys, "vms/a.toml", CONTENT, text);
        assert!(
            matches!(result, Err(SignatureError::Unparsable(_))),
            "{text:?}: {result:?}"
        );
        let result = verify_deletion(&keys, "vms/a.toml", "00", text);
        assert!(
            matches!(result, Err(SignatureError::Unparsable(_))),
            "{text:?}"
        );
    }
}

#[test]
fn unusable_keys_are_skipped() {
    let pair = keypair();
    let good = pair.pk.to_base64();
    let keys = TrustedKeys::from_base64(["", "RWQ...", "!!!", good.as_str()]);
    assert_eq!(keys.len(), 1);
}

#[test]
fn paths_that_do_not_fit_a_comment_are_not_signed() {
    let pair = keypair();
    for path in ["", "vms/a.toml\nhorcrux file path=vms/b.toml", "a\rb"] {
        assert!(matches!(
            sign_file(&pair.sk, path, CONTENT),
            Err(SignError::BadPath(_))
        ));
    }
}

#[test]
fn signature_paths() {
    assert_eq!(signature_path("vms/web-1.toml"), "vms/web-1.toml.minisig");
    assert_eq!(
        signature_path("cluster/cluster.toml"),
        "cluster/cluster.toml.minisig"
    );
}

// --- check_tree ------------------------------------------------------------

/// A config directory on disk.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file, `path` relative to the config dir.
    fn write(&self, path: &str, text: &str) {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    /// Writes and signs a `cluster/` file.
    fn write_signed(&self, path: &str, text: &str, signer: &KeyPair) {
        self.write(path, text);
        self.sign(path, signer);
    }

    fn sign(&self, path: &str, signer: &KeyPair) {
        let text = std::fs::read(self.path().join(path)).unwrap();
        let rel = path.strip_prefix("cluster/").unwrap();
        let signature = sign_file(&signer.sk, rel, &text).unwrap();
        self.write(&signature_path(path), &signature);
    }

    /// Deletes a `cluster/` file, signing the deletion when `signer` is given.
    fn delete(&self, path: &str, signer: Option<&KeyPair>) {
        let full = self.path().join(path);
        let text = std::fs::read(&full).unwrap();
        std::fs::remove_file(&full).unwrap();
        match signer {
            Some(signer) => {
                let rel = path.strip_prefix("cluster/").unwrap();
                let signature = sign_deletion(&signer.sk, rel, &text).unwrap();
                self.write(&signature_path(path), &signature);
            }
            None => {
                let _ = std::fs::remove_file(self.path().join(signature_path(path)));
            }
        }
    }

    fn load(&self) -> Config {
        horcrux_config::load(self.path())
            .unwrap()
            .into_valid()
            .unwrap()
    }

    fn check(&self, running: Option<&Config>) -> Vec<Diagnostic> {
        check_tree(self.path(), &self.load(), running)
    }
}

fn cluster_toml(keys: &[&KeyPair], require: bool) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.pk.to_base64()))
        .collect();
    format!(
        "name = \"lab\"\n\n[[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\n\
         [trust]\nkeys = [{}]\nrequire_signatures = {require}\n",
        keys.join(", ")
    )
}

const FW_WEB: &str =
    "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"80,443\"\n";

/// cluster.toml trusting `admin`, a network and a firewall group, all
/// signed by `admin`.
fn signed_tree(admin: &KeyPair) -> Tree {
    let tree = Tree::new();
    tree.write("node.toml", "name = \"node1\"\n");
    tree.write_signed("cluster/cluster.toml", &cluster_toml(&[admin], true), admin);
    tree.write_signed("cluster/networks/lan.toml", "kind = \"bridge\"\n", admin);
    tree.write_signed("cluster/firewall/web.toml", FW_WEB, admin);
    tree
}

fn files(diagnostics: &[Diagnostic]) -> Vec<&str> {
    diagnostics.iter().map(|d| d.file.as_str()).collect()
}

#[test]
fn a_fully_signed_tree_passes() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    assert_eq!(tree.check(None), vec![]);
    let running = tree.load();
    assert_eq!(tree.check(Some(&running)), vec![]);
}

#[test]
fn an_unsigned_file_is_one_diagnostic() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    let running = tree.load();
    tree.write("cluster/vms/.keep", "not a config file, not checked");
    tree.write("cluster/networks/dmz.toml", "kind = \"bridge\"\n");
    let diagnostics = tree.check(Some(&running));
    assert_eq!(files(&diagnostics), ["cluster/networks/dmz.toml"]);
    let d = &diagnostics[0];
    assert_eq!((d.line, d.column), (None, None));
    assert_eq!(
        d.message,
        "not signed: cluster/networks/dmz.toml.minisig is missing"
    );
    assert_eq!(
        d.hint.as_deref(),
        Some(
            "sign it with a key the running config trusts: \
             horcrux sign --secret-key KEY cluster/networks/dmz.toml"
        )
    );
}

#[test]
fn an_edit_after_signing_is_refused() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    let running = tree.load();
    tree.write(
        "cluster/networks/lan.toml",
        "kind = \"bridge\"\nmtu = 9000\n",
    );
    let diagnostics = tree.check(Some(&running));
    assert_eq!(files(&diagnostics), ["cluster/networks/lan.toml"]);
    assert!(diagnostics[0].message.starts_with("bad signature"));
}

#[test]
fn nothing_is_checked_unless_signatures_are_required() {
    let admin = keypair();
    let tree = Tree::new();
    tree.write("cluster/cluster.toml", &cluster_toml(&[&admin], false));
    tree.write("cluster/networks/lan.toml", "kind = \"bridge\"\n");
    let running = tree.load();
    assert_eq!(tree.check(Some(&running)), vec![]);
    // A one-node cluster without cluster.toml.
    let bare = Tree::new();
    bare.write("node.toml", "name = \"node1\"\n");
    bare.write("cluster/networks/lan.toml", "kind = \"bridge\"\n");
    assert_eq!(bare.check(None), vec![]);
}

#[test]
fn turning_signatures_on_uses_the_new_keys() {
    let admin = keypair();
    let tree = Tree::new();
    tree.write("cluster/cluster.toml", &cluster_toml(&[&admin], false));
    tree.write("cluster/networks/lan.toml", "kind = \"bridge\"\n");
    let running = tree.load();
    tree.write("cluster/cluster.toml", &cluster_toml(&[&admin], true));
    assert_eq!(
        files(&tree.check(Some(&running))),
        ["cluster/cluster.toml", "cluster/networks/lan.toml"]
    );
    tree.sign("cluster/cluster.toml", &admin);
    tree.sign("cluster/networks/lan.toml", &admin);
    assert_eq!(tree.check(Some(&running)), vec![]);
}

#[test]
fn a_new_key_must_be_added_by_an_already_trusted_one() {
    let (admin, intruder) = (keypair(), keypair());
    let tree = signed_tree(&admin);
    let running = tree.load();
    // An intruder trusts its own key and re-signs everything with it.
    tree.write_signed(
        "cluster/cluster.toml",
        &cluster_toml(&[&admin, &intruder], true),
        &intruder,
    );
    tree.sign("cluster/networks/lan.toml", &intruder);
    tree.sign("cluster/firewall/web.toml", &intruder);
    let diagnostics = tree.check(Some(&running));
    assert_eq!(
        files(&diagnostics),
        [
            "cluster/cluster.toml",
            "cluster/firewall/web.toml",
            "cluster/networks/lan.toml"
        ]
    );
    assert!(
        diagnostics
            .iter()
            .all(|d| d.message.starts_with("not signed by a trusted key")),
        "{diagnostics:#?}"
    );
    // Signed by the admin, the same change is accepted; afterwards the
    // new key is trusted.
    for path in [
        "cluster/cluster.toml",
        "cluster/networks/lan.toml",
        "cluster/firewall/web.toml",
    ] {
        tree.sign(path, &admin);
    }
    assert_eq!(tree.check(Some(&running)), vec![]);
    let running = tree.load();
    tree.sign("cluster/networks/lan.toml", &intruder);
    assert_eq!(tree.check(Some(&running)), vec![]);
}

#[test]
fn turning_signatures_off_needs_a_signature() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    let running = tree.load();
    tree.write("cluster/cluster.toml", &cluster_toml(&[&admin], false));
    assert_eq!(files(&tree.check(Some(&running))), ["cluster/cluster.toml"]);
    tree.sign("cluster/cluster.toml", &admin);
    assert_eq!(tree.check(Some(&running)), vec![]);
}

#[test]
fn a_deletion_needs_a_deletion_signature() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    let running = tree.load();

    tree.delete("cluster/firewall/web.toml", None);
    let diagnostics = tree.check(Some(&running));
    assert_eq!(files(&diagnostics), ["cluster/firewall/web.toml"]);
    assert_eq!(
        diagnostics[0].message,
        "deleted without a valid deletion signature: \
         not signed: cluster/firewall/web.toml.minisig is missing"
    );
    assert!(
        diagnostics[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("horcrux sign --secret-key KEY --delete cluster/firewall/web.toml")
    );

    // Deleting with plain `rm` leaves the file signature: the wrong kind.
    tree.write("cluster/firewall/web.toml", FW_WEB);
    tree.sign("cluster/firewall/web.toml", &admin);
    std::fs::remove_file(tree.path().join("cluster/firewall/web.toml")).unwrap();
    let diagnostics = tree.check(Some(&running));
    assert!(
        diagnostics[0]
            .message
            .ends_with("a file signature where a deletion signature is needed"),
        "{diagnostics:#?}"
    );

    tree.write("cluster/firewall/web.toml", FW_WEB);
    tree.delete("cluster/firewall/web.toml", Some(&admin));
    assert_eq!(tree.check(Some(&running)), vec![]);
}

#[test]
fn a_deletion_signature_covers_the_running_content() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    let running = tree.load();
    // Signed for other content than what the running config has.
    tree.write("cluster/firewall/web.toml", "# something else\n");
    tree.delete("cluster/firewall/web.toml", Some(&admin));
    let diagnostics = tree.check(Some(&running));
    assert_eq!(files(&diagnostics), ["cluster/firewall/web.toml"]);
    assert!(diagnostics[0].message.contains("bad signature"));
}

#[test]
fn a_deletion_signed_by_an_untrusted_key_is_refused() {
    let (admin, intruder) = (keypair(), keypair());
    let tree = signed_tree(&admin);
    let running = tree.load();
    tree.delete("cluster/firewall/web.toml", Some(&intruder));
    let diagnostics = tree.check(Some(&running));
    assert_eq!(files(&diagnostics), ["cluster/firewall/web.toml"]);
    assert!(
        diagnostics[0]
            .message
            .contains("not signed by a trusted key")
    );
}

#[test]
fn unreadable_signatures_are_reported() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    // A directory where the signature should be.
    std::fs::remove_file(tree.path().join("cluster/networks/lan.toml.minisig")).unwrap();
    std::fs::create_dir(tree.path().join("cluster/networks/lan.toml.minisig")).unwrap();
    // A signature far too large to be one.
    tree.write(
        "cluster/firewall/web.toml.minisig",
        &"x".repeat(MAX_SIGNATURE_LEN as usize + 1),
    );
    let diagnostics = tree.check(None);
    assert_eq!(
        files(&diagnostics),
        ["cluster/firewall/web.toml", "cluster/networks/lan.toml"]
    );
}

#[test]
fn signature_files_are_listed_for_change_detection() {
    let admin = keypair();
    let tree = signed_tree(&admin);
    tree.write("cluster/.git/x.minisig", "ignored");
    tree.write("cluster/vms/.a.toml.minisig", "ignored");
    tree.write("node.toml.minisig", "outside cluster/");
    // A symlink loop is walked once.
    std::os::unix::fs::symlink(
        tree.path().join("cluster"),
        tree.path().join("cluster/networks/loop"),
    )
    .unwrap();
    let listed: Vec<String> = read_signatures(tree.path())
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        listed,
        [
            "cluster/cluster.toml.minisig",
            "cluster/firewall/web.toml.minisig",
            "cluster/networks/lan.toml.minisig"
        ]
    );
}

/// The daemon's reload refuses an unsigned change, and notices when it
/// gets signed although no `.toml` file changed.
#[test]
fn reload_waits_for_the_signature() {
    use crate::daemon::{Outcome, Reloader};
    use crate::generation::GenerationStore;

    let admin = keypair();
    let tree = signed_tree(&admin);
    let state = tempfile::tempdir().unwrap();
    let store = GenerationStore::open(state.path()).unwrap();
    let mut reloader = Reloader::default();
    let reload = |reloader: &mut Reloader, running: Option<&Config>| {
        reloader
            .reload(tree.path(), state.path(), &store, running)
            .unwrap()
    };

    let Outcome::Accepted { config, .. } = reload(&mut reloader, None) else {
        panic!("a signed tree is accepted");
    };
    tree.write("cluster/networks/dmz.toml", "kind = \"bridge\"\n");
    let Outcome::Rejected(errors) = reload(&mut reloader, Some(&config)) else {
        panic!("an unsigned file is rejected");
    };
    assert_eq!(files(&errors), ["cluster/networks/dmz.toml"]);
    assert!(matches!(
        reload(&mut reloader, Some(&config)),
        Outcome::Unchanged
    ));
    tree.sign("cluster/networks/dmz.toml", &admin);
    assert!(matches!(
        reload(&mut reloader, Some(&config)),
        Outcome::Accepted { new: true, .. }
    ));
}
