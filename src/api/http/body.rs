//! Reading a job submission's body as it arrives: which form it has (NDJSON, or one
//! JSON document), and NDJSON as a stream of lines with per-line limits, so a large
//! job never sits whole in memory. Knows nothing of items: validating them is the
//! service's.

use axum::body::{Body, BodyDataStream, Bytes};
use bytes::BytesMut;
use futures::{Stream, StreamExt};

use crate::error::Error;
use crate::rubric::Invalid;

/// A submission body, as far as its first line shows.
pub enum Submission {
    /// One JSON document (an array of items, or `{rubric, items, seed}`), read whole.
    Whole(Bytes),
    /// NDJSON: one item per line, read as it arrives.
    Lines(LineStream),
}

fn too_large(detail: String) -> Error {
    Error::TooLarge {
        what: "request body",
        detail,
        field: None,
    }
}

fn unreadable(e: impl std::fmt::Display) -> Error {
    Error::Invalid(Invalid::one("", format!("cannot read the body: {e}")))
}

/// Reads up to the end of the first line and decides the form: a body whose first
/// line is a complete JSON document other than `{"items": ...}` is NDJSON (a
/// one-line body is one item either way); anything else (an array, `{rubric,
/// items}`, a document spread over several lines) is one document, read whole up to
/// `max_bytes`. NDJSON lines may each be up to `max_bytes`; their number is the
/// service's limit (`server.max_items_per_job`), not the body's size.
pub async fn read_submission(body: Body, max_bytes: usize) -> Result<Submission, Error> {
    let mut chunks = body.into_data_stream();
    let mut head = BytesMut::new();
    let mut ended = false;
    while !head.contains(&b'\n') {
        match chunks.next().await {
            Some(Ok(c)) => head.extend_from_slice(&c),
            Some(Err(e)) => return Err(unreadable(e)),
            None => {
                ended = true;
                break;
            }
        }
        if head.len() > max_bytes && !head.contains(&b'\n') {
            return Err(too_large(format!(
                "the first line is over server.max_body_bytes ({max_bytes}); send NDJSON, one item per line"
            )));
        }
    }
    let first_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    if is_single_item(&head[..first_end]) {
        return Ok(Submission::Lines(LineStream {
            chunks,
            buf: head,
            ended,
            max_line: max_bytes,
        }));
    }
    let mut whole = head;
    while !ended {
        match chunks.next().await {
            Some(Ok(c)) => whole.extend_from_slice(&c),
            Some(Err(e)) => return Err(unreadable(e)),
            None => ended = true,
        }
        if whole.len() > max_bytes {
            return Err(too_large(format!(
                "over server.max_body_bytes ({max_bytes}); send NDJSON (one item per line), which has no size limit, or raise the limit"
            )));
        }
    }
    Ok(Submission::Whole(whole.freeze()))
}

/// An NDJSON body (the sender said `application/x-ndjson`): its lines as they
/// arrive, each up to `max_line` bytes, however many there are.
pub fn ndjson_lines(body: Body, max_line: usize) -> LineStream {
    LineStream {
        chunks: body.into_data_stream(),
        buf: BytesMut::new(),
        ended: false,
        max_line,
    }
}

/// One document (the sender said `application/json`, `text/csv`, ...), read whole
/// up to `max_bytes`; `hint` says what to do instead when it is larger.
pub async fn read_whole(body: Body, max_bytes: usize, hint: &str) -> Result<Bytes, Error> {
    let mut chunks = body.into_data_stream();
    let mut whole = BytesMut::new();
    while let Some(c) = chunks.next().await {
        whole.extend_from_slice(&c.map_err(unreadable)?);
        if whole.len() > max_bytes {
            return Err(too_large(format!(
                "over server.max_body_bytes ({max_bytes}); {hint}"
            )));
        }
    }
    Ok(whole.freeze())
}

/// A first line that is one whole JSON object and not the `{items: [...]}` form.
fn is_single_item(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        items: Option<serde::de::IgnoredAny>,
    }
    matches!(
        serde_json::from_slice::<Probe>(trimmed),
        Ok(Probe { items: None })
    )
}

/// NDJSON lines of a body as they arrive: blank lines skipped, each line UTF-8 and at
/// most `max_line` bytes. A line's problems are errors of the whole stream, which
/// the service turns into a failed, stored-nothing submission.
pub struct LineStream {
    chunks: BodyDataStream,
    buf: BytesMut,
    ended: bool,
    max_line: usize,
}

