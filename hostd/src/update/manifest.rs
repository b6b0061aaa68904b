//! `manifest.toml` of an update bundle: what the image is, and the size
//! and SHA-256 of each payload. Only ever parsed after its signature has
//! been verified, and still validated field by field: the values end up
//! in file names and on the kernel command line.

use std::time::SystemTime;

use serde::Deserialize;

/// The manifest format this code reads.
pub const FORMAT: u32 = 1;
/// A manifest is a few hundred bytes; anything this large is not one.
pub const MAX_MANIFEST_LEN: u64 = 64 * 1024;
const MAX_ID_LEN: usize = 64;
const MAX_CMDLINE_LEN: usize = 1024;
/// dm-verity's block size: the hash tree starts on a block boundary.
const VERITY_BLOCK: u64 = 4096;

/// Kernel parameters the boot entry sets itself; the manifest's extra
/// arguments may not set them again (the kernel and systemd would take
/// one or the other, and `horcrux.slot` decides which slot is updated).
const RESERVED_PARAMS: &[&str] = &[
    "root",
    "rootfstype",
    "ro",
    "rw",
    "roothash",
    "systemd.verity_root_data",
    "systemd.verity_root_hash",
    "systemd.verity_root_options",
    "horcrux.slot",
    "horcrux.image",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: u32,
    image_id: String,
    version: String,
    built: String,
    #[serde(default)]
    cmdline: String,
    root: RawRoot,
    kernel: RawPayload,
    initrd: RawPayload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    file: String,
    size: u64,
    sha256: String,
    fstype: FsType,
    verity_root_hash: String,
    verity_hash_offset: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload {
    file: String,
    size: u64,
    sha256: String,
}

/// The root image's filesystem (the kernel's `rootfstype=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Erofs,
    Squashfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Erofs => "erofs",
            FsType::Squashfs => "squashfs",
        }
    }
}

/// Which payload of the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Kernel,
    Initrd,
}

impl Role {
    pub fn field(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Kernel => "kernel",
            Role::Initrd => "initrd",
        }
    }
}

/// One payload file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Its member name in the tar.
    pub file: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The root image and how to mount it with dm-verity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub payload: Payload,
    pub fstype: FsType,
    /// Lowercase hex.
    pub verity_root_hash: String,
    /// Where the hash tree starts, in bytes from the start of the image.
    pub verity_hash_offset: u64,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub image_id: String,
    pub version: String,
    /// As written (RFC 3339, UTC).
    pub built_text: String,
    pub built: SystemTime,
    /// Extra kernel arguments, appended to the entry's options.
    pub cmdline: String,
    pub root: Root,
    pub kernel: Payload,
    pub initrd: Payload,
}

impl Manifest {
    /// The payloads in manifest order, with their role.
    pub fn payloads(&self) -> [(Role, &Payload); 3] {
        [
            (Role::Root, &self.root.payload),
            (Role::Kernel, &self.kernel),
            (Role::Initrd, &self.initrd),
        ]
    }

    /// The payload stored under a tar member name.
    pub fn payload(&self, file: &str) -> Option<(Role, &Payload)> {
        self.payloads().into_iter().find(|(_, p)| p.file == file)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest.toml is larger than {MAX_MANIFEST_LEN} bytes")]
    TooLarge,
    #[error("manifest.toml is not UTF-8 text")]
    NotUtf8,
    #[error("manifest.toml: {0}")]
    Toml(String),
    #[error("manifest.toml: format {0} is not supported (this node reads format {FORMAT})")]
    Format(u32),
    #[error("manifest.toml: {field} {value:?} {why}")]
    Invalid {
        field: String,
        value: String,
        why: &'static str,
    },
}

fn invalid(field: impl Into<String>, value: impl ToString, why: &'static str) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        value: value.to_string(),
        why,
    }
}

/// Parses and validates the bytes of a manifest.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() as u64 > MAX_MANIFEST_LEN {
        return Err(ManifestError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
    let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Toml(e.to_string()))?;
    if raw.format != FORMAT {
        return Err(ManifestError::Format(raw.format));
    }
    check_name(
        "image_id",
        &raw.image_id,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "must be 1 to 64 of [a-z0-9-]",
    )?;
    check_name(
        "version",
        &raw.version,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'),
        "must be 1 to 64 of [A-Za-z0-9._+-]",
    )?;
    let built = humantime::parse_rfc3339(&raw.built).map_err(|_| {
        invalid(
            "built",
            &raw.built,
            "is not an RFC 3339 UTC time (2026-11-26T12:45:01Z)",
        )
    })?;
    check_cmdline(&raw.cmdline)?;
    let root = Root {
        payload: payload(
            Role::Root,
            RawPayload {
                file: raw.root.file,
                size: raw.root.size,
                sha256: raw.root.sha256,
            },
        )?,
        fstype: raw.root.fstype,
        verity_root_hash: check_hash("root.verity_root_hash".into(), raw.root.verity_root_hash)?,
        verity_hash_offset: raw.root.verity_hash_offset,
    };
    let offset = root.verity_hash_offset;
    if offset == 0 || !offset.is_multiple_of(VERITY_BLOCK) || offset >= root.payload.size {
        return Err(invalid(
            "root.verity_hash_offset",
            offset,
            "must be a non-zero multiple of 4096 below root.size",
        ));
    }
    let kernel = payload(Role::Kernel, raw.kernel)?;
    let initrd = payload(Role::Initrd, raw.initrd)?;
    let manifest = Manifest {
        image_id: raw.image_id,
        version: raw.version,
        built_text: raw.built,
        built,
        cmdline: raw.cmdline,
        root,
        kernel,
        initrd,
    };
    let [(_, a), (_, b), (_, c)] = manifest.payloads();
    if a.file == b.file || a.file == c.file || b.file == c.file {
        return Err(invalid(
            "file",
            format!("{} {} {}", a.file, b.file, c.file),
            "names must differ",
        ));
    }
    Ok(manifest)
}

