//! Sizes written with binary units: "512MiB", "20GiB", "1TiB".

use std::fmt;

use crate::decode::{ParseStr, ValueError};

/// A number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

const UNITS: &[(&str, u32)] = &[
    ("B", 0),
    ("KiB", 10),
    ("MiB", 20),
    ("GiB", 30),
    ("TiB", 40),
    ("PiB", 50),
];

impl ByteSize {
    pub const MIB: u64 = 1 << 20;

    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn mib(self) -> u64 {
        self.0 >> 20
    }
}

/// Prints the largest unit that represents the size exactly.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, shift) = UNITS
            .iter()
            .rev()
            .find(|(_, shift)| self.0.trailing_zeros() >= *shift && self.0 != 0)
            .copied()
            .unwrap_or(("B", 0));
        write!(f, "{}{unit}", self.0 >> shift)
    }
}

impl ParseStr for ByteSize {
    const EXPECTED: &'static str = "a size string such as \"20GiB\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = (&s[..split], s[split..].trim_start());
        let usage =
            "write a whole number with a binary unit: B, KiB, MiB, GiB, TiB or PiB, e.g. \"20GiB\"";
        if digits.is_empty() {
            return Err(ValueError::new(format!("invalid size \"{s}\"")).hint(usage));
        }
        let Some(&(_, shift)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            let decimal = [
                ("K", "KiB"),
                ("KB", "KiB"),
                ("M", "MiB"),
                ("MB", "MiB"),
                ("G", "GiB"),
                ("GB", "GiB"),
                ("T", "TiB"),
                ("TB", "TiB"),
            ];
            let hint = match decimal.iter().find(|(d, _)| d.eq_ignore_ascii_case(unit)) {
                Some((_, binary)) => {
                    format!("sizes use binary units: did you mean \"{digits}{binary}\"?")
                }
                None if unit.is_empty() => {
                    format!("a unit is required: did you mean \"{digits}MiB\" or \"{digits}GiB\"?")
                }
                None => usage.to_string(),
            };
            return Err(ValueError::new(format!("invalid size \"{s}\"")).hint(hint));
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
            .map(ByteSize)
            .ok_or_else(|| ValueError::new(format!("size \"{s}\" is too large")))
    }
}
super::string_value!(
    ByteSize,
    "size",
    "A size with a binary unit, e.g. \"512MiB\", \"20GiB\", \"1TiB\".",
    pattern = "^[0-9]+ ?(B|KiB|MiB|GiB|TiB|PiB)$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units() {
        assert_eq!(ByteSize::parse_str("512MiB").unwrap().bytes(), 512 << 20);
        assert_eq!(ByteSize::parse_str("20GiB").unwrap().bytes(), 20 << 30);
        assert_eq!(ByteSize::parse_str("1 TiB").unwrap().bytes(), 1 << 40);
        assert_eq!(ByteSize::parse_str("4096B").unwrap().bytes(), 4096);
    }

    #[test]
    fn rejects_decimal_units_with_a_hint() {
        let err = ByteSize::parse_str("2GB").unwrap_err();
        assert_eq!(
            err.hint.as_deref(),
            Some("sizes use binary units: did you mean \"2GiB\"?")
        );
        let err = ByteSize::parse_str("2048").unwrap_err();
        assert!(err.hint.unwrap().contains("a unit is required"));
        assert!(ByteSize::parse_str("GiB").is_err());
        assert!(ByteSize::parse_str("1.5GiB").is_err());
        assert!(ByteSize::parse_str("-1GiB").is_err());
        assert!(ByteSize::parse_str("99999999999PiB").is_err());
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize::from_bytes(20 << 30).to_string(), "20GiB");
        assert_eq!(ByteSize::from_bytes(1536 << 20).to_string(), "1536MiB");
        assert_eq!(ByteSize::from_bytes(0).to_string(), "0B");
        assert_eq!(ByteSize::from_bytes(1023).to_string(), "1023B");
    }
}
