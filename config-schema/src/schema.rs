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
