//! Human-readable diagnostics in the style of rustc: the location, the
//! offending line, a caret under the value, and the hint.

use std::fmt::Write as _;

use horcrux_config::Diagnostic;

/// Renders every diagnostic followed by a one-line summary.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        render_one(&mut out, d);
    }
    let files: std::collections::BTreeSet<&str> =
        diagnostics.iter().map(|d| d.file.as_str()).collect();
    let _ = writeln!(
        out,
        "error: {} in {}",
        plural(diagnostics.len(), "error"),
        plural(files.len(), "file")
    );
    out
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn render_one(out: &mut String, d: &Diagnostic) {
    let _ = writeln!(out, "error: {}", d.message);
    match (d.line, d.column, &d.snippet) {
        (Some(line), Some(column), Some(snippet)) => {
            let gutter = " ".repeat(line.to_string().len());
            let _ = writeln!(out, "{gutter}--> {}:{line}:{column}", d.file);
            let _ = writeln!(out, "{gutter} |");
            // Tabs would shift the caret; columns count characters.
            let text = snippet.line_text.replace('\t', " ");
            let _ = writeln!(out, "{line} | {text}");
            let pad = " ".repeat(column - 1);
            let _ = writeln!(out, "{gutter} | {pad}{}", "^".repeat(snippet.width));
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "{gutter} = hint: {hint}");
            }
        }
        _ => {
            let _ = writeln!(out, " --> {}", d.file);
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "  = hint: {hint}");
            }
        }
    }
    out.push('\n');
}
