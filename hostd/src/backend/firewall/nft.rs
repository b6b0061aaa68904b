//! Running `nft`: loading a ruleset file in one transaction and reading
//! hostd's two tables back as JSON. Only `bridge horcrux` and `inet
//! horcrux` are ever named; other tables are neither listed nor touched.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::backend::command::{CommandError, Tool};
use crate::backend::hex;

/// The tables hostd owns, by family.
pub const FAMILIES: [&str; 2] = ["bridge", "inet"];

/// The name of both tables.
pub const TABLE: &str = "horcrux";

/// Why talking to nft failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("`{command}` printed a listing hostd cannot read: {reason}")]
    Listing { command: String, reason: String },
}

impl NftError {
    /// Whether trying again soon may help: a ruleset nft refused is
    /// refused again until the config (or the kernel) changes.
    pub fn retryable(&self) -> bool {
        match self {
            NftError::Command(e) => e.retryable(),
            NftError::Listing { .. } => false,
        }
    }
}

/// The `nft` binary, with a time limit per call.
#[derive(Clone, Debug)]
pub struct Nft {
    tool: Tool,
}

/// What a listing of hostd's tables says, for drift detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Number of `rule` objects.
    pub rules: usize,
    /// SHA-256 (hex) of the listing without handles and nft's version, so
    /// only a change of the rules themselves changes it.
    pub hash: String,
}

impl Nft {
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        Nft {
            tool: Tool::new(path, timeout),
        }
    }

    /// `nft -f -` with `text` on stdin: one atomic transaction.
    pub async fn apply(&self, text: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(text.as_bytes())).await?;
        Ok(())
    }

    /// Both tables' listings (`None` for a table that does not exist),
    /// in [`FAMILIES`] order.
    pub async fn list_tables(&self) -> Result<[Option<String>; 2], NftError> {
        let [bridge, inet] = FAMILIES;
        Ok([self.list_table(bridge).await?, self.list_table(inet).await?])
    }

    /// `nft -j -s list table <family> horcrux` (stateless: no counters),
    /// or `None` when the table does not exist.
    async fn list_table(&self, family: &str) -> Result<Option<String>, NftError> {
        let args = ["-j", "-s", "list", "table", family, TABLE];
        match self.run(&args, None).await {
            Ok(stdout) => String::from_utf8(stdout)
                .map(Some)
                .map_err(|_| NftError::Listing {
                    command: self.tool.command(&args),
                    reason: "not UTF-8".to_string(),
                }),
            // ENOENT is how the kernel says "no such table" (the locale is
            // pinned to C, so the text is stable).
            Err(NftError::Command(CommandError::Failed { stderr, .. }))
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs nft and returns its stdout; see [`Tool::run`].
    async fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, NftError> {
        Ok(self.tool.run(args, input).await?)
    }
}

/// Reads both tables' listings (see [`Nft::list_tables`]) into one
/// [`Listing`]; `None` when neither table exists.
pub fn parse_listings(listings: &[Option<String>]) -> Result<Option<Listing>, String> {
    if listings.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    let mut rules = 0;
    for listing in listings {
        match listing {
            Some(json) => {
                let (count, canonical) = canonical(json)?;
                rules += count;
                hasher.update(canonical.as_bytes());
            }
            None => hasher.update(b"absent"),
        }
        // Separates the tables, so moving text from one to the other is
        // a different hash.
        hasher.update([0u8]);
    }
    Ok(Some(Listing {
        rules,
        hash: hex(&hasher.finalize()),
    }))
}

/// One `nft -j` listing: its rule count and its objects without handles
/// and `metainfo` (nft's version), as compact JSON.
fn canonical(json: &str) -> Result<(usize, String), String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut top) = value else {
        return Err("not a JSON object".to_string());
    };
    let Some(Value::Array(objects)) = top.remove("nftables") else {
        return Err("no `nftables` array".to_string());
    };
    let mut rules = 0;
    let mut kept = Vec::with_capacity(objects.len());
    for object in objects {
        let Value::Object(mut object) = object else {
            return Err("an element of `nftables` is not an object".to_string());
        };
        if object.contains_key("metainfo") {
            continue;
        }
        if object.contains_key("rule") {
            rules += 1;
        }
        // Handles are renumbered by every replace; they say nothing about
        // what the rules do.
        for inner in object.values_mut() {
            if let Value::Object(inner) = inner {
                inner.remove("handle");
            }
        }
        kept.push(Value::Object(object));
    }
    let canonical = serde_json::to_string(&kept).map_err(|e| e.to_string())?;
    Ok((rules, canonical))
}
