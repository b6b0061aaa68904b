//! ZFS through the `zfs` and `zpool` command-line tools (not libzfs: its
//! ABI follows the installed ZFS release, the CLIs' `-H -p` output does
//! not).
//!
//! hostd marks what it makes with user properties: [`VOLUME_PROPERTY`] on
//! every zvol, [`SNAPSHOT_PROPERTY`] on every snapshot. Destroying is
//! refused for anything without its own mark, so a bug elsewhere cannot
//! take a dataset hostd does not manage. Names passed in are checked so
//! no argument can be read as an option, a snapshot range (`@a%b`) or a
//! list (`@a,b`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::command::{CommandError, Tool};

/// User property naming the volume resource (`<storage>/vm-<vm>-disk<N>`)
/// a zvol is; set on every zvol hostd makes or adopts.
pub const VOLUME_PROPERTY: &str = "horcrux:volume";

/// User property on every snapshot hostd takes: `named` or `scheduled`.
pub const SNAPSHOT_PROPERTY: &str = "horcrux:snapshot";

/// The block size of zvols hostd makes; a volume's size is a multiple.
pub const VOLBLOCKSIZE: u64 = 16 * 1024;

/// Time limit of most commands: they change metadata only.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Time limit of `zfs destroy`: freeing a large zvol's blocks takes long.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(600);

/// How often [`Zfs::wait_for_device`] looks for the device node.
const DEVICE_POLL: Duration = Duration::from_millis(50);

/// Present exactly while the module is loaded (unlike `/dev/zfs`, which
/// exists either way).
const MODULE_DIR: &str = "/sys/module/zfs";

/// Where udev links zvols by dataset name.
const ZVOL_DIR: &str = "/dev/zvol";

/// Columns of the zvol listing, in [`parse_zvols`]'s order.
const LIST_COLUMNS: &str =
    "name,type,volsize,used,referenced,origin,creation,horcrux:volume,horcrux:snapshot";

/// Columns of the pool listing, in [`parse_pools`]'s order.
const POOL_COLUMNS: &str = "name,size,alloc,free,health";

/// Longest dataset or snapshot name ZFS accepts (ZFS_MAX_DATASET_NAME_LEN
/// less the terminating NUL).
const MAX_NAME: usize = 255;

/// Longest user property value ZFS accepts (ZAP_MAXVALUELEN less NUL).
const MAX_VALUE: usize = 8191;

/// How much of an unreadable output line an error quotes.
const MAX_QUOTED_LINE: usize = 200;

/// Who made a snapshot, from its [`SNAPSHOT_PROPERTY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A snapshot the config names.
    Named,
    /// A snapshot taken by a schedule and pruned by its retention.
    Scheduled,
    /// Not made by hostd (no or another mark): never touched.
    Foreign,
}

impl SnapshotKind {
    fn from_property(value: &str) -> Self {
        match value {
            "named" => SnapshotKind::Named,
            "scheduled" => SnapshotKind::Scheduled,
            _ => SnapshotKind::Foreign,
        }
    }

    /// The mark hostd sets; none for [`SnapshotKind::Foreign`].
    fn property_value(self) -> Option<&'static str> {
        match self {
            SnapshotKind::Named => Some("named"),
            SnapshotKind::Scheduled => Some("scheduled"),
            SnapshotKind::Foreign => None,
        }
    }
}

/// An imported pool, from `zpool list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// Bytes, like `alloc` and `free`; 0 when zpool cannot tell (a
    /// faulted pool prints `-`).
    pub size: u64,
    /// Bytes allocated.
    pub alloc: u64,
    /// Bytes free.
    pub free: u64,
    /// `ONLINE`, `DEGRADED`, `FAULTED`, ...
    pub health: String,
}

/// A snapshot of a zvol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The part after `@`.
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    /// Bytes only this snapshot holds.
    pub used: u64,
    pub kind: SnapshotKind,
}

/// A zvol and its snapshots, from `zfs list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zvol {
    /// `pool/.../name`.
    pub dataset: String,
    /// Its [`VOLUME_PROPERTY`]; `None` when unset. `zfs list` cannot tell
    /// a value set on the zvol from one inherited from a parent
    /// filesystem or copied by `zfs recv`, so two zvols may show the same
    /// id: callers treat that as a conflict, not as one volume.
    pub volume_id: Option<String>,
    /// Bytes the guest sees.
    pub volsize: u64,
    /// Bytes used, snapshots included.
    pub used: u64,
    /// Bytes of data the zvol itself references.
    pub referenced: u64,
    /// The snapshot it is a clone of (`pool/ds@snap`).
    pub origin: Option<String>,
    /// Unix seconds.
    pub created: u64,
    /// Sorted by creation, then name.
    pub snapshots: Vec<Snapshot>,
}

/// Why a ZFS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the ZFS kernel module is not loaded")]
    ModuleNotLoaded,
    #[error("no pool `{pool}` to import: its disks are missing or not visible to this host")]
    NoSuchPool { pool: String },
    #[error("`{dataset}` already exists")]
    AlreadyExists { dataset: String },
    #[error("`{dataset}` does not exist")]
    NotFound { dataset: String },
    /// `clones` lists what depends on it (clones, their snapshots and
    /// children), as far as zfs's bounded message goes.
    #[error("`{dataset}` has dependent clones: {}", clones.join(", "))]
    HasClones {
        dataset: String,
        clones: Vec<String>,
    },
    #[error("`{dataset}` is busy")]
    Busy { dataset: String },
    #[error(
        "refusing to shrink `{dataset}` from {current} to {requested} bytes: \
         the data past the new end would be lost"
    )]
    Shrink {
        dataset: String,
        current: u64,
        requested: u64,
    },
    /// A destroy of something hostd does not manage.
    #[error("refusing to destroy `{name}`: {reason}")]
    Refused { name: String, reason: &'static str },
    /// An argument that must not reach zfs.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("zfs printed a line hostd cannot read (line {line}: {reason}): {text:?}")]
    Output {
        line: usize,
        text: String,
        reason: String,
    },
    #[error("{} did not appear within {}", path.display(), humantime::format_duration(*limit))]
    DeviceTimeout { path: PathBuf, limit: Duration },
}

