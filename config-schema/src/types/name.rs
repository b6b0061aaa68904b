//! Names: resources, network interfaces, ZFS datasets, environment variables.

use crate::decode::{ParseStr, ValueError};

super::string_newtype!(
    /// A resource, node or cluster name: `^[a-z][a-z0-9-]{0,62}$`.
    ResourceName
);

impl ParseStr for ResourceName {
    const EXPECTED: &'static str = "a name";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let valid = |s: &str| {
            s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if valid(s) {
            return Ok(ResourceName(s.to_string()));
        }
        let err = ValueError::new(format!("invalid name \"{s}\""));
        let fixed = s.to_ascii_lowercase().replace(['_', '.', ' '], "-");
        Err(if valid(&fixed) {
            err.hint(format!(
                "names are lowercase with '-': did you mean `{fixed}`?"
            ))
        } else {
            err.hint("names are 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-'")
        })
    }
}
super::string_value!(
    ResourceName,
    "name",
    "A name: a lowercase letter, then up to 62 lowercase letters, digits or '-'.",
    pattern = "^[a-z][a-z0-9-]{0,62}$"
);

super::string_newtype!(
    /// A Linux network interface name (at most 15 bytes, no '/', ':' or spaces).
    InterfaceName
);

impl ParseStr for InterfaceName {
    const EXPECTED: &'static str = "an interface name";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || s.len() > 15 {
            return Err(ValueError::new(format!(
                "invalid interface name \"{s}\": must be 1 to 15 bytes"
            )));
        }
        if s == "."
            || s == ".."
            || s.chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(ValueError::new(format!("invalid interface name \"{s}\""))
                .hint("interface names cannot contain '/', ':' or spaces"));
        }
        Ok(InterfaceName(s.to_string()))
    }
}
super::string_value!(
    InterfaceName,
    "interface name",
    "A network interface name on this node, e.g. \"eth0\" (at most 15 bytes).",
    pattern = "^[^/:\\s]{1,15}$"
);

super::string_newtype!(
    /// A ZFS pool or dataset path such as `tank` or `tank/vms`.
    ZfsDataset
);

impl ZfsDataset {
    /// The pool this dataset lives in (its first component).
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl ParseStr for ZfsDataset {
    const EXPECTED: &'static str = "a ZFS dataset name";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch))
        };
        let first_ok = s.starts_with(|c: char| c.is_ascii_alphabetic());
        if s.len() <= 255 && first_ok && s.split('/').all(component_ok) {
            Ok(ZfsDataset(s.to_string()))
        } else {
            Err(ValueError::new(format!("invalid ZFS dataset \"{s}\""))
                .hint("write it as pool[/dataset...], e.g. \"tank/vms\", without a leading '/'"))
        }
    }
}
super::string_value!(
    ZfsDataset,
    "ZFS dataset",
    "A ZFS pool or dataset, e.g. \"tank\" or \"tank/vms\"."
);

super::string_newtype!(
    /// A snapshot name: `^[a-z0-9][a-z0-9._-]{0,62}$`, not starting with
    /// `auto-` (the prefix of scheduled snapshots).
    SnapshotName
);

/// The prefix of the snapshots hostd takes on a schedule; declared names
/// cannot use it, so retention never mistakes one for the other.
pub const SCHEDULED_SNAPSHOT_PREFIX: &str = "auto-";

impl ParseStr for SnapshotName {
    const EXPECTED: &'static str = "a snapshot name";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let valid = s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !valid {
            return Err(ValueError::new(format!("invalid snapshot name \"{s}\""))
                .hint("1 to 63 characters: a lowercase letter or digit, then lowercase letters, digits, '.', '_' or '-'"));
        }
        if s.starts_with(SCHEDULED_SNAPSHOT_PREFIX) {
            return Err(ValueError::new(format!(
                "snapshot name \"{s}\" starts with \"{SCHEDULED_SNAPSHOT_PREFIX}\""
            ))
            .hint("that prefix belongs to scheduled snapshots ([snapshots] every/keep); pick another name"));
        }
        Ok(SnapshotName(s.to_string()))
    }
}
super::string_value!(
    SnapshotName,
    "snapshot name",
    "A snapshot name such as \"base\" or \"pre-upgrade.1\"; \"auto-\" is reserved for scheduled snapshots.",
    pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"
);

super::string_newtype!(
    /// An environment variable name: `^[A-Za-z_][A-Za-z0-9_]*$`.
    EnvName
);

impl ParseStr for EnvName {
    const EXPECTED: &'static str = "an environment variable name";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(EnvName(s.to_string()))
        } else {
            Err(ValueError::new(format!(
                "invalid environment variable name \"{s}\""
            )))
        }
    }
}
super::string_value!(
    EnvName,
    "variable name",
    "An environment variable name.",
    pattern = "^[A-Za-z_][A-Za-z0-9_]*$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        for ok in ["a", "web-1", "x2", &"a".repeat(63)] {
            assert!(ResourceName::parse_str(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1web", "-a", "Web", "a_b", "a.b", &"a".repeat(64)] {
            assert!(ResourceName::parse_str(bad).is_err(), "{bad}");
        }
        let err = ResourceName::parse_str("Web_1").unwrap_err();
        assert_eq!(
            err.hint.as_deref(),
            Some("names are lowercase with '-': did you mean `web-1`?")
        );
    }

    #[test]
    fn interface_names() {
        assert!(InterfaceName::parse_str("enp0s31f6").is_ok());
        assert!(InterfaceName::parse_str("a-very-long-name0").is_err());
        assert!(InterfaceName::parse_str("eth/0").is_err());
        assert!(InterfaceName::parse_str("").is_err());
    }

    #[test]
    fn snapshot_names() {
        for good in ["base", "pre-upgrade.1", "2026_11", "a"] {
            assert!(SnapshotName::parse_str(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Base",
            "-x",
            ".x",
            "a b",
            "a@b",
            "a/b",
            "auto-1",
            &"x".repeat(64),
        ] {
            assert!(SnapshotName::parse_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zfs_datasets() {
        let d = ZfsDataset::parse_str("tank/vms").unwrap();
        assert_eq!(d.pool(), "tank");
        for bad in ["/tank", "tank/", "tank//vms", "1tank", "ta nk"] {
            assert!(ZfsDataset::parse_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        assert!(EnvName::parse_str("_PATH2").is_ok());
        assert!(EnvName::parse_str("2X").is_err());
        assert!(EnvName::parse_str("A-B").is_err());
    }
}
