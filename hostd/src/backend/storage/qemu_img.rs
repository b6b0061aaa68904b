//! qcow2 files and image imports through `qemu-img`.
//!
//! An imported image is outside input. A qcow2 can name a backing file or
//! an external data file anywhere on the host (`/dev/sda`,
//! `/etc/shadow`), which `qemu-img convert` would read into the guest's
//! disk, and a raw image can carry a qcow2 header and be probed as one.
//! So [`QemuImg::convert`] reads only raw and qcow2, refuses images that
//! reference other files, and names the source format explicitly. Paths
//! must be absolute: qemu-img reads `-x` as an option and `proto:...` or
//! `json:{...}` as a protocol, and neither can start with `/`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backend::command::{CommandError, Tool};

/// Time limit of `info`, `create` and `resize`: metadata only.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Time limit of a conversion: hundreds of GiB from slow storage take
/// hours, but a hung one should not hold its volume forever.
const CONVERT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The formats [`QemuImg::convert`] reads: the ones cloud images come in,
/// and none whose metadata can point into other files (vmdk extents).
const SOURCE_FORMATS: [&str; 2] = ["raw", "qcow2"];

/// The formats [`QemuImg::convert`] writes: raw onto a zvol, qcow2 files.
const TARGET_FORMATS: [&str; 2] = ["raw", "qcow2"];

/// How much unterminated progress output is kept before it is dropped as
/// not progress.
const MAX_PENDING: usize = 256;

/// What `qemu-img info` says about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// `raw`, `qcow2`, ... (probed from the content).
    pub format: String,
    /// Bytes the guest sees.
    pub virtual_size: u64,
    /// Bytes allocated on the host, when qemu-img can tell.
    pub actual_size: Option<u64>,
    /// The backing file a qcow2 names, if any.
    pub backing_file: Option<String>,
    /// The external data file a qcow2 names, if any.
    pub data_file: Option<String>,
}

/// Why a qemu-img operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("unreadable `qemu-img info` output: {reason}")]
    Info { reason: String },
    #[error("{} is not a readable qcow2 file: {reason}", path.display())]
    Header { path: PathBuf, reason: String },
    #[error(
        "refusing to shrink {} from {current} to {requested} bytes: \
         the data past the new end would be lost",
        path.display()
    )]
    Shrink {
        path: PathBuf,
        current: u64,
        requested: u64,
    },
    /// An image hostd will not read (see the module documentation).
    #[error("refusing to read image {}: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{} already exists", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl QemuImgError {
    /// Whether trying again soon may help; refusals stay refused.
    pub fn retryable(&self) -> bool {
        match self {
            QemuImgError::Command(e) => e.retryable(),
            QemuImgError::Create { .. } => true,
            QemuImgError::Info { .. }
            | QemuImgError::Header { .. }
            | QemuImgError::Shrink { .. }
            | QemuImgError::Unsafe { .. }
            | QemuImgError::Invalid { .. }
            | QemuImgError::AlreadyExists { .. } => false,
        }
    }
}

/// The JSON of `qemu-img info --output=json`, the fields hostd reads.
#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    actual_size: Option<u64>,
    #[serde(rename = "backing-filename", default)]
    backing_filename: Option<String>,
    /// Differs by format; qcow2's has `data.data-file`.
    #[serde(rename = "format-specific", default)]
    format_specific: Option<serde_json::Value>,
}

/// The virtual size in a qcow2 header: magic `QFI\xfb`, then (all big
/// endian) version, backing file offset and size, cluster bits, and the
/// size in bytes at offset 24 (QEMU's docs/interop/qcow2.txt).
pub fn qcow2_header_size(header: &[u8]) -> Result<u64, String> {
    let magic = header.get(..4).ok_or("shorter than a qcow2 header")?;
    if magic != b"QFI\xfb" {
        return Err("no qcow2 magic".into());
    }
    let size = header.get(24..32).ok_or("shorter than a qcow2 header")?;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(size);
    Ok(u64::from_be_bytes(bytes))
}