impl ZfsError {
    /// Whether trying again soon may help: a busy dataset is freed when
    /// its VM stops and udev catches up, while a refusal, a missing pool
    /// or an existing name stays until someone acts.
    pub fn retryable(&self) -> bool {
        match self {
            ZfsError::Command(e) => e.retryable(),
            ZfsError::Busy { .. } | ZfsError::DeviceTimeout { .. } => true,
            ZfsError::ModuleNotLoaded
            | ZfsError::NoSuchPool { .. }
            | ZfsError::AlreadyExists { .. }
            | ZfsError::NotFound { .. }
            | ZfsError::HasClones { .. }
            | ZfsError::Shrink { .. }
            | ZfsError::Refused { .. }
            | ZfsError::Invalid { .. }
            | ZfsError::Output { .. } => false,
        }
    }
}

/// The `zfs`, `zpool` and `modprobe` tools.
#[derive(Clone, Debug)]
pub struct Zfs {
    zfs: Tool,
    /// `zfs` with the longer limit of destroys.
    zfs_destroy: Tool,
    zpool: Tool,
    modprobe: Tool,
}

impl Default for Zfs {
    fn default() -> Self {
        Zfs::new()
    }
}

impl Zfs {
    /// The tools from `PATH`.
    pub fn new() -> Self {
        Zfs {
            zfs: Tool::new("zfs", TIMEOUT),
            zfs_destroy: Tool::new("zfs", DESTROY_TIMEOUT),
            zpool: Tool::new("zpool", TIMEOUT),
            modprobe: Tool::new("modprobe", TIMEOUT),
        }
    }

    /// Whether the ZFS kernel module is loaded.
    pub fn module_loaded() -> bool {
        Path::new(MODULE_DIR).exists()
    }

    /// `modprobe zfs` (about 1.5 s); nothing when already loaded.
    pub async fn load_module(&self) -> Result<(), ZfsError> {
        self.modprobe.run(&["zfs"], None).await?;
        Ok(())
    }

