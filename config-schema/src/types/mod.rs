//! Validated value types: once loaded, an invalid value cannot exist.

mod keys;
mod keyword;
mod name;
mod net;
mod path;
mod size;
mod time;

pub use keys::{MinisignKey, SshPublicKey};
pub use name::{
    EnvName, InterfaceName, ResourceName, SCHEDULED_SNAPSHOT_PREFIX, SnapshotName, ZfsDataset,
};
pub use net::{IfaceAddr, IpNet, MacAddr, PortList, PortRange};
pub use path::{AbsPath, ConfigPath};
pub use size::ByteSize;
pub use time::Duration;

/// Declares a validated string newtype: the struct, `as_str` and
/// `Display`. Validation lives in its `ParseStr` impl, the only way to
/// build one.
macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use string_newtype;

/// Makes a [`ParseStr`](crate::decode::ParseStr) + `Display` type a complete
/// config value: decoded from a TOML string, serialized as its text, and
/// described in the JSON Schema as a string.
macro_rules! string_value {
    ($ty:ty, $label:literal, $description:literal $(, pattern = $pattern:literal)?) => {
        $crate::decode_from_str!($ty);

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                #[allow(unused_mut)]
                let mut schema = schemars::json_schema!({ "type": "string", "title": $label, "description": $description });
                $( schema.insert("pattern".into(), $pattern.into()); )?
                schema
            }
        }
    };
}
pub(crate) use string_value;