/// A qcow2 file's virtual size and the bytes it takes on disk, read
/// directly: observing every dir volume every cycle must not spawn a
/// `qemu-img` per file.
pub async fn qcow2_sizes(path: &Path) -> Result<(u64, u64), QemuImgError> {
    use std::os::unix::fs::MetadataExt as _;
    use tokio::io::AsyncReadExt as _;
    let header_error = |reason: String| QemuImgError::Header {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| header_error(e.to_string()))?;
    let mut header = Vec::with_capacity(32);
    (&mut file)
        .take(32)
        .read_to_end(&mut header)
        .await
        .map_err(|e| header_error(e.to_string()))?;
    let size = qcow2_header_size(&header).map_err(header_error)?;
    let used = file
        .metadata()
        .await
        .map_err(|e| header_error(e.to_string()))?
        .blocks()
        * 512;
    Ok((size, used))
}

/// Reads the output of `qemu-img info -U --output=json FILE`.
pub fn parse_info(json: &[u8]) -> Result<ImageInfo, QemuImgError> {
    let raw: RawInfo = serde_json::from_slice(json).map_err(|e| QemuImgError::Info {
        reason: e.to_string(),
    })?;
    let data_file = match raw
        .format_specific
        .as_ref()
        .and_then(|specific| specific.pointer("/data/data-file"))
    {
        None => None,
        Some(serde_json::Value::String(file)) => Some(file.clone()),
        Some(_) => {
            return Err(QemuImgError::Info {
                reason: "data-file is not a string".into(),
            });
        }
    };
    Ok(ImageInfo {
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
        backing_file: raw.backing_filename,
        data_file,
    })
}

/// The last percentage in a chunk of `qemu-img convert -p` output, which
/// is records like `    (12.34/100%)\r`.
pub fn parse_progress(text: &str) -> Option<f64> {
    text.split(['\r', '\n']).rev().find_map(|record| {
        let number = record.trim().strip_prefix('(')?.strip_suffix("/100%)")?;
        let percent: f64 = number.parse().ok()?;
        (0.0..=100.0).contains(&percent).then_some(percent)
    })
}

/// Collects progress output across reads, which may split a record.
#[derive(Default)]
struct Progress {
    pending: String,
}

impl Progress {
    /// The last percentage completed by `chunk`, if any.
    fn feed(&mut self, chunk: &[u8]) -> Option<f64> {
        self.pending.push_str(&String::from_utf8_lossy(chunk));
        let percent = self.pending.rfind(['\r', '\n']).and_then(|end| {
            let percent = parse_progress(&self.pending[..end]);
            self.pending.drain(..=end);
            percent
        });
        if self.pending.len() > MAX_PENDING {
            self.pending.clear();
        }
        percent
    }
}

/// The `qemu-img` tool.
#[derive(Clone, Debug)]
pub struct QemuImg {
    tool: Tool,
    /// `qemu-img` with the long limit of conversions.
    convert_tool: Tool,
}

impl Default for QemuImg {
    fn default() -> Self {
        QemuImg::new()
    }
}

impl QemuImg {
    /// `qemu-img` from `PATH`.
    pub fn new() -> Self {
        QemuImg {
            tool: Tool::new("qemu-img", TIMEOUT),
            convert_tool: Tool::new("qemu-img", CONVERT_TIMEOUT),
        }
    }

