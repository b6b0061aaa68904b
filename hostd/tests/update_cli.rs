//! `horcrux update`, `update-status` and `boot-health` run as the real
//! binary against a node laid out in a temporary directory: the ESP, two
//! regular files as the slot "devices" with their by-partlabel and
//! by-partuuid links, the kernel command line, image-release and the
//! trusted key directory. Bundles are built and signed here.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use minisign::KeyPair;
use sha2::{Digest as _, Sha256};

const SLOT_SIZE: usize = 128 * 1024;
const UUID_A: &str = "6a1b2c3d-0000-4000-8000-00000000000a";
const UUID_B: &str = "6a1b2c3d-0000-4000-8000-00000000000b";
const VERITY_HASH: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A node in a temporary directory.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    key: KeyPair,
}

impl Node {
    /// Running slot A, image `horcrux-old` built 2026-01-01, trusting one key.
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for sub in [
            "efi/loader/entries",
            "dev",
            "by-partlabel",
            "by-partuuid",
            "keys",
            "efivars",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let write = |rel: &str, content: &[u8]| std::fs::write(root.join(rel), content).unwrap();
        write("dev/sda2", &[0xaa; SLOT_SIZE]);
        write("dev/sda3", &[0xbb; SLOT_SIZE]);
        let link = |target: &str, at: &str| {
            std::os::unix::fs::symlink(target, root.join(at)).unwrap();
        };
        link("../dev/sda2", "by-partlabel/horcrux-root-a");
        link("../dev/sda3", "by-partlabel/horcrux-root-b");
        link("../dev/sda2", &format!("by-partuuid/{UUID_A}"));
        link("../dev/sda3", &format!("by-partuuid/{UUID_B}"));
        write(
            "cmdline",
            "initrd=\\horcrux\\a\\initrd.img root=/dev/mapper/root horcrux.slot=a quiet\n"
                .as_bytes(),
        );
        write(
            "image-release",
            "IMAGE_ID=horcrux-old\nBUILT=2026-01-01T00:00:00Z\n".as_bytes(),
        );
        let key = KeyPair::generate_unencrypted_keypair().unwrap();
        write(
            "keys/release.pub",
            key.pk.to_box().unwrap().into_string().as_bytes(),
        );
        write(
            "efi/loader/entries/horcrux-a.conf",
            "title Horcrux 1 (slot A)\nversion 4\nsort-key horcrux\n".as_bytes(),
        );
        Node {
            _dir: dir,
            root,
            key,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        std::fs::write(self.path(rel), content).unwrap();
    }

    /// The names in a directory of the node, sorted.
    fn list(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn run(&self, command: &str, args: &[&str]) -> Run {
        let paths = [
            ("--keys-dir", "keys"),
            ("--esp", "efi"),
            ("--cmdline", "cmdline"),
            ("--image-release", "image-release"),
            ("--by-partlabel", "by-partlabel"),
            ("--by-partuuid", "by-partuuid"),
            ("--staging-dir", "staging"),
            ("--efivars", "efivars"),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_horcrux"));
        cmd.arg(command).args(args).stdin(Stdio::null());
        for (flag, rel) in paths {
            cmd.arg(flag).arg(self.path(rel));
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn update(&self, bundle: &Path, args: &[&str]) -> Run {
        let mut all = vec![bundle.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run("update", &all)
    }

    /// Every file and link under the node, for "nothing changed" checks.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    out.insert(rel, target.into_os_string().into_encoded_bytes());
                } else if meta.is_dir() {
                    out.insert(rel, b"<dir>".to_vec());
                    walk(&path, base, out);
                } else {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that are not all alike.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// What goes into a bundle.
#[derive(Clone)]
struct Spec {
    image_id: String,
    version: String,
    built: String,
    root: Vec<u8>,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
}

impl Spec {
    fn new(image_id: &str, built: &str) -> Spec {
        Spec {
            image_id: image_id.into(),
            version: "2026.11.26-124501".into(),
            built: built.into(),
            root: pattern(64 * 1024, 1),
            kernel: pattern(3000, 2),
            initrd: pattern(5000, 3),
        }
    }

    fn manifest(&self) -> String {
        format!(
            "format = 1\nimage_id = \"{}\"\nversion = \"{}\"\nbuilt = \"{}\"\n\
             cmdline = \"console=ttyS0,115200 panic=10\"\n\n\
             [root]\nfile = \"root.img\"\nsize = {}\nsha256 = \"{}\"\nfstype = \"erofs\"\n\
             verity_root_hash = \"{VERITY_HASH}\"\nverity_hash_offset = 49152\n\n\
             [kernel]\nfile = \"vmlinuz\"\nsize = {}\nsha256 = \"{}\"\n\n\
             [initrd]\nfile = \"initrd.img\"\nsize = {}\nsha256 = \"{}\"\n",
            self.image_id,
            self.version,
            self.built,
            self.root.len(),
            sha(&self.root),
            self.kernel.len(),
            sha(&self.kernel),
            self.initrd.len(),
            sha(&self.initrd),
        )
    }
}

fn sign(key: &KeyPair, message: &[u8]) -> String {
    minisign::sign(None, &key.sk, message, None, None)
        .unwrap()
        .into_string()
}

fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes a bundle of `spec` with `manifest` signed by `key` (the
/// manifest may differ from the spec's, to tamper with it).
fn write_bundle(dir: &Path, name: &str, spec: &Spec, manifest: &str, signature: &str) -> PathBuf {
    let bytes = tar(&[
        ("manifest.toml", manifest.as_bytes()),
        ("manifest.toml.minisig", signature.as_bytes()),
        ("vmlinuz", &spec.kernel),
        ("initrd.img", &spec.initrd),
        ("root.img", &spec.root),
    ]);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn signed_bundle(dir: &Path, spec: &Spec, key: &KeyPair) -> PathBuf {
    let manifest = spec.manifest();
    let signature = sign(key, manifest.as_bytes());
    write_bundle(dir, "bundle.tar", spec, &manifest, &signature)
}

fn expected_entry(spec: &Spec, seq: u64) -> String {
    format!(
        "title Horcrux {} (slot B)\nversion {seq}\nsort-key horcrux\n\
         linux /horcrux/b/vmlinuz\ninitrd /horcrux/b/initrd.img\n\
         options root=/dev/mapper/root rootfstype=erofs ro roothash={VERITY_HASH} \
         systemd.verity_root_data=PARTUUID={UUID_B} systemd.verity_root_hash=PARTUUID={UUID_B} \
         systemd.verity_root_options=hash-offset=49152 horcrux.slot=b horcrux.image={} \
         console=ttyS0,115200 panic=10\n",
        spec.version, spec.image_id
    )
}

fn entries(node: &Node) -> Vec<String> {
    node.list("efi/loader/entries")
}

#[test]
fn installs_into_the_inactive_slot_then_is_idempotent() {
    let node = Node::new();
    // An old entry of slot B, pointing at what is about to be overwritten.
    node.write(
        "efi/loader/entries/horcrux-b.conf",
        "title Horcrux 0 (slot B)\nversion 2\n",
    );
    node.write("efi/loader/entries/horcrux-b+0-3.conf", "version 3\n");
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = signed_bundle(bundles.path(), &spec, &node.key);

    let run = node.update(&bundle, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // The slot holds root.img byte for byte; the rest of it is untouched.
    let slot_b = std::fs::read(node.path("dev/sda3")).unwrap();
    assert_eq!(&slot_b[..spec.root.len()], spec.root.as_slice());
    assert!(slot_b[spec.root.len()..].iter().all(|&b| b == 0xbb));
    assert_eq!(
        std::fs::read(node.path("dev/sda2")).unwrap(),
        vec![0xaa; SLOT_SIZE]
    );
    assert_eq!(
        std::fs::read(node.path("efi/horcrux/b/vmlinuz")).unwrap(),
        spec.kernel
    );
    assert_eq!(
        std::fs::read(node.path("efi/horcrux/b/initrd.img")).unwrap(),
        spec.initrd
    );
    let kernel_files = node.list("efi/horcrux/b");
    assert_eq!(kernel_files, ["initrd.img", "vmlinuz"]);

    // The old B entries are gone; the new one is one above every version.
    assert_eq!(entries(&node), ["horcrux-a.conf", "horcrux-b+3.conf"]);
    assert_eq!(
        std::fs::read_to_string(node.path("efi/loader/entries/horcrux-b+3.conf")).unwrap(),
        expected_entry(&spec, 5)
    );
    assert_eq!(
        std::fs::read_to_string(node.path("efi/loader/entries/horcrux-a.conf")).unwrap(),
        "title Horcrux 1 (slot A)\nversion 4\nsort-key horcrux\n"
    );

    assert!(
        run.stdout.contains(
            "reboot to boot slot B (falls back to slot A unless hostd reaches READY within 3 boots)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("slot B written: Horcrux 2026.11.26-124501 (horcrux-new)")
    );
    assert!(
        run.stdout
            .contains("boot entry: horcrux-b+3.conf (version 5)")
    );
    for progress in [
        "horcrux update: signature: manifest.toml is signed by key ID",
        "(release.pub)",
        "horcrux update: manifest: horcrux-new version 2026.11.26-124501",
        "sizes and SHA-256 match the manifest",
        "the bundle is not older",
        &format!("PARTUUID={UUID_B}"),
        "removed the boot entries of slot B: horcrux-b+0-3.conf, horcrux-b.conf",
        "(100%)",
        "read back slot B: SHA-256 matches",
        "boot entry written: horcrux-b+3.conf (version 5)",
    ] {
        assert!(
            run.stderr.contains(progress),
            "{progress:?} in\n{}",
            run.stderr
        );
    }

    // update-status sees the new entry first.
    let status = node.run("update-status", &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("running: slot A"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("image: horcrux-old"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("trial (3 tries left, 0 done)"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("next boot: horcrux-b+3.conf (slot B)"),
        "{}",
        status.stdout
    );
    let json = node.run("update-status", &["--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["next"], "horcrux-b+3.conf");
    assert_eq!(value["entries"][0]["seq"], 5);
    assert_eq!(value["entries"][1]["state"], "good");

    // Booted into the new image: the same bundle is "already running".
    node.write(
        "image-release",
        "IMAGE_ID=horcrux-new\nBUILT=2026-11-26T12:45:01Z\n",
    );
    let before = node.snapshot();
    let again = node.update(&bundle, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, "already running horcrux-new\n");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn tries_are_in_the_entry_name_and_bounded() {
    let node = Node::new();
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = signed_bundle(bundles.path(), &spec, &node.key);
    for bad in ["0", "10"] {
        let run = node.update(&bundle, &["--tries", bad]);
        assert_eq!(run.code, 2, "--tries {bad}: {}", run.stderr);
    }
    let run = node.update(&bundle, &["--tries", "9", "--no-reboot-hint"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(entries(&node), ["horcrux-a.conf", "horcrux-b+9.conf"]);
    assert!(!run.stdout.contains("reboot"), "{}", run.stdout);
}

/// Runs an update that must be refused, and checks that nothing changed.
fn refused(node: &Node, bundle: &Path, args: &[&str], why: &str) {
    let before = node.snapshot();
    let run = node.update(bundle, args);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(why), "{why:?} in\n{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(node.snapshot() == before, "the node changed");
}

#[test]
fn an_untrusted_key_changes_nothing() {
    let node = Node::new();
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let bundles = tempfile::tempdir().unwrap();
    let stranger = KeyPair::generate_unencrypted_keypair().unwrap();
    let bundle = signed_bundle(bundles.path(), &spec, &stranger);
    refused(
        &node,
        &bundle,
        &[],
        "untrusted signature: manifest.toml is signed by key ID",
    );
}

#[test]
fn a_tampered_root_image_changes_nothing() {
    let node = Node::new();
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let manifest = spec.manifest();
    let signature = sign(&node.key, manifest.as_bytes());
    let mut tampered = spec.clone();
    tampered.root[40_000] ^= 0x01;
    let bundles = tempfile::tempdir().unwrap();
    let bundle = write_bundle(bundles.path(), "b.tar", &tampered, &manifest, &signature);
    refused(&node, &bundle, &[], "bundle member root.img: SHA-256");
}

#[test]
fn an_update_from_a_slot_still_on_trial_is_refused() {
    let node = Node::new();
    // Slot A runs but has not been blessed: B's entry is the fallback.
    std::fs::rename(
        node.path("efi/loader/entries/horcrux-a.conf"),
        node.path("efi/loader/entries/horcrux-a+2-1.conf"),
    )
    .unwrap();
    node.write(
        "efi/loader/entries/horcrux-b.conf",
        "title old B\nversion 1\n",
    );
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = signed_bundle(bundles.path(), &spec, &node.key);
    refused(
        &node,
        &bundle,
        &[],
        "the running slot A is still on trial (horcrux-a+2-1.conf)",
    );
}

#[test]
fn a_manifest_edited_after_signing_is_refused() {
    let node = Node::new();
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let manifest = spec.manifest();
    let signature = sign(&node.key, manifest.as_bytes());
    let edited = manifest.replace("panic=10", "panic=11");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = write_bundle(bundles.path(), "b.tar", &spec, &edited, &signature);
    refused(&node, &bundle, &[], "bad signature on manifest.toml");
    // No signature member at all.
    let bytes = tar(&[
        ("manifest.toml", manifest.as_bytes()),
        ("root.img", &spec.root),
    ]);
    let unsigned = bundles.path().join("unsigned.tar");
    std::fs::write(&unsigned, bytes).unwrap();
    refused(&node, &unsigned, &[], "member 1 is root.img");
}

#[test]
fn a_downgrade_needs_the_flag() {
    let node = Node::new();
    let spec = Spec::new("horcrux-older", "2025-06-01T00:00:00Z");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = signed_bundle(bundles.path(), &spec, &node.key);
    refused(&node, &bundle, &[], "refusing a downgrade");
    let run = node.update(&bundle, &["--allow-downgrade"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("a downgrade, allowed by --allow-downgrade")
    );
    assert_eq!(entries(&node), ["horcrux-a.conf", "horcrux-b+3.conf"]);
}

#[test]
fn refusals_before_anything_is_written() {
    let node = Node::new();
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = signed_bundle(bundles.path(), &spec, &node.key);

    node.write("cmdline", "ip=dhcp root=/dev/nfs\n");
    refused(&node, &bundle, &[], "not booted from an A/B slot (PXE?)");
    node.write("cmdline", "horcrux.slot=pxe horcrux.data=tmpfs\n");
    refused(&node, &bundle, &[], "has horcrux.slot=pxe, not a or b");
    node.write("cmdline", "horcrux.slot=a\n");

    std::fs::rename(node.path("keys/release.pub"), node.path("release.key")).unwrap();
    refused(&node, &bundle, &[], "no trusted update keys");
    std::fs::rename(node.path("release.key"), node.path("keys/release.pub")).unwrap();

    refused(&node, &node.path("nonexistent.tar"), &[], "cannot open");
    refused(
        &node,
        Path::new("https://updates.example.invalid/b.tar"),
        &[],
        "the bundle's minisign signature is the trust anchor",
    );
}

/// Serves `bundle` over HTTP on 127.0.0.1 until `connections` were
/// handled (or 30 s passed): `/bundle.tar` 200, `/moved` a redirect to
/// it, `/loop` a redirect to itself, anything else 404.
fn serve(bundle: Vec<u8>, connections: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut paths = Vec::new();
        while paths.len() < connections && Instant::now() < deadline {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            let path = text.split(' ').nth(1).unwrap_or("").to_string();
            let head = |status: &str, extra: &str, len: usize| {
                format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {len}\r\nConnection: close\r\n\r\n"
                )
            };
            let _ = match path.as_str() {
                "/bundle.tar" => stream
                    .write_all(head("200 OK", "", bundle.len()).as_bytes())
                    .and_then(|()| stream.write_all(&bundle)),
                "/moved" => {
                    stream.write_all(head("302 Found", "Location: /bundle.tar\r\n", 0).as_bytes())
                }
                "/loop" => stream.write_all(head("301 Moved", "Location: /loop\r\n", 0).as_bytes()),
                _ => stream.write_all(head("404 Not Found", "", 0).as_bytes()),
            };
            paths.push(path);
        }
        paths
    });
    (port, handle)
}

#[test]
fn downloads_over_http() {
    let node = Node::new();
    let spec = Spec::new("horcrux-new", "2026-11-26T12:45:01Z");
    let bundles = tempfile::tempdir().unwrap();
    let bundle = std::fs::read(signed_bundle(bundles.path(), &spec, &node.key)).unwrap();

    let (port, server) = serve(bundle, 4);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    let missing = node.run("update", &[&url("/missing")]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("the server answered 404"),
        "{}",
        missing.stderr
    );

    let looping = node.run("update", &[&url("/loop")]);
    assert_eq!(looping.code, 1);
    assert!(
        looping.stderr.contains("redirect loop"),
        "{}",
        looping.stderr
    );

    let run = node.run("update", &[&url("/moved")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("following to"), "{}", run.stderr);
    assert!(run.stderr.contains("downloaded"), "{}", run.stderr);
    assert!(run.stdout.contains("time: download "), "{}", run.stdout);
    let slot_b = std::fs::read(node.path("dev/sda3")).unwrap();
    assert_eq!(&slot_b[..spec.root.len()], spec.root.as_slice());
    assert_eq!(entries(&node), ["horcrux-a.conf", "horcrux-b+3.conf"]);
    // The download is removed after use.
    let staged: Vec<_> = std::fs::read_dir(node.path("staging")).unwrap().collect();
    assert!(staged.is_empty(), "{staged:?}");

    let paths = server.join().unwrap();
    // The loop is seen from the Location header, without asking again.
    assert_eq!(paths, ["/missing", "/loop", "/moved", "/bundle.tar"]);
}

fn efivar(path: &str) -> Vec<u8> {
    let mut bytes = 7u32.to_le_bytes().to_vec();
    for unit in path.encode_utf16().chain([0]) {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

const BOOT_COUNT_VAR: &str = "efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

#[test]
fn boot_health_without_a_trial_boot() {
    let node = Node::new();
    let run = node.run("boot-health", &["--no-reboot", "--timeout", "1s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "not a trial boot (entry already good)\n");
}

#[test]
fn boot_health_refuses_a_bad_variable() {
    let node = Node::new();
    node.write("efi/loader/entries/horcrux-b+2-1.conf", "version 5\n");
    let mut odd = efivar("\\loader\\entries\\horcrux-b+2-1.conf");
    odd.push(0);
    let cases = [
        (odd, "an odd number of bytes"),
        (
            efivar("\\loader\\entries\\..\\..\\EFI\\x.conf"),
            "is not a file under",
        ),
        (efivar("\\EFI\\horcrux-b+2-1.conf"), "is not a file under"),
        (
            efivar("\\loader\\entries\\a/b+1.conf"),
            "is not a file under",
        ),
        (vec![1, 2], "too short"),
    ];
    for (bytes, why) in cases {
        node.write(BOOT_COUNT_VAR, bytes);
        let before = node.snapshot();
        let run = node.run("boot-health", &["--no-reboot", "--timeout", "1s"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains(why), "{why:?} in {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(node.snapshot() == before, "the node changed");
    }
    // A valid trial boot shows in update-status.
    node.write(
        BOOT_COUNT_VAR,
        efivar("\\loader\\entries\\horcrux-b+3.conf"),
    );
    let status = node.run("update-status", &[]);
    assert!(
        status
            .stdout
            .contains("booted: horcrux-b+3.conf (a trial boot"),
        "{}",
        status.stdout
    );
}
