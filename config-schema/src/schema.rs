//! JSON Schema for each file kind, for editors (taplo / Even Better TOML)
//! and for the generated config reference.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

use crate::model::{Cluster, Container, FileKind, FirewallGroup, Network, Node, Storage, Vm};

/// The JSON Schema (draft-07, which taplo understands) of one file kind.
pub fn schema_for(kind: FileKind) -> Schema {
    match kind {
        FileKind::Node => root::<Node>("node.toml"),
        FileKind::Cluster => root::<Cluster>("cluster/cluster.toml"),
        FileKind::Network => root::<Network>("cluster/networks/<name>.toml"),
        FileKind::Storage => root::<Storage>("cluster/storage/<name>.toml"),
        FileKind::Firewall => root::<FirewallGroup>("cluster/firewall/<name>.toml"),
        FileKind::Vm => root::<Vm>("cluster/vms/<name>.toml"),
        FileKind::Container => root::<Container>("cluster/containers/<name>.toml"),
    }
}

fn root<T: JsonSchema>(file: &str) -> Schema {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), format!("Horcrux {file}").into());
    schema
}

/// The file a kind is written in, for documentation.
pub fn file_pattern(kind: FileKind) -> String {
    match kind.directory() {
        Some(dir) => format!("cluster/{dir}/<name>.toml"),
        None if kind == FileKind::Node => "node.toml".into(),
        None => "cluster/cluster.toml".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{TreeFile, check_files};

    fn path_of(kind: FileKind) -> String {
        file_pattern(kind).replace("<name>", "x")
    }

    /// The decoder's list of keys, as it reports them for an unknown key.
    fn decoder_keys(kind: FileKind) -> BTreeSet<String> {
        let file = TreeFile {
            path: path_of(kind),
            content: Ok(br#""\u0001" = 1"#.to_vec()),
        };
        let checked = check_files(vec![file]);
        let hint = checked
            .errors
            .iter()
            .find(|d| d.message.starts_with("unknown key"))
            .and_then(|d| d.hint.clone())
            .unwrap_or_default();
        let list = hint.strip_prefix("known keys here: ").unwrap_or_default();
        list.split(", ")
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn schema_and_decoder_know_the_same_keys() {
        for kind in [FileKind::Node, FileKind::Cluster]
            .into_iter()
            .chain(FileKind::RESOURCE_KINDS)
        {
            let schema = schema_for(kind).to_value();
            let props: BTreeSet<String> = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            assert!(!props.is_empty(), "{kind}: no properties");
            assert_eq!(
                decoder_keys(kind),
                props,
                "{kind}: decoder and schema disagree"
            );
            assert_eq!(schema["additionalProperties"], false, "{kind}");
        }
    }
}