    /// The imported pools; none while the module is not loaded.
    pub async fn pools(&self) -> Result<Vec<Pool>, ZfsError> {
        if !Zfs::module_loaded() {
            return Ok(Vec::new());
        }
        let args = ["list", "-H", "-p", "-o", POOL_COLUMNS];
        match self
            .zpool
            .run(&args, None)
            .await
            .map_err(|e| classify(e, ""))
        {
            Ok(stdout) => parse_pools(&String::from_utf8_lossy(&stdout)),
            // Unloaded since the check.
            Err(ZfsError::ModuleNotLoaded) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Imports `pool` without mounting anything (`-N`: the root is
    /// read-only, and a failed mount fails the import's exit status
    /// although the pool is imported) and without a cache file (hostd
    /// imports by config, not by what was imported last boot). A pool of
    /// that name already imported is success.
    pub async fn import(&self, pool: &str) -> Result<(), ZfsError> {
        validate_pool(pool)?;
        let args = ["import", "-N", "-o", "cachefile=none", pool];
        match self.zpool.run(&args, None).await {
            Ok(_) => Ok(()),
            // What zpool says when the pool is imported already (or
            // another pool of that name is: either way `pool` names an
            // imported pool, which is all callers ask).
            Err(CommandError::Failed { stderr, .. })
                if stderr.contains("a pool with that name already exists") =>
            {
                Ok(())
            }
            Err(e) => Err(classify(e, pool)),
        }
    }

    /// All zvols of the imported pools with their snapshots; none while
    /// the module is not loaded.
    pub async fn zvols(&self) -> Result<Vec<Zvol>, ZfsError> {
        self.list(&[]).await
    }

    /// One zvol with its snapshots (`zfs list -r -d 1 DATASET`), without
    /// listing every pool; `None` when it does not exist.
    pub async fn zvol(&self, dataset: &str) -> Result<Option<Zvol>, ZfsError> {
        validate_volume(dataset)?;
        match self.list(&["-r", "-d", "1", dataset]).await {
            Ok(zvols) => Ok(zvols.into_iter().find(|z| z.dataset == dataset)),
            Err(ZfsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `zfs list` of volumes and snapshots in [`LIST_COLUMNS`], limited
    /// by `scope`; empty when the module is not loaded.
    async fn list(&self, scope: &[&str]) -> Result<Vec<Zvol>, ZfsError> {
        if !Zfs::module_loaded() {
            return Ok(Vec::new());
        }
        let mut args = vec![
            "list",
            "-H",
            "-p",
            "-t",
            "volume,snapshot",
            "-o",
            LIST_COLUMNS,
        ];
        args.extend_from_slice(scope);
        let subject = scope.last().copied().unwrap_or_default();
        match self
            .zfs
            .run(&args, None)
            .await
            .map_err(|e| classify(e, subject))
        {
            // Property values are arbitrary bytes; a non-UTF-8 one belongs
            // to no volume hostd made and must not hide the others.
            Ok(stdout) => parse_zvols(&String::from_utf8_lossy(&stdout)),
            Err(ZfsError::ModuleNotLoaded) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Creates a sparse zvol of `size` bytes (a multiple of
    /// [`VOLBLOCKSIZE`]) marked as `volume_id`. Its parent must exist:
    /// `-p` would make parents as filesystems that try to mount on the
    /// read-only root. The device appears later: [`Zfs::wait_for_device`].
    pub async fn create(&self, dataset: &str, size: u64, volume_id: &str) -> Result<(), ZfsError> {
        let args = create_args(dataset, size, volume_id)?;
        self.zfs
            .run(&args, None)
            .await
            .map_err(|e| classify(e, dataset))?;
        Ok(())
    }

    /// Creates `dataset` as a clone of `snapshot` (`pool/ds@name`),
    /// marked as `volume_id`. It has the origin's size at the snapshot.
    pub async fn clone_snapshot(
        &self,
        snapshot: &str,
        dataset: &str,
        volume_id: &str,
    ) -> Result<(), ZfsError> {
        let args = clone_args(snapshot, dataset, volume_id)?;
        self.zfs
            .run(&args, None)
            .await
            .map_err(|e| classify(e, dataset))?;
        Ok(())
    }

    /// Sets a user property (`module:name`, such as [`VOLUME_PROPERTY`]) on
    /// a zvol or snapshot. Native properties are not set this way: they
    /// change how ZFS treats the data (`volsize` would bypass
    /// [`Zfs::grow`]'s refusal to shrink).
    pub async fn set_property(
        &self,
        dataset: &str,
        property: &str,
        value: &str,
    ) -> Result<(), ZfsError> {
        let args = set_args(dataset, property, value)?;
        self.zfs
            .run(&args, None)
            .await
            .map_err(|e| classify(e, dataset))?;
        Ok(())
    }

    /// Grows a zvol from `current` to `size` bytes; nothing when equal.
    /// A smaller `size` is refused ([`ZfsError::Shrink`]): `zfs set
    /// volsize` would shrink and lose the data past the new end. The
    /// live size is checked too, in case `current` is stale.
    pub async fn grow(&self, dataset: &str, current: u64, size: u64) -> Result<(), ZfsError> {
        validate_volume(dataset)?;
        let shrink = |current| ZfsError::Shrink {
            dataset: dataset.to_string(),
            current,
            requested: size,
        };
        if size < current {
            return Err(shrink(current));
        }
        let live = self.volsize(dataset).await?;
        if size < live {
            return Err(shrink(live));
        }
        if size == live {
            return Ok(());
        }
        let volsize = format!("volsize={size}");
        self.zfs
            .run(&["set", volsize.as_str(), dataset], None)
            .await
            .map_err(|e| classify(e, dataset))?;
        Ok(())
    }

    /// Snapshots `datasets` as `name`, marked as `kind` (not
    /// [`SnapshotKind::Foreign`]). One `zfs snapshot` per pool, so the
    /// snapshots of one pool are taken atomically; across pools they are
    /// not, and when a later pool fails the earlier pools' snapshots stay.
    pub async fn snapshot(
        &self,
        datasets: &[String],
        name: &str,
        kind: SnapshotKind,
    ) -> Result<(), ZfsError> {
        for args in snapshot_args(datasets, name, kind)? {
            // The last argument is a snapshot of that pool: what an error
            // without a quoted name is about.
            let subject = args.last().cloned().unwrap_or_default();
            self.zfs
                .run(&args, None)
                .await
                .map_err(|e| classify(e, &subject))?;
        }
        Ok(())
    }

    /// Destroys `dataset@name` if hostd made it (its own
    /// [`SNAPSHOT_PROPERTY`] is `named` or `scheduled`); the origin of a
    /// clone is [`ZfsError::HasClones`].
    pub async fn destroy_snapshot(&self, dataset: &str, name: &str) -> Result<(), ZfsError> {
        validate_volume(dataset)?;
        validate_component("snapshot name", name)?;
        let snapshot = format!("{dataset}@{name}");
        let props = self.get(&snapshot, &[SNAPSHOT_PROPERTY]).await?;
        // An inherited value was set on the zvol or above, not by hostd
        // taking this snapshot.
        let marked = props.get(SNAPSHOT_PROPERTY).is_some_and(|(value, source)| {
            set_here(source) && SnapshotKind::from_property(value) != SnapshotKind::Foreign
        });
        if !marked {
            return Err(ZfsError::Refused {
                name: snapshot,
                reason: "hostd did not take this snapshot",
            });
        }
        self.zfs_destroy
            .run(&["destroy", snapshot.as_str()], None)
            .await
            .map_err(|e| classify(e, &snapshot))?;
        Ok(())
    }

    /// Destroys a zvol hostd manages (its own [`VOLUME_PROPERTY`]) with
    /// its snapshots (`-r`). Never `-R`: a zvol whose snapshots have
    /// clones is [`ZfsError::HasClones`], the clones are other volumes.
    pub async fn destroy_volume(&self, dataset: &str) -> Result<(), ZfsError> {
        validate_volume(dataset)?;
        let props = self.get(dataset, &["type", VOLUME_PROPERTY]).await?;
        // `destroy -r` of a filesystem would take everything below it.
        if props.get("type").map(|(value, _)| value.as_str()) != Some("volume") {
            return Err(ZfsError::Refused {
                name: dataset.to_string(),
                reason: "not a zvol",
            });
        }
        let marked = props
            .get(VOLUME_PROPERTY)
            .is_some_and(|(value, source)| set_here(source) && value != "-");
        if !marked {
            return Err(ZfsError::Refused {
                name: dataset.to_string(),
                reason: "hostd does not manage this zvol (no horcrux:volume of its own)",
            });
        }
        self.zfs_destroy
            .run(&["destroy", "-r", dataset], None)
            .await
            .map_err(|e| classify(e, dataset))?;
        Ok(())
    }

    /// Renames a zvol within its pool; its device link follows (udev).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), ZfsError> {
        validate_volume(from)?;
        validate_volume(to)?;
        self.zfs
            .run(&["rename", from, to], None)
            .await
            .map_err(|e| classify(e, from))?;
        Ok(())
    }

    /// Waits for `/dev/zvol/<dataset>` to resolve (udev links it shortly
    /// after a create, clone or rename) and returns that path.
    pub async fn wait_for_device(dataset: &str, timeout: Duration) -> Result<PathBuf, ZfsError> {
        validate_volume(dataset)?;
        wait_for_path(Path::new(ZVOL_DIR).join(dataset), timeout).await
    }

    /// `zfs get` of `properties` of one dataset: property -> (value,
    /// source).
    async fn get(
        &self,
        dataset: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, (String, String)>, ZfsError> {
        let list = properties.join(",");
        let args = [
            "get",
            "-H",
            "-p",
            "-o",
            "property,value,source",
            list.as_str(),
            dataset,
        ];
        let stdout = self
            .zfs
            .run(&args, None)
            .await
            .map_err(|e| classify(e, dataset))?;
        parse_get(&String::from_utf8_lossy(&stdout))
    }

    /// The live `volsize` of a zvol.
    async fn volsize(&self, dataset: &str) -> Result<u64, ZfsError> {
        let props = self.get(dataset, &["volsize"]).await?;
        let value = props.get("volsize").map(|(value, _)| value.as_str());
        match value.map(str::parse) {
            Some(Ok(size)) => Ok(size),
            // `-`: a filesystem or snapshot.
            _ => Err(ZfsError::Invalid {
                what: "zvol",
                value: dataset.to_string(),
                reason: "not a zvol",
            }),
        }
    }
}

/// Whether a `zfs get` source says the value was set on the dataset
/// itself: by `zfs set`/`-o` (`local`) or by `zfs recv` (`received`).
fn set_here(source: &str) -> bool {
    matches!(source, "local" | "received")
}

async fn wait_for_path(path: PathBuf, timeout: Duration) -> Result<PathBuf, ZfsError> {
    let deadline = Instant::now() + timeout;
    loop {
        // metadata follows the link: a link to a node not made yet is
        // not a device yet.
        if tokio::fs::metadata(&path).await.is_ok() {
            return Ok(path);
        }
        if Instant::now() >= deadline {
            return Err(ZfsError::DeviceTimeout {
                path,
                limit: timeout,
            });
        }
        tokio::time::sleep(DEVICE_POLL).await;
    }
}

/// `zfs create` of a sparse zvol.
fn create_args(dataset: &str, size: u64, volume_id: &str) -> Result<Vec<String>, ZfsError> {
    validate_volume(dataset)?;
    validate_value(volume_id)?;
    if size == 0 || !size.is_multiple_of(VOLBLOCKSIZE) {
        return Err(ZfsError::Invalid {
            what: "zvol size",
            value: size.to_string(),
            reason: "not a positive multiple of 16 KiB",
        });
    }
    Ok(vec![
        "create".into(),
        // Sparse: no refreservation, space is taken as the guest writes.
        "-s".into(),
        "-V".into(),
        size.to_string(),
        "-o".into(),
        format!("volblocksize={}K", VOLBLOCKSIZE / 1024),
        "-o".into(),
        format!("{VOLUME_PROPERTY}={volume_id}"),
        dataset.into(),
    ])
}

fn clone_args(snapshot: &str, dataset: &str, volume_id: &str) -> Result<Vec<String>, ZfsError> {
    validate_snapshot(snapshot)?;
    validate_volume(dataset)?;
    validate_value(volume_id)?;
    Ok(vec![
        "clone".into(),
        "-o".into(),
        format!("{VOLUME_PROPERTY}={volume_id}"),
        snapshot.into(),
        dataset.into(),
    ])
}

fn set_args(dataset: &str, property: &str, value: &str) -> Result<Vec<String>, ZfsError> {
    match dataset.split_once('@') {
        Some(_) => validate_snapshot(dataset)?,
        None => validate_volume(dataset)?,
    }
    validate_user_property(property)?;
    validate_value(value)?;
    Ok(vec![
        "set".into(),
        format!("{property}={value}"),
        dataset.into(),
    ])
}

/// One `zfs snapshot` argv per pool (in pool order), each dataset once.
fn snapshot_args(
    datasets: &[String],
    name: &str,
    kind: SnapshotKind,
) -> Result<Vec<Vec<String>>, ZfsError> {
    validate_component("snapshot name", name)?;
    let Some(mark) = kind.property_value() else {
        return Err(ZfsError::Invalid {
            what: "snapshot kind",
            value: format!("{kind:?}"),
            reason: "hostd only takes named and scheduled snapshots",
        });
    };
    let mut by_pool: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for dataset in datasets {
        validate_volume(dataset)?;
        by_pool.entry(pool_of(dataset)).or_default().insert(dataset);
    }
    Ok(by_pool
        .into_values()
        .map(|datasets| {
            let mut args = vec![
                "snapshot".to_string(),
                "-o".to_string(),
                format!("{SNAPSHOT_PROPERTY}={mark}"),
            ];
            args.extend(datasets.into_iter().map(|d| format!("{d}@{name}")));
            args
        })
        .collect())
}

fn pool_of(dataset: &str) -> &str {
    dataset.split('/').next().unwrap_or(dataset)
}

/// Turns zfs's failure texts (untranslated: `LC_ALL=C`) into variants
/// callers act on; `subject` is what the command was about, for texts
/// that do not quote a name.
fn classify(error: CommandError, subject: &str) -> ZfsError {
    let CommandError::Failed {
        stderr, truncated, ..
    } = &error
    else {
        return error.into();
    };
    let named = || quoted(stderr).unwrap_or(subject).to_string();
    if stderr.contains("The ZFS modules are not loaded") {
        ZfsError::ModuleNotLoaded
    } else if stderr.contains("no such pool available") {
        ZfsError::NoSuchPool {
            pool: subject.to_string(),
        }
    } else if stderr.contains("has dependent clones") {
        ZfsError::HasClones {
            dataset: named(),
            clones: dependents(stderr, *truncated),
        }
    } else if stderr.contains("dataset already exists") {
        ZfsError::AlreadyExists { dataset: named() }
    } else if stderr.contains("dataset does not exist")
        || stderr.contains("could not find any snapshots to destroy")
    {
        ZfsError::NotFound { dataset: named() }
    } else if stderr.contains("dataset is busy") {
        ZfsError::Busy { dataset: named() }
    } else {
        error.into()
    }
}

/// The first `'...'` of a zfs message: the dataset it is about.
fn quoted(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('\'')?;
    let (name, _) = rest.split_once('\'')?;
    Some(name)
}

/// The datasets zfs lists after "use '-R' to destroy the following
/// datasets:". A cut message's last line may be a partial name: dropped.
fn dependents(stderr: &str, truncated: bool) -> Vec<String> {
    let Some((_, list)) = stderr.split_once("the following datasets:") else {
        return Vec::new();
    };
    let mut names: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if truncated {
        names.pop();
    }
    names
}

/// Reads `zpool list -H -p -o name,size,alloc,free,health`.
pub fn parse_pools(text: &str) -> Result<Vec<Pool>, ZfsError> {
    let mut pools = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let unreadable = |reason: &str| output_error(index, line, reason);
        let [name, size, alloc, free, health] =
            fields(line).ok_or_else(|| unreadable("expected 5 tab-separated columns"))?;
        if name.is_empty() {
            return Err(unreadable("empty pool name"));
        }
        let bytes = |column: &str, value: &str| match value {
            "-" => Ok(0),
            value => value
                .parse()
                .map_err(|_| unreadable(&format!("{column} is not a number of bytes"))),
        };
        pools.push(Pool {
            name: name.to_string(),
            size: bytes("size", size)?,
            alloc: bytes("alloc", alloc)?,
            free: bytes("free", free)?,
            health: health.to_string(),
        });
    }
    Ok(pools)
}

/// Reads `zfs list -H -p -t volume,snapshot -o name,type,volsize,used,
/// referenced,origin,creation,horcrux:volume,horcrux:snapshot`: zvols
/// sorted by name, each with its snapshots. Rows of other types and
/// snapshots of filesystems are left out.
pub fn parse_zvols(text: &str) -> Result<Vec<Zvol>, ZfsError> {
    let mut zvols: BTreeMap<String, Zvol> = BTreeMap::new();
    // A zvol's own horcrux:snapshot (normally unset): what its snapshots
    // show when they inherit it instead of carrying their own mark.
    let mut inherited_marks: BTreeMap<String, String> = BTreeMap::new();
    let mut snapshots: Vec<(String, Snapshot, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let unreadable = |reason: &str| output_error(index, line, reason);
        let [
            name,
            kind,
            volsize,
            used,
            referenced,
            origin,
            creation,
            volume,
            mark,
        ] = fields(line).ok_or_else(|| unreadable("expected 9 tab-separated columns"))?;
        let number = |column: &str, value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| unreadable(&format!("{column} is not a number")))
        };
        match kind {
            "volume" => {
                if name.is_empty() || name.contains('@') {
                    return Err(unreadable("not a zvol name"));
                }
                let zvol = Zvol {
                    dataset: name.to_string(),
                    volume_id: set(volume).map(str::to_string),
                    volsize: number("volsize", volsize)?,
                    used: number("used", used)?,
                    referenced: number("referenced", referenced)?,
                    origin: set(origin).map(str::to_string),
                    created: number("creation", creation)?,
                    snapshots: Vec::new(),
                };
                if zvols.insert(name.to_string(), zvol).is_some() {
                    return Err(unreadable("zvol listed twice"));
                }
                if let Some(mark) = set(mark) {
                    inherited_marks.insert(name.to_string(), mark.to_string());
                }
            }
            "snapshot" => {
                let Some((dataset, snapshot)) = name.split_once('@') else {
                    return Err(unreadable("snapshot name without '@'"));
                };
                if dataset.is_empty() || snapshot.is_empty() {
                    return Err(unreadable("not a snapshot name"));
                }
                let parsed = Snapshot {
                    name: snapshot.to_string(),
                    created: number("creation", creation)?,
                    used: number("used", used)?,
                    kind: SnapshotKind::from_property(mark),
                };
                snapshots.push((dataset.to_string(), parsed, mark.to_string()));
            }
            _ => {}
        }
    }
    for (dataset, mut snapshot, mark) in snapshots {
        // Snapshots of filesystems are listed too; they are not hostd's.
        let Some(zvol) = zvols.get_mut(&dataset) else {
            continue;
        };
        // The listing cannot tell an inherited mark from an own one: when
        // the zvol has the same mark, the snapshot may not be hostd's.
        if inherited_marks.get(&dataset) == Some(&mark) {
            snapshot.kind = SnapshotKind::Foreign;
        }
        zvol.snapshots.push(snapshot);
    }
    let mut zvols: Vec<Zvol> = zvols.into_values().collect();
    for zvol in &mut zvols {
        zvol.snapshots
            .sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    }
    Ok(zvols)
}

/// Reads `zfs get -H -p -o property,value,source`.
fn parse_get(text: &str) -> Result<BTreeMap<String, (String, String)>, ZfsError> {
    let mut props = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let [property, value, source] = fields(line)
            .ok_or_else(|| output_error(index, line, "expected 3 tab-separated columns"))?;
        props.insert(
            property.to_string(),
            (value.to_string(), source.to_string()),
        );
    }
    Ok(props)
}

/// Exactly `N` tab-separated columns.
fn fields<const N: usize>(line: &str) -> Option<[&str; N]> {
    let columns: Vec<&str> = line.split('\t').collect();
    columns.try_into().ok()
}

/// `None` for zfs's `-` (unset).
fn set(value: &str) -> Option<&str> {
    (value != "-").then_some(value)
}

fn output_error(index: usize, line: &str, reason: &str) -> ZfsError {
    let mut end = line.len().min(MAX_QUOTED_LINE);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    ZfsError::Output {
        line: index + 1,
        text: line[..end].to_string(),
        reason: reason.to_string(),
    }
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> ZfsError {
    ZfsError::Invalid {
        what,
        value: value.to_string(),
        reason,
    }
}

/// One component of a dataset or snapshot name. Stricter than ZFS (no
/// spaces, no leading `-`), so it never reads as an option or needs
/// quoting, and without `%` and `,` that `zfs destroy` reads as ranges
/// and lists.
fn validate_component(what: &'static str, value: &str) -> Result<(), ZfsError> {
    if value.is_empty() {
        return Err(invalid(what, value, "empty"));
    }
    if value.len() > MAX_NAME {
        return Err(invalid(what, value, "longer than 255 bytes"));
    }
    if value.starts_with('-') {
        return Err(invalid(what, value, "starts with '-'"));
    }
    if value == "." || value == ".." {
        return Err(invalid(what, value, "'.' and '..' are not names"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(invalid(
            what,
            value,
            "only letters, digits, '_', '-', '.' and ':' are allowed",
        ));
    }
    Ok(())
}

fn validate_pool(pool: &str) -> Result<(), ZfsError> {
    validate_component("pool name", pool)?;
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid("pool name", pool, "must start with a letter"));
    }
    Ok(())
}

/// `pool/.../name`: never a pool's root dataset, which is a filesystem
/// (and `zfs destroy -r pool` empties the pool).
fn validate_volume(dataset: &str) -> Result<(), ZfsError> {
    if dataset.len() > MAX_NAME {
        return Err(invalid("zvol name", dataset, "longer than 255 bytes"));
    }
    let mut components = dataset.split('/');
    validate_pool(components.next().unwrap_or_default())?;
    let mut children = 0;
    for component in components {
        validate_component("zvol name component", component)?;
        children += 1;
    }
    if children == 0 {
        return Err(invalid("zvol name", dataset, "a pool is not a zvol"));
    }
    Ok(())
}

/// `pool/.../name@snapshot`.
fn validate_snapshot(snapshot: &str) -> Result<(), ZfsError> {
    let Some((dataset, name)) = snapshot.split_once('@') else {
        return Err(invalid("snapshot", snapshot, "no '@'"));
    };
    if snapshot.len() > MAX_NAME {
        return Err(invalid("snapshot", snapshot, "longer than 255 bytes"));
    }
    validate_volume(dataset)?;
    validate_component("snapshot name", name)
}

/// A user property: ZFS requires a ':' and lower-case letters, digits and
/// `:+._-`; a leading letter keeps it from reading as an option.
fn validate_user_property(property: &str) -> Result<(), ZfsError> {
    let what = "user property";
    if !property.starts_with(|c: char| c.is_ascii_lowercase()) || !property.contains(':') {
        return Err(invalid(
            what,
            property,
            "must start with a lower-case letter and contain ':'",
        ));
    }
    if property.len() > MAX_NAME
        || !property.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b':' | b'+' | b'.' | b'_' | b'-')
        })
    {
        return Err(invalid(
            what,
            property,
            "only lower-case letters, digits and ':+._-' are allowed",
        ));
    }
    Ok(())
}

/// A user property value hostd sets. No control characters (a tab or
/// newline would break the `-H` listings), and not `-`, which the
/// listings print for unset.
fn validate_value(value: &str) -> Result<(), ZfsError> {
    let what = "property value";
    if value.is_empty() || value == "-" {
        return Err(invalid(what, value, "empty or '-'"));
    }
    if value.len() > MAX_VALUE {
        return Err(invalid(what, value, "longer than 8191 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(what, value, "contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZFS_LIST: &str = include_str!("fixtures/zfs-list-2.1.11.txt");
    const ZPOOL_LIST: &str = include_str!("fixtures/zpool-list-2.1.11.txt");

    fn failed(stderr: &str) -> CommandError {
        CommandError::Failed {
            command: "zfs x".into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
            truncated: false,
        }
    }

    #[test]
    fn reads_the_captured_pool_listing() {
        let pools = parse_pools(ZPOOL_LIST).expect("captured listing");
        assert_eq!(
            pools,
            vec![Pool {
                name: "tank".into(),
                size: 4_026_531_840,
                alloc: 264_192,
                free: 4_026_267_648,
                health: "ONLINE".into(),
            }]
        );
    }

    #[test]
    fn a_faulted_pool_without_sizes_is_listed() {
        let pools = parse_pools("gone\t-\t-\t-\tUNAVAIL\n").expect("faulted pool");
        assert_eq!(pools[0].size, 0);
        assert_eq!(pools[0].health, "UNAVAIL");
    }

    #[test]
    fn reads_the_captured_zvol_listing() {
        let zvols = parse_zvols(ZFS_LIST).expect("captured listing");
        let names: Vec<&str> = zvols.iter().map(|z| z.dataset.as_str()).collect();
        assert_eq!(
            names,
            [
                "tank/plainvol",
                "tank/vms/vm-a-disk0",
                "tank/vms/vm-b-disk0"
            ]
        );

        let plain = &zvols[0];
        assert_eq!(plain.volume_id, None);
        assert_eq!(plain.volsize, 33_554_432);
        assert_eq!(plain.used, 36_700_160);
        assert_eq!(plain.referenced, 12_288);
        assert_eq!(plain.origin, None);
        assert_eq!(plain.created, 1_795_671_287);
        assert!(plain.snapshots.is_empty());

        let a = &zvols[1];
        assert_eq!(a.volume_id.as_deref(), Some("local-zfs/vm-a-disk0"));
        assert_eq!(a.volsize, 16_777_216);
        assert_eq!(a.used, 24_576);
        assert_eq!(a.created, 1_795_671_286);
        // By creation, then name: auto-... and manual share a second.
        let snapshots: Vec<(&str, u64, SnapshotKind)> = a
            .snapshots
            .iter()
            .map(|s| (s.name.as_str(), s.created, s.kind))
            .collect();
        assert_eq!(
            snapshots,
            [
                ("base", 1_795_671_286, SnapshotKind::Named),
                (
                    "auto-20261126T053000Z",
                    1_795_671_287,
                    SnapshotKind::Scheduled
                ),
                ("manual", 1_795_671_287, SnapshotKind::Foreign),
                ("x", 1_795_671_300, SnapshotKind::Foreign),
            ]
        );
        assert!(a.snapshots.iter().all(|s| s.used == 0));

        let b = &zvols[2];
        assert_eq!(b.volume_id.as_deref(), Some("local-zfs/vm-b-disk0"));
        assert_eq!(b.origin.as_deref(), Some("tank/vms/vm-a-disk0@base"));
        assert_eq!(b.volsize, 67_108_864);
        assert_eq!(b.snapshots.len(), 1);
        assert_eq!(b.snapshots[0].name, "x");
        assert_eq!(b.snapshots[0].kind, SnapshotKind::Foreign);
    }

    #[test]
    fn snapshots_of_filesystems_and_other_types_are_left_out() {
        let text = "tank\tfilesystem\t-\t1\t1\t-\t1\t-\t-\n\
                    tank/fs@s\tsnapshot\t-\t0\t1\t-\t2\t-\tnamed\n\
                    tank/v#b\tbookmark\t-\t-\t-\t-\t3\t-\t-\n";
        assert_eq!(parse_zvols(text).expect("other types"), Vec::new());
    }

    #[test]
    fn a_mark_inherited_from_the_zvol_is_not_hostds() {
        let text = "tank/v\tvolume\t16384\t0\t0\t-\t1\tid\tnamed\n\
                    tank/v@s\tsnapshot\t16384\t0\t0\t-\t2\tid\tnamed\n\
                    tank/v@t\tsnapshot\t16384\t0\t0\t-\t3\tid\tscheduled\n";
        let zvols = parse_zvols(text).expect("listing");
        let kinds: Vec<SnapshotKind> = zvols[0].snapshots.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SnapshotKind::Foreign, SnapshotKind::Scheduled]);
    }

    #[test]
    fn malformed_listings_are_errors_naming_the_line() {
        let good = "tank/v\tvolume\t16384\t0\t0\t-\t1\t-\t-\n";
        for bad in [
            "tank/v\tvolume\t16384\n",
            "tank/v\tvolume\tbig\t0\t0\t-\t1\t-\t-\n",
            "tank/v\tvolume\t-1\t0\t0\t-\t1\t-\t-\n",
            "tank/v@s\tvolume\t16384\t0\t0\t-\t1\t-\t-\n",
            "tank/v\tsnapshot\t16384\t0\t0\t-\t1\t-\t-\n",
            "tank/v@s\tsnapshot\t16384\tx\t0\t-\t1\t-\t-\n",
            "tank/v\tvolume\t16384\t0\t0\t-\t1\ta\tb\textra\n",
            "tank/v\tvolume\t16384\t0\t0\t-\t1\t-\t-\n",
        ] {
            let text = format!("{good}{bad}");
            let err = parse_zvols(&text).expect_err(bad);
            assert!(matches!(err, ZfsError::Output { line: 2, .. }), "{err:?}");
            assert!(err.to_string().contains("line 2"), "{err}");
        }
        let err = parse_pools("tank\t1\t2\n").expect_err("3 columns");
        assert!(matches!(err, ZfsError::Output { line: 1, .. }), "{err:?}");
        let err = parse_pools("tank\tx\t2\t3\tONLINE\n").expect_err("size");
        assert!(err.to_string().contains("size"), "{err}");
    }

    #[test]
    fn an_unreadable_line_is_quoted_bounded() {
        let long = format!("{}\n", "é".repeat(1000));
        let ZfsError::Output { text, .. } = parse_zvols(&long).expect_err("garbage") else {
            panic!("not an output error");
        };
        assert!(text.len() <= MAX_QUOTED_LINE);
    }

    #[test]
    fn reads_zfs_get() {
        let props = parse_get("type\tvolume\t-\nhorcrux:volume\tlocal-zfs/vm-a-disk0\tlocal\n")
            .expect("get output");
        assert_eq!(props["type"], ("volume".into(), "-".into()));
        assert_eq!(
            props[VOLUME_PROPERTY],
            ("local-zfs/vm-a-disk0".into(), "local".into())
        );
        assert!(parse_get("type\tvolume\n").is_err());
        assert!(set_here("received"));
        assert!(!set_here("inherited from tank/vms"));
        assert!(!set_here("-"));
    }

    #[test]
    fn create_is_sparse_with_16k_blocks_and_the_mark() {
        let args =
            create_args("tank/vms/vm-a-disk0", 1 << 30, "local-zfs/vm-a-disk0").expect("valid");
        assert_eq!(
            args,
            [
                "create",
                "-s",
                "-V",
                "1073741824",
                "-o",
                "volblocksize=16K",
                "-o",
                "horcrux:volume=local-zfs/vm-a-disk0",
                "tank/vms/vm-a-disk0",
            ]
        );
        for size in [0, 1000, VOLBLOCKSIZE + 512] {
            assert!(
                matches!(
                    create_args("tank/v", size, "s/v"),
                    Err(ZfsError::Invalid { .. })
                ),
                "{size}"
            );
        }
    }

    #[test]
    fn clone_and_set_name_the_mark() {
        assert_eq!(
            clone_args("tank/a@base", "tank/b", "s/b").expect("valid"),
            ["clone", "-o", "horcrux:volume=s/b", "tank/a@base", "tank/b"]
        );
        assert!(clone_args("tank/a", "tank/b", "s/b").is_err());
        assert_eq!(
            set_args("tank/a", VOLUME_PROPERTY, "s/a").expect("valid"),
            ["set", "horcrux:volume=s/a", "tank/a"]
        );
        assert!(set_args("tank/a@s", SNAPSHOT_PROPERTY, "named").is_ok());
        // Native properties: volsize would shrink behind grow's back.
        for property in ["volsize", "-o", "Horcrux:x", "horcrux:a b", ":x"] {
            assert!(set_args("tank/a", property, "1").is_err(), "{property}");
        }
        for value in ["", "-", "a\tb", "a\nb", &"x".repeat(MAX_VALUE + 1)] {
            assert!(
                set_args("tank/a", VOLUME_PROPERTY, value).is_err(),
                "{value}"
            );
        }
    }

    #[test]
    fn snapshots_are_one_call_per_pool() {
        let datasets: Vec<String> = [
            "tank/vm-a-disk1",
            "fast/vm-a-disk0",
            "tank/vm-a-disk0",
            "tank/vm-a-disk1",
        ]
        .map(String::from)
        .to_vec();
        let calls = snapshot_args(&datasets, "auto-1", SnapshotKind::Scheduled).expect("valid");
        assert_eq!(
            calls,
            [
                vec![
                    "snapshot",
                    "-o",
                    "horcrux:snapshot=scheduled",
                    "fast/vm-a-disk0@auto-1"
                ],
                vec![
                    "snapshot",
                    "-o",
                    "horcrux:snapshot=scheduled",
                    "tank/vm-a-disk0@auto-1",
                    "tank/vm-a-disk1@auto-1"
                ],
            ]
        );
        let named = snapshot_args(&datasets[..1], "base", SnapshotKind::Named).expect("valid");
        assert_eq!(named[0][2], "horcrux:snapshot=named");
        assert!(snapshot_args(&datasets, "x", SnapshotKind::Foreign).is_err());
        assert!(snapshot_args(&datasets, "a,b", SnapshotKind::Named).is_err());
        assert!(
            snapshot_args(&[], "x", SnapshotKind::Named)
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn names_that_could_be_options_or_patterns_are_refused() {
        for good in [
            "tank/v",
            "tank/vms/vm-a-disk0",
            "t1/a_b.c:d-e",
            "tank/v.importing",
        ] {
            assert!(validate_volume(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "tank",
            "-tank/v",
            "1tank/v",
            "tank/-v",
            "tank//v",
            "tank/v/",
            "tank/a b",
            "tank/a\tb",
            "tank/a@b",
            "tank/a%b",
            "tank/a,b",
            "tank/..",
            "tank/é",
            &format!("tank/{}", "x".repeat(MAX_NAME)),
        ] {
            assert!(
                matches!(validate_volume(bad), Err(ZfsError::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert!(validate_snapshot("tank/v@base").is_ok());
        for bad in ["tank/v@", "tank/v@-x", "tank@x", "tank/v@a@b", "tank/v@a%b"] {
            assert!(validate_snapshot(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zfs_failure_texts_become_variants() {
        let err = classify(
            failed(
                "cannot destroy 'tank/vms/vm-a-disk0@base': snapshot has dependent clones\n\
                 use '-R' to destroy the following datasets:\ntank/vms/vm-b-disk0",
            ),
            "tank/vms/vm-a-disk0@base",
        );
        let ZfsError::HasClones { dataset, clones } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(dataset, "tank/vms/vm-a-disk0@base");
        assert_eq!(clones, &["tank/vms/vm-b-disk0"]);
        assert!(!err.retryable());

        let err = classify(
            failed("cannot create 'tank/vms/vm-b-disk0': dataset already exists"),
            "x/y",
        );
        assert!(
            matches!(&err, ZfsError::AlreadyExists { dataset } if dataset == "tank/vms/vm-b-disk0"),
            "{err:?}"
        );
        let err = classify(
            failed("cannot import 'nosuch': no such pool available"),
            "nosuch",
        );
        assert!(matches!(&err, ZfsError::NoSuchPool { pool } if pool == "nosuch"));
        assert!(err.to_string().contains("disks are missing"), "{err}");
        let err = classify(
            failed("cannot open 'nosuch/x': dataset does not exist"),
            "a/b",
        );
        assert!(matches!(&err, ZfsError::NotFound { dataset } if dataset == "nosuch/x"));
        let err = classify(
            failed(
                "The ZFS modules are not loaded.\n\
                 Try running '/sbin/modprobe zfs' as root to load them.",
            ),
            "a/b",
        );
        assert!(matches!(err, ZfsError::ModuleNotLoaded), "{err:?}");
        let err = classify(failed("cannot destroy 'tank/v': dataset is busy"), "tank/v");
        assert!(matches!(err, ZfsError::Busy { .. }) && err.retryable());

        let err = classify(failed("cannot open 'tank': permission denied"), "tank/v");
        assert!(matches!(err, ZfsError::Command(_)) && !err.retryable());
        let timeout = CommandError::Timeout {
            command: "zfs destroy".into(),
            limit: DESTROY_TIMEOUT,
        };
        assert!(classify(timeout, "tank/v").retryable());
    }

    #[test]
    fn a_cut_clone_list_drops_its_partial_last_name() {
        let stderr = "cannot destroy 'tank/a': volume has dependent clones\n\
                      use '-R' to destroy the following datasets:\ntank/b\ntank/c\ntank/d...";
        assert_eq!(dependents(stderr, true), ["tank/b", "tank/c"]);
        assert_eq!(dependents(stderr, false).len(), 3);
        assert!(dependents("cannot destroy", false).is_empty());
    }

    #[test]
    fn shrink_is_refused_before_asking_zfs() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // A zfs that cannot run: the refusal must come first.
        let zfs = Zfs {
            zfs: Tool::new("/nonexistent/zfs", TIMEOUT),
            ..Zfs::new()
        };
        let err = rt
            .block_on(zfs.grow("tank/v", 2 << 30, 1 << 30))
            .expect_err("shrink");
        assert!(
            matches!(err, ZfsError::Shrink { current, requested, .. } if current == 2 << 30 && requested == 1 << 30),
            "{err:?}"
        );
        assert!(!err.retryable());
        assert!(err.to_string().contains("would be lost"), "{err}");
    }

    #[tokio::test]
    async fn waiting_for_a_device_sees_it_appear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("zd0");
        let later = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tokio::fs::write(&later, b"").await
        });
        let found = wait_for_path(path.clone(), Duration::from_secs(10))
            .await
            .expect("appears");
        assert_eq!(found, path);
        writer.await.expect("joined").expect("written");

        let err = wait_for_path(dir.path().join("never"), Duration::from_millis(120))
            .await
            .expect_err("never appears");
        assert!(matches!(err, ZfsError::DeviceTimeout { .. }) && err.retryable());
    }

    #[test]
    fn the_listing_asks_for_both_marks() {
        assert!(LIST_COLUMNS.ends_with(&format!("{VOLUME_PROPERTY},{SNAPSHOT_PROPERTY}")));
    }
}
