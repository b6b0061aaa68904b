//! `horcrux deploy --from DIR`: check a pushed tree and write it into the
//! config directory in one atomic step, announced to hostd as a push. The
//! appliance's git receiver (post-receive) and rsync receiver use it.
//!
//! A tree without `node.toml` (a `cluster/` pushed alone) is checked and
//! deployed together with the node's own `node.toml`, which stays.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use horcrux_config::load::read_tree;
use horcrux_config::{Config, TreeFile, check_files};

use super::{Outcome, exit, report};
use crate::cluster::signature;
use crate::deploy::deploy_tree;
use crate::errors::chain;
use crate::generation::{GenerationStore, Source, TreeHash, hint, stored_contents, tree_hash};

/// Where to deploy and how long to wait for hostd to accept the tree.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub config_dir: &'a Path,
    pub state_dir: &'a Path,
    pub run_dir: &'a Path,
    /// Wait this long for hostd to run the deployed tree.
    pub wait: Option<Duration>,
    /// Check only; write nothing.
    pub check_only: bool,
}

pub fn run(from: &Path, target: &Target<'_>) -> Outcome {
    let fail = |code, message: String| Outcome::error(code, &format!("horcrux deploy: {message}"));
    let mut files = match read_tree(from) {
        Ok(files) => files,
        Err(e) => return fail(exit::UNUSABLE, chain(&e)),
    };
    let mut notes = String::new();
    if !files.iter().any(|f| f.path == "node.toml") {
        let live = target.config_dir.join("node.toml");
        if let Ok(content) = std::fs::read(&live) {
            let _ = writeln!(
                notes,
                "the tree has no node.toml: checking it with this node's {}",
                live.display()
            );
            files.push(TreeFile {
                path: "node.toml".into(),
                content: Ok(content),
            });
        }
    }
    let config = match check_files(files).into_valid() {
        Ok(config) if config.node.is_none() => {
            return fail(
                exit::INVALID,
                "node.toml is missing from the tree and from the node".into(),
            );
        }
        Ok(config) => config,
        Err(errors) => {
            return Outcome {
                stdout: notes + &report::render(&errors),
                stderr: "horcrux deploy: the tree is invalid; nothing was changed\n".into(),
                code: exit::INVALID,
            };
        }
    };
    // Refused here, before anything is written, rather than by hostd after.
    let live = live_config(target.config_dir);
    let unsigned = signature::check_tree(from, &config, live.as_ref());
    if !unsigned.is_empty() {
        return Outcome {
            stdout: notes + &report::render(&unsigned),
            stderr:
                "horcrux deploy: changes are not signed as [trust] requires; nothing was changed\n"
                    .into(),
            code: exit::INVALID,
        };
    }
    let contents = stored_contents(&config, &signature::read_signatures(from));
    let hash = hash_of(&contents);
    if target.check_only {
        let _ = writeln!(notes, "ok: the tree is valid (tree {})", short(&hash));
        return Outcome::ok(notes);
    }
    if live_hash(live.as_ref(), target.config_dir).as_ref() == Some(&hash) {
        let _ = writeln!(
            notes,
            "{} already holds this tree ({}); nothing to deploy",
            target.config_dir.display(),
            short(&hash)
        );
        return Outcome::ok(notes);
    }
    if let Err(e) = hint::announce(target.run_dir, Source::Push, Some(&hash)) {
        return fail(exit::INVALID, format!("cannot announce the push: {e}"));
    }
    if let Err(e) = deploy_tree(target.config_dir, &contents) {
        hint::withdraw(target.run_dir);
        return fail(exit::INVALID, chain(&e));
    }
    let _ = writeln!(
        notes,
        "deployed tree {} to {}",
        short(&hash),
        target.config_dir.display()
    );
    let deployed = live_config(target.config_dir);
    if live_hash(deployed.as_ref(), target.config_dir).as_ref() != Some(&hash) {
        // Something else in the directory (a stray file) changes what
        // hostd sees: do not hold its reloads waiting for our hash.
        hint::withdraw(target.run_dir);
        let _ = writeln!(
            notes,
            "warning: {} holds other files, so hostd sees a different tree; run `horcrux check {}`",
            target.config_dir.display(),
            target.config_dir.display()
        );
        return Outcome::ok(notes);
    }
    if let Some(wait) = target.wait {
        notes.push_str(&wait_for(target.state_dir, &hash, wait));
    }
    Outcome::ok(notes)
}

fn hash_of(contents: &[(String, Vec<u8>)]) -> TreeHash {
    tree_hash(contents.iter().map(|(p, c)| (p.as_str(), c.as_slice())))
}

/// The hash hostd would give the tree in `config_dir`, if it is valid
/// (`config`, as [`live_config`] read it).
fn live_hash(config: Option<&Config>, config_dir: &Path) -> Option<TreeHash> {
    let signatures = signature::read_signatures(config_dir);
    Some(hash_of(&stored_contents(config?, &signatures)))
}

