//! Where a bundle comes from: a local file, or a plain `http://` URL
//! downloaded into the staging directory.
//!
//! Plain HTTP is enough: the bundle's minisign signature, checked against
//! keys in the read-only root, is the trust anchor, not the transport.
//! TLS is not built in.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Meter, Say, mib};

/// A bundle larger than this is refused (also the largest download).
pub const MAX_BUNDLE: u64 = 4 << 30;
const MAX_REDIRECTS: usize = 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may stay silent (headers, or between body chunks).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The name of the downloaded bundle in the staging directory.
const STAGED_NAME: &str = "bundle.tar";

/// A bundle source given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Http(Uri),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "{0}: https is not supported: TLS is not built in, and not needed: the bundle's minisign \
         signature is the trust anchor, so serve it over plain http://"
    )]
    Https(String),
    #[error("{0}: only local files and http:// URLs are supported")]
    Scheme(String),
    #[error("{url}: not a valid URL: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot start the downloader: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: redirect loop or more than {MAX_REDIRECTS} redirects")]
    RedirectLoop { url: String },
    #[error("{url}: the bundle is larger than {} (4 GiB)", mib(MAX_BUNDLE))]
    TooLarge { url: String },
    #[error("{url}: the server stopped sending for {}s", STALL_TIMEOUT.as_secs())]
    Stalled { url: String },
    #[error("{url}: the body ended after {got} of {expected} bytes")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("cannot write the download to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads a SOURCE argument: a URL when it has a scheme, else a file.
pub fn parse_source(source: &str) -> Result<Source, FetchError> {
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(FetchError::Https(source.to_string()));
    }
    if lower.starts_with("http://") {
        let uri: Uri =
            source
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| FetchError::BadUrl {
                    url: source.to_string(),
                    why: e.to_string(),
                })?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(FetchError::BadUrl {
                url: source.to_string(),
                why: "no host".into(),
            });
        }
        return Ok(Source::Http(uri));
    }
    if let Some((scheme, _)) = source.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(FetchError::Scheme(source.to_string()));
    }
    Ok(Source::File(PathBuf::from(source)))
}

/// A downloaded bundle; removed when dropped.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Downloads `uri` into `staging_dir` (created if needed), replacing any
/// earlier download atomically, and saying progress.
pub fn download(uri: &Uri, staging_dir: &Path, say: Say) -> Result<Staged, FetchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FetchError::Runtime)?;
    runtime.block_on(download_async(uri.clone(), staging_dir, say))
}

async fn download_async(uri: Uri, staging_dir: &Path, say: Say<'_>) -> Result<Staged, FetchError> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut current = uri;
    let mut visited = vec![current.clone()];
    let response = loop {
        let url = current.to_string();
        let request = client.get(current.clone());
        let response = tokio::time::timeout(STALL_TIMEOUT, request)
            .await
            .map_err(|_| FetchError::Stalled { url: url.clone() })?
            .map_err(|e| FetchError::Http {
                url: url.clone(),
                why: crate::errors::chain(&e),
            })?;
        let status = response.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FetchError::Status {
                    url: url.clone(),
                    status,
                })?;
            let next = resolve_location(&current, location)?;
            if visited.contains(&next) || visited.len() > MAX_REDIRECTS {
                return Err(FetchError::RedirectLoop { url });
            }
            say(&format!("{url}: {status}, following to {next}"));
            visited.push(next.clone());
            current = next;
            continue;
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status { url, status });
        }
        break response;
    };
    let url = current.to_string();
    let expected = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if expected.is_some_and(|len| len > MAX_BUNDLE) {
        return Err(FetchError::TooLarge { url });
    }
    say(&format!(
        "downloading {url}{}",
        expected.map_or(String::new(), |len| format!(" ({})", mib(len)))
    ));

    std::fs::create_dir_all(staging_dir).map_err(|source| FetchError::Write {
        path: staging_dir.to_path_buf(),
        source,
    })?;
    let write_error = |source| FetchError::Write {
        path: staging_dir.to_path_buf(),
        source,
    };
    let mut file = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempfile_in(staging_dir)
        .map_err(write_error)?;
    let mut body = response.into_body();
    let mut meter = Meter::new("downloaded", expected);
    let mut got = 0u64;
    loop {
        let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
            .await
            .map_err(|_| FetchError::Stalled { url: url.clone() })?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| FetchError::Http {
            url: url.clone(),
            why: crate::errors::chain(&e),
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        got += data.len() as u64;
        if got > MAX_BUNDLE {
            return Err(FetchError::TooLarge { url });
        }
        file.write_all(&data).map_err(write_error)?;
        meter.update(got, say);
    }
    if let Some(expected) = expected
        && got != expected
    {
        return Err(FetchError::Truncated { url, got, expected });
    }
    file.as_file().sync_all().map_err(write_error)?;
    let path = staging_dir.join(STAGED_NAME);
    file.persist(&path).map_err(|e| write_error(e.error))?;
    say(&format!("downloaded {} bytes to {}", got, path.display()));
    Ok(Staged { path })
}

/// The target of a `Location` header, relative to the request's URI.
fn resolve_location(base: &Uri, location: &str) -> Result<Uri, FetchError> {
    let bad = |why: &str| FetchError::BadUrl {
        url: location.to_string(),
        why: why.to_string(),
    };
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(FetchError::Https(location.to_string()));
    }
    if lower.starts_with("http://") {
        return location.parse().map_err(|_| bad("unparsable redirect"));
    }
    if location.contains("://") || location.starts_with("//") {
        return Err(FetchError::Scheme(location.to_string()));
    }
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{dir}/{location}")
    };
    let authority = base
        .authority()
        .ok_or_else(|| bad("no host to resolve against"))?;
    Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|_| bad("unparsable redirect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            parse_source("/var/tmp/b.tar").unwrap(),
            Source::File("/var/tmp/b.tar".into())
        );
        assert_eq!(parse_source("b.tar").unwrap(), Source::File("b.tar".into()));
        assert!(matches!(
            parse_source("http://10.0.0.1:8080/u/b.tar").unwrap(),
            Source::Http(uri) if uri.port_u16() == Some(8080)
        ));
        let https = parse_source("https://example.invalid/b.tar")
            .unwrap_err()
            .to_string();
        assert!(https.contains("minisign"), "{https}");
        assert!(https.contains("TLS is not built in"), "{https}");
        assert!(matches!(
            parse_source("ftp://x/b.tar"),
            Err(FetchError::Scheme(_))
        ));
        assert!(matches!(
            parse_source("http:///b.tar"),
            Err(FetchError::BadUrl { .. })
        ));
    }

    #[test]
    fn redirect_targets() {
        let base: Uri = "http://h:81/a/b.tar?x=1".parse().unwrap();
        let resolve = |l| resolve_location(&base, l).map(|u| u.to_string());
        assert_eq!(resolve("/c.tar").unwrap(), "http://h:81/c.tar");
        assert_eq!(resolve("c.tar").unwrap(), "http://h:81/a/c.tar");
        assert_eq!(resolve("http://o/d").unwrap(), "http://o/d");
        assert!(matches!(resolve("https://o/d"), Err(FetchError::Https(_))));
        assert!(matches!(resolve("//o/d"), Err(FetchError::Scheme(_))));
    }
}
