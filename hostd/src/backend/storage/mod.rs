//! The storage backend: ZFS pools (imported, never created), one volume
//! per VM disk (a sparse zvol or a qcow2 file), named snapshots, linked
//! clones and image imports. Scheduled snapshots run on their own clock
//! ([`scheduler`]), not in the plan.
//!
//! Nothing here destroys data: the planner never deletes a pool or a
//! volume ([`ResourceKind::keeps_data`]), a disk only grows, and only
//! snapshots hostd made (marked with a ZFS user property) are destroyed,
//! when undeclared or past retention. `horcrux purge vm NAME` is the one
//! way to delete a removed VM's disks.

pub mod desired;
pub mod qemu_img;
mod schedule;
pub mod scheduler;
pub mod zfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use horcrux_config::Config;

use self::desired::{Place, Source, VolumeSpec, size_field};
use self::qemu_img::QemuImg;
use self::zfs::{SnapshotKind, Zfs, ZfsError, Zvol};
use crate::apply::{Backend, BackendError, BoxFuture};
use crate::backend::naming::Layout;
use crate::backend::qemu::qga;
use crate::backend::qemu::qmp::Qmp;
use crate::plan::{Action, Desired, Observed, Op, ResourceId, ResourceKind};
use crate::status::StatusHandle;

/// Payload key of a volume's [`Desired`]: its [`VolumeSpec`] as JSON.
const SPEC: &str = "spec";

/// The suffix of a zvol or file an image is being written into; renamed
/// to the volume's name only once complete, so a VM never starts from a
/// half-written disk, and a leftover from a crash is started over.
const IMPORTING: &str = ".importing";

/// How long udev may take to make `/dev/zvol/...` after a create.
const DEVICE_WAIT: Duration = Duration::from_secs(30);

/// How long a snapshot may wait for the guest agent to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The storage backend; one per hostd.
pub struct StorageBackend {
    layout: Layout,
    zfs: Zfs,
    qemu_img: QemuImg,
    /// The directories of this node's dir storages by storage name, from
    /// the last [`Backend::desired`]: observing has no config, and a
    /// qcow2 file carries no mark of the storage it belongs to.
    dirs: Mutex<BTreeMap<String, PathBuf>>,
    /// Where import progress is shown (none for `horcrux plan`).
    status: Option<StatusHandle>,
}

impl std::fmt::Debug for StorageBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageBackend")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn error(e: &ZfsError) -> BackendError {
    BackendError::of(e, e.retryable())
}

fn qemu_img_error(e: &qemu_img::QemuImgError) -> BackendError {
    BackendError::of(e, e.retryable())
}

impl StorageBackend {
    pub fn new(layout: Layout, status: Option<StatusHandle>) -> Self {
        StorageBackend {
            layout,
            zfs: Zfs::new(),
            qemu_img: QemuImg::new(),
            dirs: Mutex::new(BTreeMap::new()),
            status,
        }
    }

    pub fn shared(layout: Layout, status: Option<StatusHandle>) -> Arc<dyn Backend> {
        Arc::new(StorageBackend::new(layout, status))
    }

