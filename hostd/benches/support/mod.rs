//! Bench trees: a valid config from generated `(path, text)` files.

use horcrux_config::{Config, TreeFile, check_files};

/// The config of `files`; panics with every error if it is invalid.
pub fn config(files: Vec<(String, String)>) -> Config {
    let files = files
        .into_iter()
        .map(|(path, text)| TreeFile {
            path,
            content: Ok(text.into_bytes()),
        })
        .collect();
    match check_files(files).into_valid() {
        Ok(config) => config,
        Err(errors) => panic!("invalid bench tree: {errors:#?}"),
    }
}
