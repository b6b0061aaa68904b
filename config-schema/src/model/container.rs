//! `cluster/containers/<name>.toml`: one container (modelled now, run later).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{ParseStr, Spanned, Table, ValueError};
use crate::decode_table;
use crate::types::{AbsPath, ByteSize, EnvName, ResourceName};

use super::State;
use super::firewall::Protocol;

/// A container. The file name is the container name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Node the container runs on; same rules as a VM's `node`.
    pub node: Option<Spanned<ResourceName>>,
    /// Whether the container should be running.
    #[serde(default = "default_state")]
    pub state: Spanned<State>,
    /// OCI image reference, e.g. "docker.io/library/nginx:1.27".
    pub image: Spanned<String>,
    /// Command and arguments; default: the image's entrypoint.
    #[serde(default)]
    pub command: Vec<Spanned<String>>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<Spanned<EnvName>, Spanned<String>>,
    /// Published ports: "HOST:CONTAINER" or "HOST:CONTAINER/udp".
    #[serde(default)]
    pub ports: Vec<Spanned<PortMapping>>,
    /// Persistent volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Network to attach to: a `networks/<name>.toml`. Absent: no network.
    pub network: Option<Spanned<ResourceName>>,
}

fn default_state() -> Spanned<State> {
    Spanned::builtin(State::Running)
}

fn read_container(t: &mut Table) -> Option<Container> {
    let node = t.optional("node");
    let state = t.or_default("state", default_state);
    let image = t.required::<String>("image");
    if let Some(image) = &image
        && (image.trim().is_empty() || image.chars().any(char::is_whitespace))
    {
        let msg = format!("invalid image reference \"{}\"", **image);
        t.cx().diags.error(image.span, msg);
    }
    let command = t.list("command");
    let env = t.list("env");
    let ports = t.list("ports");
    let volumes = t.list("volumes");
    let network = t.optional("network");
    Some(Container {
        node,
        state,
        image: image?,
        command,
        env,
        ports,
        volumes,
        network,
    })
}
decode_table!(Container, read_container);

/// A port published on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
    pub proto: Protocol,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.container, self.proto)
    }
}

impl ParseStr for PortMapping {
    const EXPECTED: &'static str = "a port mapping such as \"8080:80\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let invalid = || {
            ValueError::new(format!("invalid port mapping \"{s}\""))
                .hint("write \"HOST:CONTAINER\" or \"HOST:CONTAINER/udp\", e.g. \"8080:80\"")
        };
        let (ports, proto) = match s.split_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(invalid()),
            None => (s, Protocol::Tcp),
        };
        let (host, container) = ports.split_once(':').ok_or_else(invalid)?;
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(invalid)
        };
        Ok(PortMapping {
            host: port(host)?,
            container: port(container)?,
            proto,
        })
    }
}
crate::types::string_value!(
    PortMapping,
    "port mapping",
    "\"HOST:CONTAINER\" or \"HOST:CONTAINER/udp\", e.g. \"8080:80\"."
);

/// A persistent volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The storage holding the volume: a `storage/<name>.toml`.
    pub storage: Spanned<ResourceName>,
    pub size: Spanned<ByteSize>,
    /// Mount point inside the container.
    pub path: Spanned<AbsPath>,
}

fn read_volume(t: &mut Table) -> Option<Volume> {
    let storage = t.required("storage");
    let size = t.required("size");
    let path = t.required("path");
    Some(Volume {
        storage: storage?,
        size: size?,
        path: path?,
    })
}
decode_table!(Volume, read_volume);