    fn dirs(&self) -> BTreeMap<String, PathBuf> {
        self.dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn show_progress(&self, id: &str, percent: Option<f64>) {
        if let Some(status) = &self.status {
            status.update(|s| match percent {
                Some(p) => {
                    s.imports.insert(id.to_string(), p);
                }
                None => {
                    s.imports.remove(id);
                }
            });
        }
    }

    async fn observe_all(&self) -> Result<Vec<Observed>, BackendError> {
        let mut out = Vec::new();
        if Zfs::module_loaded() {
            for pool in self.zfs.pools().await.map_err(|e| error(&e))? {
                out.push(
                    Observed::new(ResourceId::new(ResourceKind::Pool, &pool.name))
                        .field("imported", "yes")
                        .field("health", &pool.health)
                        .field("size", pool.size.to_string())
                        .field("free", pool.free.to_string()),
                );
            }
            for zvol in self.zfs.zvols().await.map_err(|e| error(&e))? {
                if let Some(observed) = observe_zvol(&zvol) {
                    out.push(observed);
                }
            }
        }
        for (storage, dir) in self.dirs() {
            out.extend(self.observe_dir(&storage, &dir).await?);
        }
        Ok(out)
    }

    /// The qcow2 volumes in one dir storage (a missing directory has
    /// none: it is made with the first volume).
    async fn observe_dir(&self, storage: &str, dir: &Path) -> Result<Vec<Observed>, BackendError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(BackendError::new(format!(
                    "cannot list {}: {e}",
                    dir.display()
                )));
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".qcow2")) else {
                continue;
            };
            if crate::backend::vm::orphans::vm_of_volume(stem).is_none() {
                continue;
            }
            let id = ResourceId::new(ResourceKind::Volume, format!("{storage}/{stem}"));
            let observed = Observed::new(id).field("location", entry.path().to_string_lossy());
            // One unreadable file must not hide every other volume: it
            // shows as such (and its VM's grow fails with the reason).
            let observed = match qemu_img::qcow2_sizes(&entry.path()).await {
                Ok((size, used)) => observed
                    .field("size", size_field(size))
                    .field("used", used.to_string()),
                Err(e) => {
                    observed.field("size", format!("unreadable: {}", crate::errors::chain(&e)))
                }
            };
            out.push(observed);
        }
        Ok(out)
    }

    /// Runs `work` with the VM's filesystems frozen when its guest agent
    /// answers; crash-consistent otherwise (a running VM without an agent,
    /// or a stopped one).
    async fn frozen<T>(&self, vm: &str, work: impl Future<Output = T>) -> T {
        let (result, consistency) =
            qga::frozen(&self.layout.qga_socket(vm), AGENT_TIMEOUT, work).await;
        tracing::info!(vm, ?consistency, "snapshot taken");
        result
    }

    async fn import_pool(&self, pool: &str) -> Result<(), BackendError> {
        if !Zfs::module_loaded() {
            self.zfs.load_module().await.map_err(|e| error(&e))?;
        }
        self.zfs.import(pool).await.map_err(|e| error(&e))
    }

    async fn create(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        match &spec.place {
            Place::Zfs { dataset, .. } => {
                self.create_zvol(spec, dataset).await?;
                Zfs::wait_for_device(dataset, DEVICE_WAIT)
                    .await
                    .map_err(|e| error(&e))?;
                self.sync_named_snapshots(spec, dataset).await
            }
            Place::Dir { file } => self.create_file(spec, file).await,
        }
    }

    async fn create_zvol(&self, spec: &VolumeSpec, dataset: &str) -> Result<(), BackendError> {
        match &spec.source {
            None => match self.zfs.create(dataset, spec.size, &spec.id).await {
                Err(ZfsError::AlreadyExists { .. }) => self.adopt(spec, dataset).await,
                other => other.map_err(|e| error(&e)),
            },
            Some(Source::Clone { snapshot, .. }) => {
                self.zfs
                    .clone_snapshot(snapshot, dataset, &spec.id)
                    .await
                    .map_err(|e| error(&e))?;
                // A clone is as large as its origin was; grow it to the
                // declared size (a smaller one is reported by the update).
                let current = self.zvol(dataset).await?.volsize;
                if spec.size > current {
                    self.zfs
                        .grow(dataset, current, spec.size)
                        .await
                        .map_err(|e| error(&e))?;
                }
                Ok(())
            }
            Some(Source::Image { file }) => self.import_into_zvol(spec, dataset, file).await,
        }
    }

    /// A zvol with the volume's name that hostd did not mark (made by
    /// hand, or by a hostd before it set the property): it is the disk
    /// the VM would use anyway, so it is taken over, never replaced.
    async fn adopt(&self, spec: &VolumeSpec, dataset: &str) -> Result<(), BackendError> {
        let existing = self.zvol(dataset).await?;
        tracing::warn!(dataset, volume = %spec.id, "adopting an existing zvol");
        if existing
            .volume_id
            .as_deref()
            .is_some_and(|id| id != spec.id)
        {
            return Err(BackendError::permanent(format!(
                "{dataset} already exists and belongs to volume {}",
                existing.volume_id.unwrap_or_default()
            )));
        }
        self.zfs
            .set_property(dataset, zfs::VOLUME_PROPERTY, &spec.id)
            .await
            .map_err(|e| error(&e))
    }

    async fn zvol(&self, dataset: &str) -> Result<Zvol, BackendError> {
        self.zfs
            .zvol(dataset)
            .await
            .map_err(|e| error(&e))?
            .ok_or_else(|| BackendError::new(format!("{dataset} is not a zvol")))
    }

    /// Checks an image fits the declared size before anything is written.
    async fn image_size(&self, spec: &VolumeSpec, file: &Path) -> Result<u64, BackendError> {
        if !file.exists() {
            return Err(BackendError::permanent(format!(
                "image {} of volume {} does not exist",
                file.display(),
                spec.id
            )));
        }
        let info = self
            .qemu_img
            .info(file)
            .await
            .map_err(|e| qemu_img_error(&e))?;
        if info.virtual_size > spec.size {
            return Err(BackendError::permanent(format!(
                "image {} is {} but disk {} of VM {} is only {}",
                file.display(),
                size_field(info.virtual_size),
                spec.disk,
                spec.vm,
                size_field(spec.size)
            )));
        }
        Ok(info.virtual_size)
    }

    async fn convert(
        &self,
        spec: &VolumeSpec,
        file: &Path,
        target: &Path,
        format: &str,
        existing: bool,
    ) -> Result<(), BackendError> {
        self.show_progress(&spec.id, Some(0.0));
        let result = self
            .qemu_img
            .convert(file, target, format, existing, |p| {
                self.show_progress(&spec.id, Some(p));
            })
            .await;
        self.show_progress(&spec.id, None);
        result.map_err(|e| qemu_img_error(&e))
    }

    async fn import_into_zvol(
        &self,
        spec: &VolumeSpec,
        dataset: &str,
        file: &Path,
    ) -> Result<(), BackendError> {
        self.image_size(spec, file).await?;
        let partial = format!("{dataset}{IMPORTING}");
        if self.zvol(&partial).await.is_ok() {
            tracing::warn!(dataset = %partial, "starting an interrupted import over");
            self.zfs
                .destroy_volume(&partial)
                .await
                .map_err(|e| error(&e))?;
        }
        self.zfs
            .create(&partial, spec.size, &spec.id)
            .await
            .map_err(|e| error(&e))?;
        let device = Zfs::wait_for_device(&partial, DEVICE_WAIT)
            .await
            .map_err(|e| error(&e))?;
        self.convert(spec, file, &device, "raw", true).await?;
        self.zfs
            .rename(&partial, dataset)
            .await
            .map_err(|e| error(&e))
    }

    async fn create_file(&self, spec: &VolumeSpec, file: &Path) -> Result<(), BackendError> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::new(format!("cannot create {}: {e}", dir.display())))?;
        }
        if file.exists() {
            // Not seen by observe (its storage was not known yet): the
            // next cycle reads it; never overwrite a disk.
            return Ok(());
        }
        match &spec.source {
            Some(Source::Image { file: image }) => {
                let image_size = self.image_size(spec, image).await?;
                let partial = PathBuf::from(format!("{}{IMPORTING}", file.display()));
                self.convert(spec, image, &partial, "qcow2", false).await?;
                if spec.size > image_size {
                    self.qemu_img
                        .grow(&partial, image_size, spec.size)
                        .await
                        .map_err(|e| qemu_img_error(&e))?;
                }
                std::fs::rename(&partial, file).map_err(|e| {
                    BackendError::new(format!("cannot rename {}: {e}", partial.display()))
                })
            }
            Some(Source::Clone { .. }) => Err(BackendError::permanent(format!(
                "volume {} is a linked clone on dir storage; clones need ZFS",
                spec.id
            ))),
            None => self
                .qemu_img
                .create_qcow2(file, spec.size)
                .await
                .map_err(|e| qemu_img_error(&e)),
        }
    }

    async fn update(&self, spec: &VolumeSpec, action: &Action) -> Result<(), BackendError> {
        if action.changes.iter().any(|c| c.field == "size") {
            self.grow(spec).await?;
        }
        if let Place::Zfs { dataset, .. } = &spec.place
            && action.changes.iter().any(|c| c.field == "snapshots")
        {
            self.sync_named_snapshots(spec, dataset).await?;
        }
        Ok(())
    }

    /// Grows a volume to its declared size and tells a running QEMU.
    /// Shrinking is refused against the real size, whatever the config
    /// history says.
    async fn grow(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        let current = match &spec.place {
            Place::Zfs { dataset, .. } => self.zvol(dataset).await?.volsize,
            Place::Dir { file } => {
                self.qemu_img
                    .info(file)
                    .await
                    .map_err(|e| qemu_img_error(&e))?
                    .virtual_size
            }
        };
        if spec.size < current {
            return Err(BackendError::permanent(format!(
                "disk {} of VM {} is {}; the config asks for {}. Disks are never shrunk \
                 (the data past the new end would be lost): set size = \"{}\" or larger",
                spec.disk,
                spec.vm,
                size_field(current),
                size_field(spec.size),
                size_field(current)
            )));
        }
        if spec.size == current {
            return Ok(());
        }
        let qmp = Qmp::connect_timeout(&self.layout.qmp_socket(&spec.vm), Duration::from_secs(5))
            .await
            .ok();
        match (&spec.place, qmp) {
            (Place::Zfs { dataset, .. }, qmp) => {
                self.zfs
                    .grow(dataset, current, spec.size)
                    .await
                    .map_err(|e| error(&e))?;
                if let Some(mut qmp) = qmp {
                    block_resize(&mut qmp, spec).await?;
                }
                Ok(())
            }
            // QEMU has the file open: it resizes the image itself.
            (Place::Dir { .. }, Some(mut qmp)) => block_resize(&mut qmp, spec).await,
            (Place::Dir { file }, None) => self
                .qemu_img
                .grow(file, current, spec.size)
                .await
                .map_err(|e| qemu_img_error(&e)),
        }
    }

    /// Takes the declared named snapshots that are missing and destroys
    /// the named ones hostd made that are no longer declared. Snapshots
    /// hostd did not make are never touched.
    async fn sync_named_snapshots(
        &self,
        spec: &VolumeSpec,
        dataset: &str,
    ) -> Result<(), BackendError> {
        let zvol = self.zvol(dataset).await?;
        let named: Vec<&str> = zvol
            .snapshots
            .iter()
            .filter(|s| s.kind == SnapshotKind::Named)
            .map(|s| s.name.as_str())
            .collect();
        for name in &spec.named_snapshots {
            if named.contains(&name.as_str()) {
                continue;
            }
            let datasets = [dataset.to_string()];
            self.frozen(
                &spec.vm,
                self.zfs.snapshot(&datasets, name, SnapshotKind::Named),
            )
            .await
            .map_err(|e| error(&e))?;
        }
        for name in named {
            if spec.named_snapshots.iter().any(|n| n == name) {
                continue;
            }
            self.zfs
                .destroy_snapshot(dataset, name)
                .await
                .map_err(|e| error(&e))?;
        }
        Ok(())
    }
}