impl LineStream {
    /// Item `n` is over the line limit: the stream ends with this error.
    fn too_long(&mut self, n: usize) -> Error {
        self.ended = true;
        self.buf.clear();
        too_large(format!(
            "item {n} is longer than server.max_body_bytes ({})",
            self.max_line
        ))
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<String, Error>> + Send {
        futures::stream::unfold((self, 0usize), |(mut st, n)| async move {
            loop {
                if let Some(end) = st.buf.iter().position(|&b| b == b'\n') {
                    let line = st.buf.split_to(end + 1);
                    if line.trim_ascii().is_empty() {
                        continue;
                    }
                    if line.len() > st.max_line {
                        return Some((Err(st.too_long(n)), (st, n + 1)));
                    }
                    return Some((to_text(&line, n), (st, n + 1)));
                }
                if st.buf.len() > st.max_line {
                    let e = st.too_long(n);
                    return Some((Err(e), (st, n + 1)));
                }
                if st.ended {
                    if st.buf.trim_ascii().is_empty() {
                        return None;
                    }
                    let line = st.buf.split();
                    return Some((to_text(&line, n), (st, n + 1)));
                }
                match st.chunks.next().await {
                    Some(Ok(c)) => st.buf.extend_from_slice(&c),
                    Some(Err(e)) => {
                        st.ended = true;
                        st.buf.clear();
                        return Some((Err(unreadable(e)), (st, n + 1)));
                    }
                    None => st.ended = true,
                }
            }
        })
    }
}

fn to_text(line: &[u8], n: usize) -> Result<String, Error> {
    std::str::from_utf8(line.trim_ascii())
        .map(str::to_owned)
        .map_err(|e| {
            Error::Invalid(Invalid::one(
                format!("items[{n}]"),
                format!("not UTF-8: {e}"),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: &[&str]) -> Body {
        let owned: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from(c.to_string())))
            .collect();
        Body::from_stream(futures::stream::iter(owned))
    }

    async fn lines(chunks: &[&str], max: usize) -> Result<Vec<String>, String> {
        match read_submission(body_of(chunks), max).await {
            Ok(Submission::Lines(l)) => l
                .into_stream()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect(),
            Ok(Submission::Whole(b)) => Err(format!("whole: {}", String::from_utf8_lossy(&b))),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn ndjson_lines_are_split_across_chunks_and_blank_lines_skipped() {
        let got = lines(&["{\"a\":1}\n\n{\"b\"", ":2}\r\n  \n{\"c\":3}"], 1000).await;
        assert_eq!(
            got,
            Ok(vec![
                "{\"a\":1}".to_owned(),
                "{\"b\":2}".to_owned(),
                "{\"c\":3}".to_owned()
            ])
        );
    }

    #[tokio::test]
    async fn documents_are_read_whole() {
        for body in [
            "[{\"a\":1},\n{\"b\":2}]",
            "{\"rubric\": \"r@1\", \"items\": [{}]}",
            "{\"items\": [{}],\n \"rubric\": \"r@1\"}",
            "{\n  \"case_id\": \"x\"\n}",
        ] {
            let got = lines(&[body], 1000).await;
            assert_eq!(got, Err(format!("whole: {body}")), "{body}");
        }
    }

    #[tokio::test]
    async fn limits_name_the_setting() {
        let long = format!("{{\"a\":\"{}\"}}\n", "x".repeat(50));
        let got = lines(&["{\"a\":1}\n", &long], 40).await;
        let e = got.unwrap_err();
        assert!(e.contains("item 1") && e.contains("max_body_bytes"), "{e}");
        let got = lines(&["[", &"1,".repeat(30), "1]"], 40).await;
        assert!(got.unwrap_err().contains("send NDJSON"));
    }

    #[tokio::test]
    async fn bad_utf8_names_the_item() {
        let owned: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\n")),
            Ok(Bytes::from_static(b"{\"b\":\"\xff\"}\n")),
        ];
        let sub = read_submission(Body::from_stream(futures::stream::iter(owned)), 100)
            .await
            .unwrap();
        let Submission::Lines(l) = sub else {
            panic!("expected lines")
        };
        let got: Vec<_> = l.into_stream().collect().await;
        assert!(got[0].is_ok());
        let e = got[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        assert_eq!(got[1].as_ref().unwrap_err().field(), Some("items[1]"));
    }
}
