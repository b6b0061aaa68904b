//! Config trees for unit tests, written as TOML.

use horcrux_config::{Config, TreeFile, check_files};

/// A valid config from `(path, text)` pairs; panics with every error otherwise.
pub fn config(files: &[(&str, &str)]) -> Config {
    let files = files
        .iter()
        .map(|(path, text)| TreeFile {
            path: (*path).to_string(),
            content: Ok(text.as_bytes().to_vec()),
        })
        .collect();
    match check_files(files).into_valid() {
        Ok(config) => config,
        Err(errors) => panic!("invalid test tree: {errors:#?}"),
    }
}