async fn block_resize(qmp: &mut Qmp, spec: &VolumeSpec) -> Result<(), BackendError> {
    let size = i64::try_from(spec.size)
        .map_err(|_| BackendError::permanent(format!("size of {} is too large", spec.id)))?;
    qmp.execute(qapi::qmp::block_resize {
        device: None,
        node_name: Some(format!("drive{}", spec.disk)),
        size,
    })
    .await
    .map(|_| ())
    .map_err(|e| {
        BackendError::new(format!(
            "grew {} but could not tell VM {}: {}",
            spec.id,
            spec.vm,
            crate::errors::chain(&e)
        ))
    })
}

/// A zvol hostd made, as a volume resource; `None` for others and for
/// an import in progress.
fn observe_zvol(zvol: &Zvol) -> Option<Observed> {
    let id = zvol.volume_id.as_deref()?;
    if zvol.dataset.ends_with(IMPORTING) {
        return None;
    }
    let mut named: Vec<String> = zvol
        .snapshots
        .iter()
        .filter(|s| s.kind == SnapshotKind::Named)
        .map(|s| s.name.clone())
        .collect();
    named.sort();
    let scheduled = zvol
        .snapshots
        .iter()
        .filter(|s| s.kind == SnapshotKind::Scheduled)
        .count();
    let pool = zvol.dataset.split('/').next().unwrap_or_default();
    let mut observed = Observed::new(ResourceId::new(ResourceKind::Volume, id))
        .field("size", size_field(zvol.volsize))
        .field("snapshots", VolumeSpec::snapshots_field(&named))
        .field("location", &zvol.dataset)
        .field("used", zvol.used.to_string())
        .field("scheduled_snapshots", scheduled.to_string())
        .field("snapshot_count", zvol.snapshots.len().to_string())
        .depends_on(ResourceId::new(ResourceKind::Pool, pool));
    if let Some(origin) = &zvol.origin {
        observed = observed.field("origin", origin);
    }
    Some(observed)
}

