use super::*;
use crate::update::manifest;

/// A ustar tar of regular files, names written as given (so that tests
/// can write names `tar::Builder` would refuse).
pub(crate) fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    crate::generation::sha256_hex(data)
}

/// Tar members: names and contents.
type Members<'a> = Vec<(&'a str, &'a [u8])>;

const ROOT: &[u8] = &[7; 8192];
const KERNEL: &[u8] = b"kernel";
const INITRD: &[u8] = b"initrd";

fn manifest_text() -> String {
    let hash = sha(b"tree");
    format!(
        "format = 1\nimage_id = \"horcrux-1\"\nversion = \"1\"\nbuilt = \"2026-01-01T00:00:00Z\"\n\
         [root]\nfile = \"root.img\"\nsize = {}\nsha256 = \"{}\"\nfstype = \"erofs\"\n\
         verity_root_hash = \"{hash}\"\nverity_hash_offset = 4096\n\
         [kernel]\nfile = \"vmlinuz\"\nsize = {}\nsha256 = \"{}\"\n\
         [initrd]\nfile = \"initrd.img\"\nsize = {}\nsha256 = \"{}\"\n",
        ROOT.len(),
        sha(ROOT),
        KERNEL.len(),
        sha(KERNEL),
        INITRD.len(),
        sha(INITRD),
    )
}

fn good_members(text: &str) -> Members<'_> {
    vec![
        (MANIFEST, text.as_bytes()),
        (SIGNATURE, b"sig"),
        ("vmlinuz", KERNEL),
        ("initrd.img", INITRD),
        ("root.img", ROOT),
    ]
}

#[test]
fn reads_head_and_checks_payloads() {
    let text = manifest_text();
    let bundle = tar_of(&good_members(&text));
    let head = read_head(bundle.as_slice()).unwrap();
    assert_eq!(head.manifest, text.as_bytes());
    assert_eq!(head.signature, "sig");
    let parsed = manifest::parse(&head.manifest).unwrap();
    check_payloads(bundle.as_slice(), &parsed).unwrap();

    // Payloads in any order, and `./` names as `tar -C dir .` writes them.
    let mut members = good_members(&text);
    members.swap(2, 4);
    members[3].0 = "./initrd.img";
    check_payloads(tar_of(&members).as_slice(), &parsed).unwrap();

    // The visitor sees each payload once, with its role.
    let mut roles = Vec::new();
    for_each_payload::<_, BundleError>(bundle.as_slice(), &parsed, |role, payload, data| {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).map_err(BundleError::Read)?;
        assert_eq!(bytes.len() as u64, payload.size);
        roles.push(role);
        Ok(())
    })
    .unwrap();
    assert_eq!(roles, [Role::Kernel, Role::Initrd, Role::Root]);
}

#[test]
fn head_refusals() {
    let text = manifest_text();
    let cases: Vec<(Members, &str)> = vec![
        (vec![], "missing"),
        (
            vec![(SIGNATURE, b"s"), (MANIFEST, b"m")],
            "member 0 is manifest.toml.minisig",
        ),
        (vec![(MANIFEST, b"m")], "member 1 is missing"),
        (
            vec![(MANIFEST, b"m"), ("root.img", b"r")],
            "member 1 is root.img",
        ),
        (vec![("/manifest.toml", b"m")], "plain file names"),
        (vec![("../manifest.toml", b"m")], "plain file names"),
        (vec![("x/manifest.toml", b"m")], "plain file names"),
        (vec![("manifest.toml/", b"m")], "plain file names"),
        (
            vec![(MANIFEST, &[b'#'; 64 * 1024 + 1]), (SIGNATURE, b"s")],
            "larger than 65536",
        ),
        (
            vec![(MANIFEST, text.as_bytes()), (SIGNATURE, &[b's'; 4097])],
            "larger than 4096",
        ),
        (
            vec![(MANIFEST, text.as_bytes()), (SIGNATURE, &[0xff, 0xfe])],
            "not text",
        ),
    ];
    for (members, word) in cases {
        let error = read_head(tar_of(&members).as_slice())
            .unwrap_err()
            .to_string();
        assert!(error.contains(word), "{members:?}: {error}");
    }
    // Not a tar at all.
    assert!(read_head(&b"hello"[..]).is_err());
    assert!(read_head(&[0x55u8; 1024][..]).is_err());
}

