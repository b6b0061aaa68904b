//! Names and aliases of the links hostd creates for networks.
//!
//! | link | name |
//! |---|---|
//! | bridge | `hxb-<network>`, or `hxb` + 8 hex of sha256(network) when the name is longer than 11 bytes |
//! | 802.1Q port | `hxv-<network>` / `hxv` + 8 hex |
//! | VXLAN port | `hxx-<network>` / `hxx` + 8 hex |
//! | tap of a VM NIC | [`crate::backend::naming::tap_name`]: `hx` + 8 hex + `n` + index |
//!
//! Every bridge and port also carries the alias `horcrux network <name>`.
//! A link is hostd's only when both its name and its alias say so, so a
//! bridge an operator happens to call `hxb-lan` is never touched. Names
//! stay within [`MAX_IFNAME`] bytes and depend on nothing but the network
//! name, so every node and every hostd run picks the same ones.

use sha2::{Digest, Sha256};

use crate::backend::hex;
use crate::backend::naming::MAX_IFNAME;

/// What the alias of every link of a network starts with.
const ALIAS_PREFIX: &str = "horcrux network ";

/// The longest network name used verbatim: 4 bytes of prefix + 11 = 15.
const MAX_VERBATIM: usize = MAX_IFNAME - 4;

/// The kinds of link hostd creates for a network, by name prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Bridge,
    Vlan,
    Vxlan,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Bridge => "hxb",
            Role::Vlan => "hxv",
            Role::Vxlan => "hxx",
        }
    }

    const ALL: [Role; 3] = [Role::Bridge, Role::Vlan, Role::Vxlan];
}

/// The name of `network`'s link of `role`.
pub fn link_name(role: Role, network: &str) -> String {
    if network.len() <= MAX_VERBATIM {
        format!("{}-{network}", role.prefix())
    } else {
        let digest = Sha256::digest(network.as_bytes());
        format!("{}{}", role.prefix(), hex(&digest[..4]))
    }
}

pub fn bridge_name(network: &str) -> String {
    link_name(Role::Bridge, network)
}

/// The alias every link of `network` carries.
pub fn alias(network: &str) -> String {
    format!("{ALIAS_PREFIX}{network}")
}

/// The network and role of a link hostd created: its alias names a
/// network and its name is the one hostd gives that network's link of
/// some role. `None` for every other link.
pub fn owner(name: &str, alias: Option<&str>) -> Option<(String, Role)> {
    let network = alias?.strip_prefix(ALIAS_PREFIX)?;
    let role = Role::ALL
        .into_iter()
        .find(|role| link_name(*role, network) == name)?;
    Some((network.to_string(), role))
}

/// Whether `name` has the shape of a VM tap (`hx` + 8 lower-case hex +
/// `n` + a decimal index), the names only hostd gives taps.
pub fn is_tap_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("hx") else {
        return false;
    };
    let Some((hash, index)) = rest.split_at_checked(8) else {
        return false;
    };
    let Some(index) = index.strip_prefix('n') else {
        return false;
    };
    hash.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::naming::tap_name;

    #[test]
    fn short_names_are_verbatim_and_long_ones_hashed() {
        assert_eq!(bridge_name("lan"), "hxb-lan");
        assert_eq!(link_name(Role::Vlan, "lan"), "hxv-lan");
        assert_eq!(link_name(Role::Vxlan, "lan"), "hxx-lan");
        let eleven = "abcdefghijk";
        assert_eq!(bridge_name(eleven), "hxb-abcdefghijk");
        assert_eq!(bridge_name(eleven).len(), MAX_IFNAME);
        let twelve = "abcdefghijkl";
        let hashed = bridge_name(twelve);
        assert_eq!(hashed.len(), 11);
        assert!(
            hashed.starts_with("hxb") && !hashed.contains('-'),
            "{hashed}"
        );
        let digest = Sha256::digest(twelve.as_bytes());
        assert_eq!(hashed, format!("hxb{}", hex(&digest[..4])));
    }

    #[test]
    fn names_fit_ifnamsiz_are_deterministic_and_distinct() {
        let longest = format!("a{}", "b".repeat(62));
        for role in Role::ALL {
            for network in ["a", "lan", "abcdefghijk", "abcdefghijkl", longest.as_str()] {
                let name = link_name(role, network);
                assert!(name.len() <= MAX_IFNAME, "{name}");
                assert_eq!(name, link_name(role, network));
            }
        }
        let long_a = format!("{}a", "x".repeat(62));
        let long_b = format!("{}b", "x".repeat(62));
        assert_ne!(bridge_name(&long_a), bridge_name(&long_b));
        assert_ne!(bridge_name("lan"), link_name(Role::Vlan, "lan"));
    }

    #[test]
    fn ownership_needs_both_name_and_alias() {
        let long = "a-rather-long-network";
        assert_eq!(
            owner("hxb-lan", Some("horcrux network lan")),
            Some(("lan".to_string(), Role::Bridge))
        );
        assert_eq!(
            owner(&link_name(Role::Vxlan, long), Some(&alias(long))),
            Some((long.to_string(), Role::Vxlan))
        );
        assert_eq!(owner("hxb-lan", None), None);
        assert_eq!(owner("hxb-lan", Some("my bridge")), None);
        assert_eq!(owner("hxb-lan", Some("horcrux network wan")), None);
        assert_eq!(owner("br0", Some("horcrux network lan")), None);
    }

    #[test]
    fn tap_pattern_matches_tap_names_and_nothing_hostd_names_otherwise() {
        for (vm, index) in [("web", 0), ("db", 7), ("x", 123)] {
            let tap = tap_name(vm, index).unwrap();
            assert!(is_tap_name(&tap), "{tap}");
        }
        for name in [
            "hxb-lan",
            "hxbabcdef01",
            &bridge_name("abcdefghijkl"),
            &link_name(Role::Vxlan, "abcdefghijkl"),
            "hx0123abcdn",
            "hx0123ABCDn0",
            "hx0123abcdn0x",
            "hx0123abcn0",
            "tap0",
            "eth0",
        ] {
            assert!(!is_tap_name(name), "{name}");
        }
    }
}