/// The volumes of every disk of the VMs on `node`, for `horcrux render`.
pub fn render_volumes(config: &Config, node: &str, layout: &Layout) -> Vec<serde_json::Value> {
    desired::volumes(config, node, layout)
        .into_iter()
        .map(|spec| {
            let mut volume = serde_json::json!({
                "vm": spec.vm,
                "disk": spec.disk,
                "volume": spec.id,
                "size_bytes": spec.size,
            });
            match &spec.place {
                Place::Zfs { dataset, .. } => volume["dataset"] = dataset.as_str().into(),
                Place::Dir { file } => volume["file"] = file.to_string_lossy().into(),
            }
            match &spec.source {
                Some(Source::Image { file }) => {
                    volume["source"] = format!("image:{}", file.display()).into()
                }
                Some(Source::Clone { snapshot, .. }) => {
                    volume["source"] = format!("clone:{snapshot}").into()
                }
                None => {}
            }
            if !spec.named_snapshots.is_empty() {
                volume["snapshots"] = spec.named_snapshots.clone().into();
            }
            volume
        })
        .collect()
}

/// The desired pools and volumes of this node.
fn desired_storage(config: &Config, layout: &Layout) -> Vec<Desired> {
    let mut out: Vec<Desired> = desired::pools(config)
        .into_iter()
        .map(|pool| {
            Desired::new(ResourceId::new(ResourceKind::Pool, pool)).field("imported", "yes")
        })
        .collect();
    let node = config.node_name().map_or("", |n| n.as_str());
    for spec in desired::volumes(config, node, layout) {
        let mut d = Desired::new(ResourceId::new(ResourceKind::Volume, &spec.id))
            .field("size", size_field(spec.size));
        if let Place::Zfs { pool, .. } = &spec.place {
            d = d
                .field(
                    "snapshots",
                    VolumeSpec::snapshots_field(&spec.named_snapshots),
                )
                .depends_on(ResourceId::new(ResourceKind::Pool, pool));
        }
        if let Some(Source::Clone { origin, .. }) = &spec.source {
            d = d.depends_on(ResourceId::new(ResourceKind::Volume, origin));
        }
        match serde_json::to_string(&spec) {
            Ok(json) => d = d.payload(SPEC, json),
            Err(e) => tracing::error!(volume = %spec.id, error = %e, "cannot encode a volume spec"),
        }
        out.push(d);
    }
    out
}

