//! Network values: CIDRs, interface addresses, MAC addresses, port lists.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::decode::{ParseStr, ValueError};

impl ParseStr for IpAddr {
    const EXPECTED: &'static str = "an IP address";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        s.parse()
            .map_err(|_| ValueError::new(format!("invalid IP address \"{s}\"")))
    }
}
crate::decode_from_str!(IpAddr);

impl ParseStr for SocketAddr {
    const EXPECTED: &'static str = "an address and port";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        s.parse().map_err(|_| {
            ValueError::new(format!("invalid listen address \"{s}\""))
                .hint("write ADDRESS:PORT, e.g. \"0.0.0.0:8006\" or \"[::]:8006\"")
        })
    }
}
crate::decode_from_str!(SocketAddr);

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn split_prefix(s: &str, what: &str) -> Result<(IpAddr, Option<u8>), ValueError> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        ValueError::new(format!(
            "invalid {what} \"{s}\": \"{addr}\" is not an IP address"
        ))
    })?;
    let prefix = match prefix {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max_prefix(ip) => Some(n),
            _ => {
                return Err(ValueError::new(format!(
                    "invalid {what} \"{s}\": prefix length must be 0 to {}",
                    max_prefix(ip)
                )));
            }
        },
    };
    Ok((ip, prefix))
}

fn mask_bits(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// A network in CIDR notation with no host bits set, e.g. "10.0.0.0/8".
/// A bare address means a single host (/32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl ParseStr for IpNet {
    const EXPECTED: &'static str = "a CIDR such as \"10.0.0.0/8\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let (addr, prefix) = split_prefix(s, "CIDR")?;
        let prefix = prefix.unwrap_or_else(|| max_prefix(addr));
        let network = mask_bits(addr, prefix);
        if network != addr {
            return Err(
                ValueError::new(format!("invalid CIDR \"{s}\": host bits are set"))
                    .hint(format!("did you mean \"{network}/{prefix}\"?")),
            );
        }
        Ok(IpNet { addr, prefix })
    }
}
super::string_value!(
    IpNet,
    "CIDR",
    "A network in CIDR notation, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"; a bare address is a single host."
);

/// An interface address with its prefix length, e.g. "192.0.2.11/24".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfaceAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IfaceAddr {
    /// Whether `ip` is inside this address's subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && mask_bits(ip, self.prefix) == mask_bits(self.addr, self.prefix)
    }
}

impl fmt::Display for IfaceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl ParseStr for IfaceAddr {
    const EXPECTED: &'static str = "an address with prefix such as \"192.0.2.11/24\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        match split_prefix(s, "interface address")? {
            (addr, Some(prefix)) => Ok(IfaceAddr { addr, prefix }),
            (addr, None) => Err(ValueError::new(format!(
                "interface address \"{s}\" needs a prefix length"
            ))
            .hint(format!(
                "e.g. \"{addr}/{}\"",
                if addr.is_ipv4() { 24 } else { 64 }
            ))),
        }
    }
}
super::string_value!(
    IfaceAddr,
    "address/prefix",
    "An address with its prefix length, e.g. \"192.0.2.11/24\"."
);

/// An Ethernet MAC address, unicast, written "52:54:00:12:34:56".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl ParseStr for MacAddr {
    const EXPECTED: &'static str = "a MAC address such as \"52:54:00:12:34:56\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let invalid = || {
            ValueError::new(format!("invalid MAC address \"{s}\""))
                .hint("write six hex octets separated by ':', e.g. \"52:54:00:12:34:56\"")
        };
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 {
                return Err(invalid());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        if octets[0] & 1 == 1 {
            return Err(
                ValueError::new(format!("MAC address \"{s}\" is a multicast address")).hint(
                    "the lowest bit of the first octet must be 0, e.g. \"52:...\" or \"02:...\"",
                ),
            );
        }
        if octets == [0; 6] {
            return Err(ValueError::new(
                "MAC address 00:00:00:00:00:00 is not usable",
            ));
        }
        Ok(MacAddr(octets))
    }
}
super::string_value!(
    MacAddr,
    "MAC address",
    "A unicast MAC address, e.g. \"52:54:00:12:34:56\".",
    pattern = "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"
);

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// A list of ports and ranges: "22", "80,443,8000-8100".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortList(Vec<PortRange>);

impl PortList {
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.first == r.last {
                write!(f, "{}", r.first)?;
            } else {
                write!(f, "{}-{}", r.first, r.last)?;
            }
        }
        Ok(())
    }
}

impl ParseStr for PortList {
    const EXPECTED: &'static str = "a port list such as \"80,443,8000-8100\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let port = |p: &str| -> Result<u16, ValueError> {
            match p.trim().parse::<u32>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                Ok(n) => Err(ValueError::new(format!(
                    "port {n} is out of range: must be between 1 and 65535"
                ))),
                Err(_) => Err(
                    ValueError::new(format!("invalid port \"{}\" in \"{s}\"", p.trim())).hint(
                        "write ports and ranges separated by commas, e.g. \"80,443,8000-8100\"",
                    ),
                ),
            }
        };
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let range = match item.split_once('-') {
                Some((a, b)) => PortRange {
                    first: port(a)?,
                    last: port(b)?,
                },
                None => {
                    let p = port(item)?;
                    PortRange { first: p, last: p }
                }
            };
            if range.first > range.last {
                return Err(
                    ValueError::new(format!("port range \"{}\" is reversed", item.trim()))
                        .hint(format!("did you mean \"{}-{}\"?", range.last, range.first)),
                );
            }
            ranges.push(range);
        }
        Ok(PortList(ranges))
    }
}

super::string_value!(
    PortList,
    "port list",
    "Ports and ranges separated by commas, e.g. \"22\" or \"80,443,8000-8100\".",
    pattern = "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let n = IpNet::parse_str("10.0.0.0/8").unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert_eq!(IpNet::parse_str("192.0.2.1").unwrap().prefix, 32);
        assert_eq!(IpNet::parse_str("2001:db8::/32").unwrap().prefix, 32);
        let err = IpNet::parse_str("10.1.2.3/8").unwrap_err();
        assert_eq!(err.hint.as_deref(), Some("did you mean \"10.0.0.0/8\"?"));
        assert!(IpNet::parse_str("10.0.0.0/33").is_err());
        assert!(IpNet::parse_str("0.0.0.0/0").is_ok());
        assert!(IpNet::parse_str("10.0.0/8").is_err());
    }

    #[test]
    fn interface_addresses() {
        let a = IfaceAddr::parse_str("192.0.2.11/24").unwrap();
        assert!(a.contains("192.0.2.1".parse().unwrap()));
        assert!(!a.contains("192.0.3.1".parse().unwrap()));
        assert!(IfaceAddr::parse_str("192.0.2.11").is_err());
    }

    #[test]
    fn macs() {
        let m = MacAddr::parse_str("52:54:00:AB:cd:ef").unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ef");
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "52-54-00-ab-cd-ef",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "5:54:00:ab:cd:ef0",
        ] {
            assert!(MacAddr::parse_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_lists() {
        let p = PortList::parse_str("80,443, 8000-8100").unwrap();
        assert_eq!(p.ranges().len(), 3);
        assert_eq!(p.to_string(), "80,443,8000-8100");
        assert!(PortList::parse_str("0").is_err());
        assert!(PortList::parse_str("65536").is_err());
        assert_eq!(
            PortList::parse_str("100-10").unwrap_err().hint.as_deref(),
            Some("did you mean \"10-100\"?")
        );
        assert!(PortList::parse_str("").is_err());
        assert!(PortList::parse_str("80,,443").is_err());
    }
}