    /// `qemu-img info` of an image; `-U` so an image a running QEMU holds
    /// can be read. Never opens a backing file.
    pub async fn info(&self, path: &Path) -> Result<ImageInfo, QemuImgError> {
        check_path(path)?;
        let args = [
            OsStr::new("info"),
            OsStr::new("-U"),
            OsStr::new("--output=json"),
            path.as_os_str(),
        ];
        let stdout = self.tool.run(&args, None).await?;
        parse_info(&stdout).map_err(|e| match e {
            QemuImgError::Info { reason } => QemuImgError::Info {
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// Creates a sparse qcow2 of `size` bytes (a multiple of 512) at a
    /// path that does not exist yet: an existing disk is never replaced.
    pub async fn create_qcow2(&self, path: &Path, size: u64) -> Result<(), QemuImgError> {
        check_path(path)?;
        check_size(size)?;
        // Claimed exclusively first: `qemu-img create` would truncate an
        // existing file.
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(QemuImgError::AlreadyExists { path: path.into() });
            }
            Err(source) => {
                return Err(QemuImgError::Create {
                    path: path.into(),
                    source,
                });
            }
        }
        let size = size.to_string();
        let args = [
            OsStr::new("create"),
            OsStr::new("-f"),
            OsStr::new("qcow2"),
            OsStr::new("-o"),
            OsStr::new("preallocation=off"),
            path.as_os_str(),
            OsStr::new(&size),
        ];
        if let Err(e) = self.tool.run(&args, None).await {
            // Ours and not an image: left behind it would look like a disk.
            let _ = tokio::fs::remove_file(path).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Grows a qcow2 no running QEMU has open (QEMU resizes its open
    /// images itself) from `current` to `size` bytes; nothing when equal,
    /// [`QemuImgError::Shrink`] when smaller. A stale `current` cannot
    /// shrink either: `qemu-img resize` refuses without `--shrink`.
    pub async fn grow(&self, path: &Path, current: u64, size: u64) -> Result<(), QemuImgError> {
        check_path(path)?;
        check_size(size)?;
        if size < current {
            return Err(QemuImgError::Shrink {
                path: path.into(),
                current,
                requested: size,
            });
        }
        if size == current {
            return Ok(());
        }
        let size = size.to_string();
        let args = [
            OsStr::new("resize"),
            OsStr::new("-f"),
            OsStr::new("qcow2"),
            path.as_os_str(),
            OsStr::new(&size),
        ];
        self.tool.run(&args, None).await?;
        Ok(())
    }

    /// Copies the image `source` (raw or qcow2, referencing no other
    /// file) into `target` as `target_format`: `raw` onto an existing
    /// device such as a zvol (`existing_target`, which must be at least
    /// the image's virtual size), or `qcow2` into a new file (created or
    /// replaced). `on_progress` gets percentages as qemu-img reports
    /// them, 100 last. A failure leaves a partial target: write to a
    /// temporary name and rename when done.
    pub async fn convert(
        &self,
        source: &Path,
        target: &Path,
        target_format: &str,
        existing_target: bool,
        mut on_progress: impl FnMut(f64) + Send,
    ) -> Result<(), QemuImgError> {
        check_path(source)?;
        check_path(target)?;
        if !TARGET_FORMATS.contains(&target_format) {
            return Err(QemuImgError::Invalid {
                what: "target format",
                value: target_format.into(),
                reason: "only raw and qcow2 are written",
            });
        }
        if source == target {
            return Err(QemuImgError::Invalid {
                what: "target",
                value: target.display().to_string(),
                reason: "the same path as the source",
            });
        }
        let info = self.info(source).await?;
        check_source(source, &info)?;
        let mut args = vec![
            OsStr::new("convert"),
            OsStr::new("-p"),
            // Named, not probed again: what was checked is what is read.
            OsStr::new("-f"),
            OsStr::new(&info.format),
            OsStr::new("-O"),
            OsStr::new(target_format),
        ];
        if existing_target {
            args.push(OsStr::new("-n"));
        }
        args.extend([source.as_os_str(), target.as_os_str()]);
        let mut progress = Progress::default();
        self.convert_tool
            .run_streaming(&args, |chunk| {
                if let Some(percent) = progress.feed(chunk) {
                    on_progress(percent);
                }
            })
            .await?;
        Ok(())
    }
}

/// Absolute paths only (see the module documentation).
fn check_path(path: &Path) -> Result<(), QemuImgError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(QemuImgError::Invalid {
            what: "path",
            value: path.display().to_string(),
            reason: "not absolute",
        })
    }
}

/// A positive multiple of 512: qemu-img would round anything else up,
/// and the volume would never have the size asked for.
fn check_size(size: u64) -> Result<(), QemuImgError> {
    if size > 0 && size.is_multiple_of(512) {
        Ok(())
    } else {
        Err(QemuImgError::Invalid {
            what: "image size",
            value: size.to_string(),
            reason: "not a positive multiple of 512 bytes",
        })
    }
}

/// Refuses images `convert` must not read.
fn check_source(path: &Path, info: &ImageInfo) -> Result<(), QemuImgError> {
    let refuse = |reason: String| {
        Err(QemuImgError::Unsafe {
            path: path.into(),
            reason,
        })
    };
    if !SOURCE_FORMATS.contains(&info.format.as_str()) {
        return refuse(format!(
            "format {:?} is not imported (only raw and qcow2)",
            info.format
        ));
    }
    if let Some(backing) = &info.backing_file {
        return refuse(format!("it names a backing file ({backing:?})"));
    }
    if let Some(data) = &info.data_file {
        return refuse(format!("it names an external data file ({data:?})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qemu-img info -U --output=json` of a fresh 1 MiB qcow2, qemu-img
    /// 7.2 (Debian 12).
    const QCOW2_INFO: &str = r#"{
    "virtual-size": 1048576,
    "filename": "/tmp/qi/a.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "dirty-flag": false
}"#;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn reads_qemu_img_info() {
        let info = parse_info(QCOW2_INFO.as_bytes()).expect("captured output");
        assert_eq!(
            info,
            ImageInfo {
                format: "qcow2".into(),
                virtual_size: MIB,
                actual_size: Some(200_704),
                backing_file: None,
                data_file: None,
            }
        );
        let raw = parse_info(br#"{"virtual-size": 4194304, "filename": "r.raw", "format": "raw"}"#)
            .expect("raw without actual size");
        assert_eq!((raw.format.as_str(), raw.actual_size), ("raw", None));
        let linked = parse_info(
            br#"{"virtual-size": 1, "format": "qcow2", "backing-filename": "/dev/sda",
                 "format-specific": {"type": "qcow2", "data": {"data-file": "/etc/shadow"}}}"#,
        )
        .expect("qcow2 naming other files");
        assert_eq!(linked.backing_file.as_deref(), Some("/dev/sda"));
        assert_eq!(linked.data_file.as_deref(), Some("/etc/shadow"));
    }

    #[test]
    fn hostile_info_is_an_error() {
        let deep = "[".repeat(100_000);
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            "{\"format\": 1, \"virtual-size\": 1}",
            "{\"format\": \"raw\", \"virtual-size\": -1}",
            "{\"format\": \"raw\", \"virtual-size\": 1.5}",
            "{\"format\": \"raw\", \"virtual-size\": 18446744073709551616}",
            "{\"format\": \"raw\", \"virtual-size\": 1, \"actual-size\": \"x\"}",
            "{\"format\": \"qcow2\", \"virtual-size\": 1, \"format-specific\": {\"data\": {\"data-file\": 3}}}",
            "{\"format\": \"raw\", \"virtual-size\": 1",
            deep.as_str(),
        ] {
            let err = parse_info(bad.as_bytes()).expect_err(bad);
            assert!(matches!(err, QemuImgError::Info { .. }), "{err:?}");
        }
        assert!(parse_info(b"\xff\xfe").is_err());
    }

    #[test]
    fn reads_the_last_progress_record() {
        assert_eq!(
            parse_progress("    (0.00/100%)\r    (69.85/100%)\r"),
            Some(69.85)
        );
        assert_eq!(parse_progress("    (100.00/100%)\r\n"), Some(100.0));
        assert_eq!(parse_progress("    (12.50/100%)\r    (13."), Some(12.5));
        for none in [
            "",
            "\r\n",
            "(nan/100%)",
            "(inf/100%)",
            "(101/100%)",
            "(-1/100%)",
            "12/100%",
        ] {
            assert_eq!(parse_progress(none), None, "{none}");
        }
    }

    #[test]
    fn progress_survives_records_split_across_reads() {
        let mut progress = Progress::default();
        assert_eq!(progress.feed(b"    (0.00/100%)\r    (4"), Some(0.0));
        assert_eq!(progress.feed(b"2.1"), None);
        assert_eq!(progress.feed(b"0/100%)\r"), Some(42.1));
        assert_eq!(progress.feed(&[b'x'; 1000]), None);
        assert!(progress.pending.is_empty());
        assert_eq!(progress.feed(b"\r    (100.00/100%)\r\n"), Some(100.0));
        assert!(progress.pending.is_empty());
    }

    #[tokio::test]
    async fn creates_reads_and_grows_a_qcow2_but_never_shrinks_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vm-a-disk0.qcow2");
        let qemu_img = QemuImg::new();
        qemu_img.create_qcow2(&path, MIB).await.expect("created");
        let info = qemu_img.info(&path).await.expect("info");
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.virtual_size, MIB);
        assert!(info.actual_size.is_some_and(|a| a > 0), "{info:?}");
        assert_eq!(info.backing_file, None);

        let err = qemu_img
            .create_qcow2(&path, 2 * MIB)
            .await
            .expect_err("exists");
        assert!(matches!(err, QemuImgError::AlreadyExists { .. }), "{err:?}");
        assert_eq!(qemu_img.info(&path).await.expect("info").virtual_size, MIB);

        qemu_img.grow(&path, MIB, 3 * MIB).await.expect("grown");
        assert_eq!(
            qemu_img.info(&path).await.expect("info").virtual_size,
            3 * MIB
        );
        qemu_img
            .grow(&path, 3 * MIB, 3 * MIB)
            .await
            .expect("same size");

        let err = qemu_img
            .grow(&path, 3 * MIB, MIB)
            .await
            .expect_err("shrink");
        assert!(matches!(err, QemuImgError::Shrink { .. }) && !err.retryable());
        // A stale `current` does not get a shrink through either.
        let err = qemu_img.grow(&path, MIB / 2, MIB).await.expect_err("stale");
        assert!(matches!(err, QemuImgError::Command(_)), "{err:?}");
        assert_eq!(
            qemu_img.info(&path).await.expect("info").virtual_size,
            3 * MIB
        );
    }

    #[tokio::test]
    async fn the_qcow2_header_agrees_with_qemu_img() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = QemuImg::new();
        let path = dir.path().join("h.qcow2");
        img.create_qcow2(&path, 40 * MIB).await.expect("create");
        img.grow(&path, 40 * MIB, 72 * MIB).await.expect("grow");
        let info = img.info(&path).await.expect("info");
        let (size, used) = qcow2_sizes(&path).await.expect("header");
        assert_eq!(size, info.virtual_size);
        assert_eq!(size, 72 * MIB);
        assert!(used > 0 && used < MIB, "{used}");
        for bad in [&b""[..], b"QFI\xfb", b"QFI\xfbnot really", &[0u8; 64][..]] {
            assert!(qcow2_header_size(bad).is_err(), "{bad:?}");
        }
        let missing = qcow2_sizes(&dir.path().join("none.qcow2")).await;
        assert!(matches!(missing, Err(QemuImgError::Header { .. })));
    }