impl Backend for StorageBackend {
    fn kinds(&self) -> &'static [ResourceKind] {
        &[ResourceKind::Pool, ResourceKind::Volume]
    }

    fn desired(&self, config: &Config) -> Vec<Desired> {
        *self.dirs.lock().unwrap_or_else(PoisonError::into_inner) = desired::dir_storages(config);
        desired_storage(config, &self.layout)
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<Observed>, BackendError>> {
        Box::pin(self.observe_all())
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        desired: Option<&'a Desired>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let Some(desired) = desired else {
                // The planner never deletes what keeps data.
                return Err(BackendError::permanent(format!(
                    "{} is not deleted by hostd; use `horcrux purge`",
                    action.id
                )));
            };
            match action.id.kind {
                ResourceKind::Pool => self.import_pool(&action.id.name).await,
                ResourceKind::Volume => {
                    let spec: VolumeSpec = desired
                        .payload
                        .get(SPEC)
                        .and_then(|json| serde_json::from_str(json).ok())
                        .ok_or_else(|| {
                            BackendError::permanent(format!(
                                "volume {} has no spec",
                                action.id.name
                            ))
                        })?;
                    match action.op {
                        Op::Create => self.create(&spec).await,
                        Op::Update { .. } => self.update(&spec, action).await,
                        Op::Delete => Ok(()),
                    }
                }
                other => Err(BackendError::permanent(format!(
                    "the storage backend does not handle {other}"
                ))),
            }
        })
    }
}
