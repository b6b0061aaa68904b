//! Errors found in a configuration tree, located at `file:line:column`.

use std::fmt;

use serde::Serialize;

use crate::source::{LineCol, SourceFile, Sources, Span};

/// One problem in the tree. `line`/`column` are absent only for whole-file
/// problems (a bad file name, an unreadable file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Path relative to the config root, with `/` separators.
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
    /// The offending source line and how many characters to underline,
    /// for human output. Not part of the JSON contract.
    #[serde(skip)]
    pub snippet: Option<Snippet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub line_text: String,
    pub width: usize,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Target {
    Span(Span),
    File(String),
}

#[derive(Debug, Clone)]
struct Pending {
    target: Target,
    message: String,
    hint: Option<String>,
}

/// Collects problems while loading and validating; resolved to
/// [`Diagnostic`]s (with line and column) once all sources are known.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pending: Vec<Pending>,
}

impl Diagnostics {
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.push(Target::Span(span), message.into(), None);
    }

    pub fn error_with_hint(
        &mut self,
        span: Span,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Target::Span(span), message.into(), Some(hint.into()));
    }

    /// A problem with a whole file, which may not even have been read.
    pub fn file_error(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Target::File(path.into()), message.into(), hint);
    }

    fn push(&mut self, target: Target, message: String, hint: Option<String>) {
        self.pending.push(Pending {
            target,
            message,
            hint,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a problem was already reported in `file`: rules that read
    /// another file's content skip a broken one instead of reporting
    /// consequences of its errors.
    pub fn has_error_in(&self, file: crate::source::FileId) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p.target, Target::Span(span) if span.file == file))
    }

    /// Locates every problem and sorts them by file, then line, then column.
    pub fn resolve(self, sources: &Sources) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = self
            .pending
            .into_iter()
            .map(|p| {
                let (file, located) = match p.target {
                    Target::File(file) => (file, None),
                    Target::Span(span) => match sources.get(span.file) {
                        Some(src) => (src.path.clone(), Some(locate(src, span))),
                        // A built-in default has no file; it never fails validation
                        // in a loaded tree, but must not panic if it ever did.
                        None => (String::new(), None),
                    },
                };
                let (line, column, snippet) = match located {
                    Some((pos, snippet)) => (Some(pos.line), Some(pos.column), Some(snippet)),
                    None => (None, None, None),
                };
                Diagnostic {
                    file,
                    line,
                    column,
                    message: p.message,
                    hint: p.hint,
                    snippet,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        out.dedup();
        out
    }
}

fn locate(src: &SourceFile, span: Span) -> (LineCol, Snippet) {
    let start = src.line_col(span.start as usize);
    let end = src.line_col(span.end as usize);
    let line_text = src.line_text(start.line).to_string();
    let width = if end.line == start.line {
        end.column.saturating_sub(start.column)
    } else {
        line_text.chars().count().saturating_sub(start.column - 1)
    };
    (
        start,
        Snippet {
            line_text,
            width: width.max(1),
        },
    )
}

/// "did you mean `x`?" for the closest candidate, if any is close enough.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// The hint for a value outside a fixed set: the closest match, else the set.
pub fn expected_one_of(input: &str, candidates: &[&str]) -> String {
    did_you_mean(input, candidates.iter().copied()).unwrap_or_else(|| {
        let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
        format!("expected one of {}", list.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("cpu", ["cpus", "memory"]).as_deref(),
            Some("did you mean `cpus`?")
        );
        assert_eq!(did_you_mean("zzz", ["cpus", "memory"]), None);
        assert_eq!(
            expected_one_of("zzz", &["a", "b"]),
            "expected one of `a`, `b`"
        );
    }

    #[test]
    fn resolves_and_sorts_by_file_line_column() {
        let mut sources = Sources::default();
        let b = sources.add("b.toml".into(), "x = 1\ny = 2\n".into());
        let a = sources.add("a.toml".into(), "k = \"v\"\n".into());
        let mut d = Diagnostics::default();
        d.error(Span::new(b, 6..7), "second line");
        d.error(Span::new(b, 0..1), "first line");
        d.error_with_hint(Span::new(a, 4..7), "value", "hint");
        d.file_error("a.toml", "whole file", None);
        let out = d.resolve(&sources);
        let got: Vec<_> = out
            .iter()
            .map(|d| (d.file.as_str(), d.line, d.column))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.toml", None, None),
                ("a.toml", Some(1), Some(5)),
                ("b.toml", Some(1), Some(1)),
                ("b.toml", Some(2), Some(1))
            ]
        );
        assert_eq!(out[1].snippet.as_ref().map(|s| s.width), Some(3));
        assert_eq!(out[1].to_string(), "a.toml:1:5: value (hint)");
    }
}