    #[tokio::test]
    async fn a_failed_create_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vm-a-disk0.qcow2");
        let failing = QemuImg {
            tool: Tool::new("/bin/false", TIMEOUT),
            convert_tool: Tool::new("/bin/false", TIMEOUT),
        };
        let err = failing.create_qcow2(&path, MIB).await.expect_err("fails");
        assert!(matches!(err, QemuImgError::Command(_)), "{err:?}");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn converts_raw_to_qcow2_and_back_onto_an_existing_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qemu_img = QemuImg::new();
        // Data, then a hole: both must come back as they were.
        let mut content: Vec<u8> = (0..3 * MIB).map(|i| (i * 7 % 251) as u8).collect();
        content.resize(4 * MIB as usize, 0);
        let raw = dir.path().join("image.raw");
        std::fs::write(&raw, &content).expect("raw written");

        let qcow2 = dir.path().join("image.qcow2");
        let mut seen = Vec::new();
        qemu_img
            .convert(&raw, &qcow2, "qcow2", false, |p| seen.push(p))
            .await
            .expect("raw to qcow2");
        assert_eq!(seen.last(), Some(&100.0), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        let info = qemu_img.info(&qcow2).await.expect("info");
        assert_eq!(
            (info.format.as_str(), info.virtual_size),
            ("qcow2", 4 * MIB)
        );

        // A device-like target full of old data, overwritten in place.
        let back = dir.path().join("device");
        std::fs::write(&back, vec![0xffu8; content.len()]).expect("target written");
        let mut last = None;
        qemu_img
            .convert(&qcow2, &back, "raw", true, |p| last = Some(p))
            .await
            .expect("qcow2 to raw");
        assert_eq!(last, Some(100.0));
        assert!(std::fs::read(&back).expect("read back") == content);
    }

