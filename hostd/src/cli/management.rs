//! `horcrux management-network`: writes the node's management `.network`
//! file for systemd-networkd at boot, before networkd starts and before
//! hostd runs. It reads node.toml alone, so a broken `cluster/` tree never
//! costs the node its address; a broken node.toml falls back to DHCP on
//! the first Ethernet NIC (the errors are printed, and hostd shows them).

use std::path::Path;

use horcrux_config::{TreeFile, check_files};

use super::{Outcome, exit, report};
use crate::backend::management::{FILE_NAME, UPLINKS_FILE, ethernet_nics, render_networkd};
use crate::fsutil;

pub fn run(config_dir: &Path, out_dir: &Path, sys_class_net: &Path) -> Outcome {
    let node_toml = config_dir.join("node.toml");
    let mut warnings = String::new();
    let (management, uplinks) = match std::fs::read(&node_toml) {
        Ok(content) => {
            let files = vec![TreeFile {
                path: "node.toml".to_string(),
                content: Ok(content),
            }];
            match check_files(files).into_valid() {
                Ok(config) => config.node.map_or((None, Vec::new()), |n| {
                    let uplinks = n.uplinks.values().map(|i| i.to_string()).collect();
                    (n.value.management, uplinks)
                }),
                Err(errors) => {
                    warnings = format!(
                        "{}: invalid, using DHCP on the first NIC:\n{}",
                        node_toml.display(),
                        report::render(&errors)
                    );
                    (None, Vec::new())
                }
            }
        }
        Err(e) => {
            warnings = format!(
                "cannot read {}: {e}; using DHCP on the first NIC\n",
                node_toml.display()
            );
            (None, Vec::new())
        }
    };
    let nics = ethernet_nics(sys_class_net);
    let Some(files) = render_networkd(management.as_ref(), &uplinks, &nics) else {
        let mut out = Outcome::error(
            exit::INVALID,
            "horcrux management-network: no interface named in [management] and no Ethernet NIC found",
        );
        out.stderr.insert_str(0, &warnings);
        return out;
    };
    let mut report = String::new();
    for name in [FILE_NAME, UPLINKS_FILE] {
        let path = out_dir.join(name);
        let result = match files.get(name) {
            Some(text) => fsutil::write_if_changed(&path, text.as_bytes())
                .map(|written| (if written { "wrote" } else { "unchanged" }, text.as_str())),
            None => fsutil::remove_if_present(&path).map(|_| ("absent", "")),
        };
        match result {
            Ok((verb, text)) => report.push_str(&format!("{verb} {}\n{text}", path.display())),
            Err(e) => {
                let mut out = Outcome::error(
                    exit::INVALID,
                    &format!(
                        "horcrux management-network: cannot write {}: {e}",
                        path.display()
                    ),
                );
                out.stderr.insert_str(0, &warnings);
                return out;
            }
        }
    }
    let mut out = Outcome::ok(report);
    out.stderr = warnings;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys_with_nic(name: &str) -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        let nic = sys.path().join(name);
        std::fs::create_dir_all(nic.join("device")).unwrap();
        std::fs::write(nic.join("type"), "1\n").unwrap();
        std::fs::write(nic.join("ifindex"), "2\n").unwrap();
        sys
    }

    #[test]
    fn a_static_address_is_written_from_node_toml() {
        let config = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let sys = sys_with_nic("ens3");
        std::fs::write(
            config.path().join("node.toml"),
            "name = \"n1\"\n[management]\naddress = \"192.0.2.11/24\"\n",
        )
        .unwrap();
        let result = run(config.path(), out.path(), sys.path());
        assert_eq!(result.code, exit::OK, "{result:?}");
        let text = std::fs::read_to_string(out.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("Name=ens3\n") && text.contains("Address=192.0.2.11/24\n"));
        let again = run(config.path(), out.path(), sys.path());
        assert!(again.stdout.starts_with("unchanged"), "{again:?}");
    }

    #[test]
    fn a_broken_node_toml_falls_back_to_dhcp_and_says_why() {
        let config = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let sys = sys_with_nic("ens3");
        std::fs::write(
            config.path().join("node.toml"),
            "name = \"n1\"\nbogus = 1\n",
        )
        .unwrap();
        let result = run(config.path(), out.path(), sys.path());
        assert_eq!(result.code, exit::OK, "{result:?}");
        assert!(result.stderr.contains("bogus"), "{}", result.stderr);
        let text = std::fs::read_to_string(out.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("DHCP=yes\n"));
    }

    #[test]
    fn no_nic_and_no_interface_is_an_error() {
        let config = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let result = run(config.path(), out.path(), sys.path());
        assert_eq!(result.code, exit::INVALID);
        assert!(!out.path().join(FILE_NAME).exists());
    }
}
