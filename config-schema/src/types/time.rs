//! Durations written as humantime strings: "30s", "15m", "1h".

use std::fmt;

use crate::decode::{ParseStr, ValueError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl ParseStr for Duration {
    const EXPECTED: &'static str = "a duration string such as \"30s\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            ValueError::new(format!("invalid duration \"{s}\": {e}"))
                .hint("write a number and a unit, e.g. \"30s\", \"15m\", \"1h\", \"1h 30m\"")
        })
    }
}
super::string_value!(
    Duration,
    "duration",
    "A duration, e.g. \"30s\", \"15m\", \"1h\"."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime() {
        assert_eq!(Duration::parse_str("1h").unwrap().get().as_secs(), 3600);
        assert_eq!(Duration::parse_str("1h 30m").unwrap().get().as_secs(), 5400);
        assert!(Duration::parse_str("10").is_err());
        assert!(Duration::parse_str("soon").is_err());
        assert_eq!(Duration::from_secs(120).to_string(), "2m");
    }
}