fn check_name(
    field: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
    why: &'static str,
) -> Result<(), ManifestError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.chars().all(allowed) {
        return Err(invalid(field, value, why));
    }
    Ok(())
}

fn check_cmdline(cmdline: &str) -> Result<(), ManifestError> {
    if cmdline.len() > MAX_CMDLINE_LEN || !cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid(
            "cmdline",
            cmdline,
            "must be at most 1024 printable ASCII characters on one line",
        ));
    }
    let reserved = cmdline.split(' ').find(|arg| {
        let key = arg.split_once('=').map_or(*arg, |(key, _)| key);
        RESERVED_PARAMS.contains(&key)
    });
    if let Some(arg) = reserved {
        return Err(invalid(
            "cmdline",
            arg,
            "is set by the boot entry itself and may not be given again",
        ));
    }
    Ok(())
}

fn check_hash(field: String, value: String) -> Result<String, ManifestError> {
    let hex = value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(invalid(field, value, "must be 64 lowercase hex digits"));
    }
    Ok(value)
}

fn payload(role: Role, raw: RawPayload) -> Result<Payload, ManifestError> {
    let field = |name: &str| format!("{}.{name}", role.field());
    let file = raw.file;
    // A plain member name: no directories, nothing hidden, not one of the
    // two members that precede the payloads.
    let plain = !file.is_empty()
        && file.len() <= MAX_ID_LEN
        && !file.starts_with('.')
        && !file.starts_with(super::bundle::MANIFEST)
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain {
        return Err(invalid(
            field("file"),
            file,
            "must be a plain file name of [A-Za-z0-9._-], not hidden, not manifest.toml*",
        ));
    }
    if raw.size == 0 {
        return Err(invalid(field("size"), raw.size, "must not be 0"));
    }
    Ok(Payload {
        file,
        size: raw.size,
        sha256: check_hash(field("sha256"), raw.sha256)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn good() -> String {
        format!(
            "format = 1\n\
             image_id = \"horcrux-0123456789abcdef\"\n\
             version = \"2026.11.26-124501\"\n\
             built = \"2026-11-26T12:45:01Z\"\n\
             cmdline = \"console=tty0 console=ttyS0,115200 net.ifnames=0 panic=10\"\n\
             \n[root]\nfile = \"root.img\"\nsize = 123456789\nsha256 = \"{HASH}\"\n\
             fstype = \"erofs\"\nverity_root_hash = \"{HASH}\"\nverity_hash_offset = 120000512\n\
             \n[kernel]\nfile = \"vmlinuz\"\nsize = 1\nsha256 = \"{HASH}\"\n\
             \n[initrd]\nfile = \"initrd.img\"\nsize = 1\nsha256 = \"{HASH}\"\n"
        )
    }

    #[test]
    fn a_good_manifest() {
        let m = parse(good().as_bytes()).unwrap();
        assert_eq!(m.image_id, "horcrux-0123456789abcdef");
        assert_eq!(m.version, "2026.11.26-124501");
        assert_eq!(
            m.built,
            humantime::parse_rfc3339("2026-11-26T12:45:01Z").unwrap()
        );
        assert_eq!(m.root.fstype, FsType::Erofs);
        assert_eq!(m.root.payload.size, 123_456_789);
        assert_eq!(m.root.verity_hash_offset, 120_000_512);
        assert_eq!(m.kernel.file, "vmlinuz");
        assert_eq!(m.payload("initrd.img").unwrap().0, Role::Initrd);
        assert!(m.payload("manifest.toml").is_none());
        let squash = good().replace("\"erofs\"", "\"squashfs\"");
        assert_eq!(
            parse(squash.as_bytes()).unwrap().root.fstype,
            FsType::Squashfs
        );
        // cmdline may be left out or empty.
        let no_cmdline = good().replace(
            "cmdline = \"console=tty0 console=ttyS0,115200 net.ifnames=0 panic=10\"\n",
            "",
        );
        assert_eq!(parse(no_cmdline.as_bytes()).unwrap().cmdline, "");
    }

    /// Each edit of the good manifest, and a word its error must contain.
    #[test]
    fn every_rejection() {
        let cases: &[(&str, &str, &str)] = &[
            ("format = 1", "format = 2", "format 2"),
            ("format = 1\n", "", "format"),
            (
                "image_id = \"horcrux-0123456789abcdef\"",
                "image_id = \"Horcrux\"",
                "image_id",
            ),
            (
                "image_id = \"horcrux-0123456789abcdef\"",
                "image_id = \"\"",
                "image_id",
            ),
            (
                "image_id = \"horcrux-0123456789abcdef\"",
                "image_id = \"a/b\"",
                "image_id",
            ),
            (
                "image_id = \"horcrux-0123456789abcdef\"",
                &format!("image_id = \"{}\"", "a".repeat(65)),
                "image_id",
            ),
            (
                "version = \"2026.11.26-124501\"",
                "version = \"1 2\"",
                "version",
            ),
            (
                "version = \"2026.11.26-124501\"",
                "version = \"v;rm\"",
                "version",
            ),
            (
                "built = \"2026-11-26T12:45:01Z\"",
                "built = \"2026-11-26\"",
                "built",
            ),
            (
                "built = \"2026-11-26T12:45:01Z\"",
                "built = \"2026-11-26T12:45:01+01:00\"",
                "built",
            ),
            ("panic=10\"", "panic=10\\n\"", "cmdline"),
            ("panic=10\"", "panic=10\\u00e9\"", "cmdline"),
            ("panic=10\"", "panic=10 horcrux.slot=a\"", "horcrux.slot=a"),
            ("panic=10\"", "panic=10 root=/dev/sda1\"", "root=/dev/sda1"),
            ("panic=10\"", "panic=10 rw\"", "rw"),
            ("file = \"root.img\"", "file = \"../root.img\"", "root.file"),
            ("file = \"root.img\"", "file = \"/root.img\"", "root.file"),
            ("file = \"root.img\"", "file = \".root\"", "root.file"),
            (
                "file = \"root.img\"",
                "file = \"manifest.toml.minisig\"",
                "root.file",
            ),
            (
                "file = \"root.img\"",
                "file = \"vmlinuz\"",
                "names must differ",
            ),
            ("size = 123456789", "size = 0", "root.size"),
            ("size = 123456789", "size = -1", "manifest.toml"),
            ("fstype = \"erofs\"", "fstype = \"ext4\"", "fstype"),
            (
                "verity_hash_offset = 120000512",
                "verity_hash_offset = 4095",
                "verity",
            ),
            (
                "verity_hash_offset = 120000512",
                "verity_hash_offset = 0",
                "verity",
            ),
            (
                "verity_hash_offset = 120000512",
                "verity_hash_offset = 123457536",
                "verity",
            ),
            (
                "[kernel]\nfile = \"vmlinuz\"\nsize = 1",
                "[kernel]\nfile = \"vmlinuz\"\nsize = 0",
                "kernel.size",
            ),
            ("\n[initrd]", "\nextra = 1\n[initrd]", "extra"),
            ("format = 1\n", "format = 1\nsurprise = true\n", "surprise"),
            ("[kernel]\n", "", "manifest.toml"),
        ];
        let base = good();
        for (from, to, word) in cases {
            assert!(base.contains(from), "bad test case {from:?}");
            let edited = base.replacen(from, to, 1);
            let error = parse(edited.as_bytes())
                .expect_err(&format!("accepted {from:?} -> {to:?}"))
                .to_string();
            assert!(error.contains(word), "{to:?}: {error}");
        }
        let hash_fields = ["sha256 = \"", "verity_root_hash = \""];
        for field in hash_fields {
            for bad in [
                &HASH.to_uppercase(),
                &HASH[1..],
                "",
                &format!("{}g", &HASH[1..]),
            ] {
                let edited = base.replacen(&format!("{field}{HASH}"), &format!("{field}{bad}"), 1);
                assert!(parse(edited.as_bytes()).is_err(), "{field}{bad}");
            }
        }
        assert!(matches!(parse(&[0xff, 0xfe]), Err(ManifestError::NotUtf8)));
        let huge = format!("{}{}", base, "#".repeat(64 * 1024));
        assert!(matches!(
            parse(huge.as_bytes()),
            Err(ManifestError::TooLarge)
        ));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics_nor_passes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            proptest::prop_assert!(parse(&bytes).is_err());
        }

        #[test]
        fn mangled_manifests_never_panic(cut in 0usize..1200, byte in proptest::num::u8::ANY) {
            let mut bytes = good().into_bytes();
            let at = cut % bytes.len();
            bytes[at] = byte;
            // Any outcome but a panic; an accepted one is still valid.
            if let Ok(m) = parse(&bytes) {
                proptest::prop_assert!(m.root.verity_hash_offset < m.root.payload.size);
            }
        }
    }
}
