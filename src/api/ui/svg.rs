//! Server-drawn charts as inline SVG strings: the forest plot of kappas over the
//! human-human band and the confusion heatmap. Pure: takes numbers and names, returns
//! markup with every name escaped. Uses presentation attributes only (no `style`), so
//! the pages' Content-Security-Policy needs no inline-style exception.

use std::fmt::Write as _;

/// Escapes text for an SVG (XML) text node or attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// One row of the forest plot: a rater (pair) and its kappa with CI.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    pub label: String,
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Human pairs are drawn hollow, judges and the committee filled.
    pub human: bool,
}

const ROW: f64 = 22.0;
const LEFT: f64 = 190.0;
const WIDTH: f64 = 640.0;

/// A forest plot: each row's kappa as a dot with its CI as a line, over the band the
/// human pairs span (`band`, shaded). The x axis runs from min(-0.2, lowest bound) to 1.
pub fn forest(rows: &[ForestRow], band: (Option<f64>, Option<f64>)) -> String {
    let lowest = rows
        .iter()
        .filter_map(|r| r.low.or(r.value))
        .chain(band.0)
        .fold(-0.2_f64, f64::min)
        .max(-1.0);
    let (x0, x1) = (lowest, 1.0_f64);
    let plot = WIDTH - LEFT - 20.0;
    let x = |v: f64| LEFT + (v.clamp(x0, x1) - x0) / (x1 - x0) * plot;
    #[expect(clippy::cast_precision_loss, reason = "a handful of rows")]
    let height = (rows.len() as f64 + 2.0) * ROW;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="Forest plot of kappa with confidence intervals" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">"#
    );
    if let (Some(lo), Some(hi)) = band {
        let _ = write!(
            s,
            r##"<rect class="band" x="{:.1}" y="0" width="{:.1}" height="{:.1}" fill="#cfe3ff"><title>human-human band {lo:.3} to {hi:.3}</title></rect>"##,
            x(lo),
            (x(hi) - x(lo)).max(1.0),
            height - ROW
        );
    }
    // Ticks every 0.2 from the first one inside the axis, negative ones included.
    #[expect(clippy::cast_possible_truncation, reason = "x0 is within [-1, 0]")]
    let first = (x0 / 0.2).ceil() as i32;
    for step in first..=5 {
        let tick = f64::from(step) * 0.2;
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="0" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" font-size="11" text-anchor="middle">{tick:.1}</text>"##,
            x(tick),
            height - ROW,
            height - 6.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "a handful of rows")]
        let y = (i as f64 + 0.5) * ROW + 4.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            esc(&r.label)
        );
        if let (Some(lo), Some(hi)) = (r.low, r.high) {
            let _ = write!(
                s,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#333" stroke-width="2"/>"##,
                x(lo),
                x(hi)
            );
        }
        match r.value {
            Some(v) => {
                let fill = if r.human { "#fff" } else { "#1f5fbf" };
                let _ = write!(
                    s,
                    r##"<circle cx="{:.1}" cy="{y:.1}" r="5" fill="{fill}" stroke="#1f5fbf" stroke-width="2"><title>{}: {v:.3}</title></circle>"##,
                    x(v),
                    esc(&r.label)
                );
            }
            None => {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11">undefined</text>"#,
                    LEFT + 4.0,
                    y + 4.0
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// A confusion heatmap: rows are the human majority, columns the judge; a cell's
/// shade is its share of its row.
pub fn heatmap(labels: &[String], matrix: &[Vec<u64>]) -> String {
    const CELL: f64 = 48.0;
    const PAD: f64 = 110.0;
    #[expect(clippy::cast_precision_loss, reason = "a handful of categories")]
    let n = labels.len() as f64;
    let size = PAD + n * CELL + 10.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="Confusion matrix: rows human majority, columns judge" viewBox="0 0 {size} {size}" width="{size}" height="{size}">"#
    );
    for (i, l) in labels.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "a handful of categories")]
        let p = PAD + (i as f64 + 0.5) * CELL;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{p:.1}" font-size="12" text-anchor="end">{}</text><text x="{p:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            PAD - 6.0,
            esc(l),
            PAD - 8.0,
            esc(l)
        );
    }
    for (r, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (c, &count) in row.iter().enumerate() {
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            #[expect(clippy::cast_precision_loss, reason = "a handful of categories")]
            let (x, y) = (PAD + c as f64 * CELL, PAD + r as f64 * CELL);
            let text = if share > 0.55 { "#fff" } else { "#000" };
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{CELL}" height="{CELL}" fill="#1f5fbf" fill-opacity="{:.3}" stroke="#999"/><text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{text}">{count}</text>"##,
                0.05 + 0.95 * share,
                x + CELL / 2.0,
                y + CELL / 2.0 + 4.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        let rows = [ForestRow {
            label: "<script>alert(1)</script>".into(),
            value: Some(0.5),
            low: Some(0.2),
            high: Some(0.8),
            human: false,
        }];
        let svg = forest(&rows, (Some(0.3), Some(0.7)));
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("class=\"band\""));
        let h = heatmap(&["a\"b".into(), "c".into()], &[vec![3, 1], vec![0, 4]]);
        assert!(h.contains("a&quot;b") && !h.contains("a\"b"));
        assert_eq!(h.matches("<rect").count(), 4);
    }

    #[test]
    fn positions_follow_values() {
        // A kappa of 1 sits at the right end, a lower one left of it.
        let row = |v: f64| ForestRow {
            label: "j".into(),
            value: Some(v),
            low: None,
            high: None,
            human: false,
        };
        let cx = |svg: &str| -> f64 {
            let at = svg.find("cx=\"").unwrap() + 4;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        let hi = cx(&forest(&[row(1.0)], (None, None)));
        let lo = cx(&forest(&[row(0.1)], (None, None)));
        assert!((hi - (WIDTH - 20.0)).abs() < 0.5, "{hi}");
        assert!(lo < hi);
    }
}
