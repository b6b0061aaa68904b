//! The appliance image under test and the rig's SSH key baked into it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{repo_root, run};

/// The rig's SSH key pair (`<cache>/ssh/id_ed25519`), generated once and
/// kept with the image cache, so the image that bakes in its public half
/// stays cached between runs. `make demo` uses the same key.
pub fn ssh_key() -> Result<PathBuf> {
    let dir = cache_dir().join("ssh");
    let key = dir.join("id_ed25519");
    if !key.exists() {
        std::fs::create_dir_all(&dir)?;
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "horcrux-e2e", "-f"])
            .arg(&key))?;
    }
    Ok(key)
}

/// `HORCRUX_IMAGE_CACHE`, else `target/image-cache` (as image/build.sh).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HORCRUX_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/image-cache"))
}

/// The image to boot: `HORCRUX_E2E_IMAGE` if set, else the one
/// image/build.sh builds or finds in its cache (its progress goes to
/// stderr). The release binaries must be built (`make e2e` does that).
/// Its update bundle, manifest and PXE artifacts are beside it.
pub fn ensure() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HORCRUX_E2E_IMAGE") {
        return Ok(PathBuf::from(path));
    }
    build(&[])
}

/// An update bundle of the image, built as a different version: `label`
/// names it (and its cache entry); `bin_dir` replaces the horcrux
/// binaries (e.g. a hostd that never gets READY). Signed with the same key
/// as the image, which therefore trusts it.
pub fn ensure_bundle(label: &str, bin_dir: Option<&Path>) -> Result<PathBuf> {
    let mut env = vec![
        ("HORCRUX_IMAGE_LABEL", label.as_ref()),
        ("HORCRUX_BUNDLE_ONLY", "1".as_ref()),
    ];
    if let Some(dir) = bin_dir {
        env.push(("HORCRUX_BIN_DIR", dir.as_os_str()));
    }
    build(&env)
}

/// Runs image/build.sh with the rig's key and cache plus `env`; returns
/// the path it prints last.
fn build(env: &[(&str, &std::ffi::OsStr)]) -> Result<PathBuf> {
    let key = ssh_key()?;
    let started = Instant::now();
    let out = Command::new(repo_root().join("image/build.sh"))
        .env("HORCRUX_AUTHORIZED_KEYS", pub_key(&key))
        .env("HORCRUX_IMAGE_CACHE", cache_dir())
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run image/build.sh")?;
    if !out.status.success() {
        bail!("image/build.sh failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .context("image/build.sh printed no path")?;
    eprintln!(
        "e2e: {} ready after {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// The public half of a key pair.
pub fn pub_key(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}