#[test]
fn non_regular_members_and_long_names_are_refused() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, MANIFEST, "/etc/shadow")
        .unwrap();
    let bundle = builder.into_inner().unwrap();
    let error = read_head(bundle.as_slice()).unwrap_err().to_string();
    assert!(error.contains("Symlink, not a regular file"), "{error}");

    // A GNU long name precedes its member as a member of its own.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_cksum();
    builder
        .append_data(&mut header, "a".repeat(200), &b"x"[..])
        .unwrap();
    let error = read_head(builder.into_inner().unwrap().as_slice())
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a regular file"), "{error}");
}

#[test]
fn payload_refusals() {
    let text = manifest_text();
    let parsed = manifest::parse(text.as_bytes()).unwrap();
    let mut flipped = ROOT.to_vec();
    flipped[100] ^= 1;
    let good = good_members(&text);
    let edited = |edit: &dyn Fn(&mut Members)| {
        let mut members = good.clone();
        edit(&mut members);
        members
    };
    let mut tampered = good.clone();
    tampered[4].1 = &flipped;
    let cases: Vec<(Members, &str)> = vec![
        (tampered, "SHA-256"),
        (
            edited(&|m| m[2].1 = b"kernel!"),
            "7 bytes, but the manifest says 6",
        ),
        (
            edited(&|m| {
                m.pop();
            }),
            "lacks root.img",
        ),
        (
            edited(&|m| m.push(("extra", b"x"))),
            "\"extra\" is not named",
        ),
        (
            edited(&|m| m.push(("vmlinuz", KERNEL))),
            "\"vmlinuz\" appears twice",
        ),
        (
            edited(&|m| m.push((MANIFEST, b"x"))),
            "\"manifest.toml\" appears twice",
        ),
        (edited(&|m| m[4].0 = "../root.img"), "plain file names"),
        (
            edited(&|m| m.swap(0, 1)),
            "member 0 is manifest.toml.minisig",
        ),
    ];
    for (members, word) in cases {
        let error = check_payloads(tar_of(&members).as_slice(), &parsed)
            .unwrap_err()
            .to_string();
        assert!(error.contains(word), "{error}");
    }
}

#[test]
fn truncated_bundles_are_refused() {
    let text = manifest_text();
    let bundle = tar_of(&good_members(&text));
    let parsed = manifest::parse(text.as_bytes()).unwrap();
    // Cut inside root.img's data (it is the last member).
    let cut = &bundle[..bundle.len() - 1024 - 4096];
    assert!(check_payloads(cut, &parsed).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    #[test]
    fn garbage_tar_never_panics_nor_passes(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)
    ) {
        proptest::prop_assert!(read_head(bytes.as_slice()).is_err());
        let parsed = manifest::parse(manifest_text().as_bytes()).unwrap();
        proptest::prop_assert!(check_payloads(bytes.as_slice(), &parsed).is_err());
    }

    #[test]
    fn corrupted_payloads_never_pass(at in 0usize..20_000, byte in proptest::num::u8::ANY) {
        let text = manifest_text();
        let members = good_members(&text);
        let mut bundle = tar_of(&members);
        // Where each payload's data lies: after its 512-byte header, each
        // member padded to 512 bytes.
        let mut ranges = Vec::new();
        let mut offset = 0;
        for (index, (_, data)) in members.iter().enumerate() {
            if index >= 2 {
                ranges.push(offset + 512..offset + 512 + data.len());
            }
            offset += 512 + data.len().div_ceil(512) * 512;
        }
        let at = at % bundle.len();
        let changed = bundle[at] != byte;
        bundle[at] = byte;
        let parsed = manifest::parse(text.as_bytes()).unwrap();
        let outcome = check_payloads(bundle.as_slice(), &parsed);
        if changed && ranges.iter().any(|r| r.contains(&at)) {
            proptest::prop_assert!(outcome.is_err());
        }
    }
}