    #[tokio::test]
    async fn images_referencing_other_files_are_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, vec![b's'; MIB as usize]).expect("secret written");
        let tool = Tool::new("qemu-img", TIMEOUT);
        let overlay = dir.path().join("overlay.qcow2");
        let backing = format!("{}", secret.display());
        tool.run(
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                backing.as_str(),
                "-F",
                "raw",
                &*overlay.to_string_lossy(),
            ],
            None,
        )
        .await
        .expect("overlay made");
        let data_file = format!("data_file={}", dir.path().join("data").display());
        let external = dir.path().join("external.qcow2");
        tool.run(
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                data_file.as_str(),
                &*external.to_string_lossy(),
                "1M",
            ],
            None,
        )
        .await
        .expect("external data image made");

        let qemu_img = QemuImg::new();
        for (image, reason) in [(&overlay, "backing file"), (&external, "data file")] {
            let target = dir.path().join("out.qcow2");
            let err = qemu_img
                .convert(image, &target, "qcow2", false, |_| {})
                .await
                .expect_err("refused");
            assert!(matches!(err, QemuImgError::Unsafe { .. }), "{err:?}");
            assert!(err.to_string().contains(reason), "{err}");
            assert!(!target.exists());
        }
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_before_running() {
        let qemu_img = QemuImg {
            tool: Tool::new("/nonexistent/qemu-img", TIMEOUT),
            convert_tool: Tool::new("/nonexistent/qemu-img", TIMEOUT),
        };
        let invalid = |r: Result<(), QemuImgError>| matches!(r, Err(QemuImgError::Invalid { .. }));
        let abs = Path::new("/a/b.qcow2");
        let rel = Path::new("-b.qcow2");
        assert!(matches!(
            qemu_img.info(rel).await,
            Err(QemuImgError::Invalid { .. })
        ));
        assert!(invalid(
            qemu_img.create_qcow2(Path::new("json:{}"), MIB).await
        ));
        assert!(invalid(qemu_img.grow(rel, MIB, 2 * MIB).await));
        // qemu-img would round these up to the next 512 bytes.
        assert!(invalid(qemu_img.create_qcow2(abs, 1000).await));
        assert!(invalid(qemu_img.create_qcow2(abs, 0).await));
        assert!(invalid(qemu_img.grow(abs, MIB, MIB + 1).await));
        assert!(invalid(
            qemu_img.convert(rel, abs, "raw", true, |_| {}).await
        ));
        assert!(invalid(
            qemu_img.convert(abs, rel, "raw", true, |_| {}).await
        ));
        assert!(invalid(
            qemu_img.convert(abs, abs, "raw", true, |_| {}).await
        ));
        assert!(invalid(
            qemu_img
                .convert(abs, Path::new("/c"), "vmdk", false, |_| {})
                .await
        ));
    }

    #[test]
    fn only_raw_and_qcow2_sources_are_read() {
        let info = |format: &str| ImageInfo {
            format: format.into(),
            virtual_size: 1,
            actual_size: None,
            backing_file: None,
            data_file: None,
        };
        let path = Path::new("/i");
        assert!(check_source(path, &info("raw")).is_ok());
        assert!(check_source(path, &info("qcow2")).is_ok());
        for format in ["vmdk", "vpc", "luks", "qcow"] {
            assert!(
                matches!(
                    check_source(path, &info(format)),
                    Err(QemuImgError::Unsafe { .. })
                ),
                "{format}"
            );
        }
    }
}
