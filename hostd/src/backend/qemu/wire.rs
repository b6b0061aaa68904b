//! Small pieces both QEMU line protocols (QMP and the guest agent) share:
//! which I/O errors mean the peer went away, how a bad line is quoted in
//! an error, and how durations read in messages.

use std::io;
use std::time::Duration;

use serde_json::{Map, Value};

/// How much of an unreadable line an error quotes.
const QUOTE: usize = 200;

/// The outcome of a QAPI reply (both QMP and the guest agent answer a
/// command with `{"return": ...}` or `{"error": {"class", "desc"}}`),
/// taken out of its object; `None` when the object is neither.
pub(super) fn take_reply(
    object: &mut Map<String, Value>,
) -> Option<Result<Value, (String, String)>> {
    if let Some(value) = object.remove("return") {
        return Some(Ok(value));
    }
    let error = object.remove("error")?;
    let field = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("(missing)")
            .to_string()
    };
    Some(Err((field("class"), field("desc"))))
}

/// An error that means the other end closed the socket (QEMU exited, the
/// guest agent restarted), not a fault of ours.
pub(super) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// A received line for an error message: lossy UTF-8, at most [`QUOTE`]
/// characters.
pub(super) fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    match text.char_indices().nth(QUOTE) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// "3.2s", "120s": how the CLI and errors show durations.
pub(super) fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded_and_durations_short() {
        assert_eq!(quote(b"abc\r\n"), "abc");
        let long = "\u{e9}".repeat(300);
        assert_eq!(quote(long.as_bytes()).chars().count(), QUOTE + 3);
        assert_eq!(secs(Duration::from_secs(120)), "120s");
        assert_eq!(secs(Duration::from_millis(3200)), "3.2s");
        assert!(is_disconnect(&io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(!is_disconnect(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }
}
