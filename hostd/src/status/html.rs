//! The status page: server-rendered, no JavaScript, readable on a phone.

use std::fmt::Write as _;

use super::Status;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;max-width:60rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;word-break:break-word}\
.errors{background:#fff0f0;border:1px solid #e99;padding:.5rem 1rem}\
.failed{color:#b00}.converged{color:#070}.pending,.converging{color:#a60}code{font-size:.9em}";

pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let node = escape(&status.node);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{node} - Horcrux</title><style>{STYLE}</style></head><body>\
         <h1>{node}</h1><p>{}</p>",
        escape(&status.summary())
    );
    match &status.generation {
        Some(g) => {
            let parent = g.parent.map_or("-".to_string(), |p| p.to_string());
            let _ = write!(
                out,
                "<h2>Generation {}</h2><table><tr><th>source</th><td>{}</td></tr><tr><th>accepted</th><td>{}</td></tr>\
                 <tr><th>parent</th><td>{parent}</td></tr><tr><th>hash</th><td><code>{}</code></td></tr></table>",
                g.id,
                escape(g.source.as_str()),
                escape(&g.accepted_at),
                escape(&g.hash)
            );
        }
        None => out
            .push_str("<h2>No generation yet</h2><p>No valid configuration has been accepted.</p>"),
    }
    if !status.config_errors.is_empty() {
        let _ = write!(
            out,
            "<div class=\"errors\"><h2>Config errors ({})</h2><p>The files on disk are invalid; the generation above keeps running.</p>\
             <table><tr><th>where</th><th>problem</th></tr>",
            status.config_errors.len()
        );
        for e in &status.config_errors {
            let location = match (e.line, e.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}", e.file),
                _ => e.file.clone(),
            };
            let hint = e
                .hint
                .as_deref()
                .map(|h| format!("<br><small>{}</small>", escape(h)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}{hint}</td></tr>",
                escape(&location),
                escape(&e.message)
            );
        }
        out.push_str("</table></div>");
    }
    let _ = write!(out, "<h2>Resources ({})</h2>", status.resources.len());
    if status.resources.is_empty() {
        out.push_str("<p>Nothing to converge on this node.</p>");
    } else {
        out.push_str("<table><tr><th>kind</th><th>name</th><th>state</th><th>detail</th></tr>");
        for r in &status.resources {
            let mut detail = r.error.as_deref().map(escape).unwrap_or_default();
            if r.restart_pending {
                detail.push_str(" restart pending");
            }
            let state = r.state.as_str();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td></tr>",
                r.kind,
                escape(&r.name),
                detail.trim()
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(
        out,
        "<p><small>hostd {} since {} · <a href=\"/status.json\">JSON</a> · <a href=\"/metrics\">metrics</a></small></p></body></html>",
        escape(status.version),
        escape(&status.started_at)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use horcrux_config::Diagnostic;

    #[test]
    fn escapes_everything_dynamic() {
        let mut status = Status::new("<b>node</b>".into());
        status.config_errors.push(Diagnostic {
            file: "cluster/vms/x.toml".into(),
            line: Some(3),
            column: Some(1),
            message: "<script>alert(1)</script>".into(),
            hint: Some("a & b".into()),
            snippet: None,
        });
        let page = render(&status);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;node&lt;/b&gt;"));
        assert!(page.contains("cluster/vms/x.toml:3:1"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("name=\"viewport\""));
    }
}
