//! `horcrux gossip-key`: a new random cluster key, for `[gossip] key_file`.

use crate::cli::Outcome;
use crate::cluster::key::ClusterKey;

/// The key as one line of base64, the key file format.
pub fn run() -> Outcome {
    Outcome::ok(format!("{}\n", ClusterKey::generate().to_base64()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_parsable_key_line() {
        let outcome = run();
        assert_eq!(outcome.code, crate::cli::exit::OK);
        assert!(outcome.stderr.is_empty());
        assert!(outcome.stdout.ends_with('\n'));
        assert_eq!(outcome.stdout.trim_end().len(), 44);
        ClusterKey::parse(&outcome.stdout).unwrap();
        assert_ne!(outcome.stdout, run().stdout);
    }
}
