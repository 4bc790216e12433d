//! A small, safe Markdown subset for a set's guidelines: paragraphs, `#` headings,
//! `-` / `*` lists, `**bold**`, `*emphasis*` and `` `code` ``. The text is escaped
//! first and only these tags are added, so no markup of the author's survives; links
//! and raw HTML are shown as text on purpose (a guidelines text is untrusted). Pure.

use super::svg::esc;

/// Renders `text` to HTML.
pub fn render(text: &str) -> String {
    let mut out = String::new();
    let mut para: Vec<String> = Vec::new();
    let mut list: Vec<String> = Vec::new();
    let flush = |out: &mut String, para: &mut Vec<String>, list: &mut Vec<String>| {
        if !para.is_empty() {
            out.push_str(&format!("<p>{}</p>", para.join(" ")));
            para.clear();
        }
        if !list.is_empty() {
            out.push_str("<ul>");
            for item in list.drain(..) {
                out.push_str(&format!("<li>{item}</li>"));
            }
            out.push_str("</ul>");
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            flush(&mut out, &mut para, &mut list);
        } else if let Some(h) = t.strip_prefix('#') {
            flush(&mut out, &mut para, &mut list);
            out.push_str(&format!(
                "<h4>{}</h4>",
                inline(h.trim_start_matches('#').trim())
            ));
        } else if let Some(item) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            if !para.is_empty() {
                let mut none = Vec::new();
                flush(&mut out, &mut para, &mut none);
            }
            list.push(inline(item));
        } else {
            if !list.is_empty() {
                let mut none = Vec::new();
                flush(&mut out, &mut none, &mut list);
            }
            para.push(inline(t));
        }
    }
    flush(&mut out, &mut para, &mut list);
    out
}

/// Escapes one line, then turns paired markers into tags.
fn inline(s: &str) -> String {
    let escaped = esc(s);
    let bold = pairs(&escaped, "**", "strong");
    let code = pairs(&bold, "`", "code");
    pairs(&code, "*", "em")
}

/// Wraps text between pairs of `marker` in `<tag>`; an unpaired marker stays as is.
fn pairs(s: &str, marker: &str, tag: &str) -> String {
    let parts: Vec<&str> = s.split(marker).collect();
    // An empty pair (`**` left over from an unpaired bold marker, seen by the `*`
    // pass) is no markup: keep the text as written.
    if parts.len() < 3 || parts.iter().skip(1).step_by(2).any(|p| p.is_empty()) {
        return s.to_owned();
    }
    let mut out = String::new();
    let closed = if parts.len() % 2 == 1 {
        parts.len()
    } else {
        parts.len() - 1
    };
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            if i < closed {
                out.push_str(if i % 2 == 1 { "<" } else { "</" });
                out.push_str(tag);
                out.push('>');
            } else {
                out.push_str(marker);
            }
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn subset_and_escaping() {
        for (input, expected) in [
            (
                "Label **met** if *all* of it holds.",
                "<p>Label <strong>met</strong> if <em>all</em> of it holds.</p>",
            ),
            (
                "# Rules\n- one\n- `two`\n\nEnd",
                "<h4>Rules</h4><ul><li>one</li><li><code>two</code></li></ul><p>End</p>",
            ),
            (
                "<script>alert(1)</script>",
                "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
            ),
            (
                "[x](javascript:alert(1)) <img src=x onerror=alert(1)>",
                "<p>[x](javascript:alert(1)) &lt;img src=x onerror=alert(1)&gt;</p>",
            ),
            ("a * b", "<p>a * b</p>"),
            ("**open", "<p>**open</p>"),
            ("", ""),
        ] {
            assert_eq!(render(input), expected, "{input:?}");
        }
    }
}
