//! `horcrux schema [KIND]`: JSON Schema of the config files, for editors.

use horcrux_config::model::FileKind;
use horcrux_config::schema::schema_for;
use serde_json::{Map, Value};

/// The schema of one kind, or of every kind keyed by kind name.
pub fn run(kind: Option<FileKind>) -> String {
    let value = match kind {
        Some(kind) => schema_for(kind).to_value(),
        None => {
            let all: Map<String, Value> = all_kinds()
                .map(|k| (k.as_str().to_string(), schema_for(k).to_value()))
                .collect();
            Value::Object(all)
        }
    };
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

fn all_kinds() -> impl Iterator<Item = FileKind> {
    [FileKind::Node, FileKind::Cluster]
        .into_iter()
        .chain(FileKind::RESOURCE_KINDS)
}