/// The tree in the config directory, if it is valid.
fn live_config(config_dir: &Path) -> Option<Config> {
    check_files(read_tree(config_dir).ok()?).into_valid().ok()
}

/// Polls the generation store until hostd runs the tree `hash`.
fn wait_for(state_dir: &Path, hash: &TreeHash, wait: Duration) -> String {
    let started = Instant::now();
    loop {
        let latest = GenerationStore::open(state_dir)
            .ok()
            .and_then(|s| s.latest().ok().flatten());
        if let Some(g) = latest.filter(|g| g.hash == hash.0) {
            return format!(
                "hostd accepted it as generation {} (source {}) after {:.1} s\n",
                g.id,
                g.source,
                started.elapsed().as_secs_f64()
            );
        }
        if started.elapsed() >= wait {
            return format!(
                "hostd has not accepted it within {} s: see the status page or `journalctl -u horcrux-hostd`\n",
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn short(hash: &TreeHash) -> String {
    hash.0.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const NODE: &str = "name = \"node1\"\n";

    fn target<'a>(root: &'a Path, check_only: bool) -> Target<'a> {
        Target {
            config_dir: root,
            state_dir: root,
            run_dir: root,
            wait: None,
            check_only,
        }
    }

    /// A deploy into `live` with hostd's state and run dirs in `state`.
    fn to_node<'a>(live: &'a Path, state: &'a Path) -> Target<'a> {
        Target {
            state_dir: state,
            run_dir: state,
            ..target(live, false)
        }
    }

    #[test]
    fn invalid_tree_is_refused_with_every_error_and_nothing_written() {
        let from = tempfile::tempdir().unwrap();
        let live = tempfile::tempdir().unwrap();
        fs::write(
            from.path().join("node.toml"),
            "name = \"node1\"\nbogus = 1\n",
        )
        .unwrap();
        let out = run(from.path(), &target(live.path(), false));
        assert_eq!(out.code, exit::INVALID);
        assert!(out.stdout.contains("unknown key `bogus`"), "{}", out.stdout);
        assert!(!live.path().join("node.toml").exists());
    }

    #[test]
    fn cluster_alone_is_checked_with_the_nodes_own_node_toml() {
        let from = tempfile::tempdir().unwrap();
        let live = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        fs::write(live.path().join("node.toml"), NODE).unwrap();
        fs::create_dir_all(from.path().join("cluster/networks")).unwrap();
        fs::write(
            from.path().join("cluster/networks/isolated.toml"),
            "kind = \"bridge\"\n",
        )
        .unwrap();
        let t = to_node(live.path(), state.path());
        let out = run(from.path(), &t);
        assert_eq!(out.code, exit::OK, "{out:?}");
        assert!(out.stdout.contains("has no node.toml"), "{}", out.stdout);
        assert_eq!(
            fs::read_to_string(live.path().join("node.toml")).unwrap(),
            NODE
        );
        assert!(live.path().join("cluster/networks/isolated.toml").exists());
        // A second deploy of the same tree changes nothing.
        let again = run(from.path(), &t);
        assert!(
            again.stdout.contains("nothing to deploy"),
            "{}",
            again.stdout
        );
    }

    #[test]
    fn signatures_travel_with_the_tree_and_unsigned_changes_are_refused() {
        let from = tempfile::tempdir().unwrap();
        let live = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let keys = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let cluster_toml = format!(
            "name = \"lab\"\n[[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\
             [trust]\nkeys = [\"{}\"]\n",
            keys.pk.to_base64()
        );
        let write = |rel: &str, text: &str, sign: bool| {
            let path = from.path().join("cluster").join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            if sign {
                let sig = signature::sign_file(&keys.sk, rel, text.as_bytes()).unwrap();
                fs::write(format!("{}.minisig", path.display()), sig).unwrap();
            }
        };
        fs::write(from.path().join("node.toml"), NODE).unwrap();
        write("cluster.toml", &cluster_toml, true);
        write("networks/lan.toml", "kind = \"bridge\"\n", true);
        let t = to_node(live.path(), state.path());
        let out = run(from.path(), &t);
        assert_eq!(out.code, exit::OK, "{out:?}");
        assert!(
            live.path()
                .join("cluster/networks/lan.toml.minisig")
                .exists()
        );
        assert!(live.path().join("cluster/cluster.toml.minisig").exists());

        write("networks/dmz.toml", "kind = \"bridge\"\n", false);
        let out = run(from.path(), &t);
        assert_eq!(out.code, exit::INVALID, "{out:?}");
        assert!(
            out.stdout.contains("cluster/networks/dmz.toml"),
            "{}",
            out.stdout
        );
        assert!(!live.path().join("cluster/networks/dmz.toml").exists());
    }

    #[test]
    fn check_only_writes_nothing() {
        let from = tempfile::tempdir().unwrap();
        let live = tempfile::tempdir().unwrap();
        fs::write(from.path().join("node.toml"), NODE).unwrap();
        let out = run(from.path(), &target(live.path(), true));
        assert_eq!(out.code, exit::OK, "{out:?}");
        assert!(!live.path().join("node.toml").exists());
    }
}
