//! Bounded reading of a JSON request document: criteria, items, string sizes and the
//! number of JSON values are counted WHILE the bytes are scanned, before any
//! `serde_json::Value` (or JSON-Schema validation) exists. Pure: no IO.
//!
//! The scan is a serde visitor over the raw bytes that keeps nothing but counters and
//! the current field path, so a 48 MB body with a million criteria costs a pass over
//! the bytes, not gigabytes of `Value`s. Only a document within every bound is then
//! parsed into a `Value` (whose size the value budget keeps to a small multiple of the
//! body). Must not know about transports, judges or storage.
//!
//! Which arrays are which is decided by their key, wherever they sit: `criteria`
//! (rubric.v1 and inline case.v1 rubrics), `rubrics` (HealthBench rows) and
//! `rubric_items` (HealthBench Professional rows) hold criteria; a top-level array and
//! an `items` array hold items (job bodies, calibration sets). A string under a
//! `content` key is bounded by the body limit alone, not `max_string_bytes`: it is a
//! document in a string (a calibration set upload's JSONL, read line by line later) or
//! a conversation message, which may legitimately be long.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The bounds one document is read under (from the `server.*` limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `server.max_criteria_per_rubric`: elements of any criteria array.
    pub max_criteria: usize,
    /// `server.max_items_per_job`: elements of a top-level or `items` array.
    pub max_items: usize,
    /// `server.max_string_bytes`: bytes of any string (keys included), as decoded.
    pub max_string_bytes: usize,
    /// JSON values (scalars, arrays, objects) in the whole document; see `values_for`.
    pub max_values: usize,
}

impl Bounds {
    /// The value budget for a body limit: one JSON value per 16 bytes of
    /// `max_body_bytes` (at least 100,000). A `Value` costs 32 to ~100 bytes, so a
    /// document within it stays within a small multiple of the body limit, however
    /// small its values are (`[0,0,0,...]` would otherwise cost 16x its bytes).
    /// Real documents are far below it: a 500-criterion rubric is ~5,000 values.
    pub fn values_for(max_body_bytes: usize) -> usize {
        (max_body_bytes / 16).max(100_000)
    }
}

/// A bound the document broke; `Display` is the message for the caller, which names
/// the field, the count, the limit's config key and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overrun {
    Criteria {
        field: String,
        count: usize,
        limit: usize,
    },
    Items {
        field: String,
        count: usize,
        limit: usize,
    },
    String {
        field: String,
        bytes: usize,
        limit: usize,
    },
    Values {
        field: String,
        limit: usize,
    },
}

impl Overrun {
    /// The field path (`rubric.criteria`, `items[3].response`; empty for the document).
    pub fn field(&self) -> &str {
        match self {
            Overrun::Criteria { field, .. }
            | Overrun::Items { field, .. }
            | Overrun::String { field, .. }
            | Overrun::Values { field, .. } => field,
        }
    }

    /// Re-roots the path under `prefix` (`items[3]` + `rubric.criteria`).
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        let (Overrun::Criteria { field, .. }
        | Overrun::Items { field, .. }
        | Overrun::String { field, .. }
        | Overrun::Values { field, .. }) = &mut self;
        *field = super::FieldError::new(std::mem::take(field), "")
            .under(prefix)
            .field;
        self
    }

    /// What is too large, for `Error::TooLarge`.
    pub fn what(&self) -> &'static str {
        match self {
            Overrun::Criteria { .. } => "rubric",
            Overrun::Items { .. } => "job",
            Overrun::String { .. } => "string",
            Overrun::Values { .. } => "document",
        }
    }
}

impl fmt::Display for Overrun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |field: &str| {
            if field.is_empty() {
                "the document".to_owned()
            } else {
                field.to_owned()
            }
        };
        match self {
            Overrun::Criteria {
                field,
                count,
                limit,
            } => write!(
                f,
                "{}: {count} criteria exceed server.max_criteria_per_rubric = {limit}; split the rubric or raise the limit",
                at(field)
            ),
            Overrun::Items {
                field,
                count,
                limit,
            } => write!(
                f,
                "{}: {count} items exceed server.max_items_per_job = {limit}; split the job or raise the limit",
                at(field)
            ),
            Overrun::String {
                field,
                bytes,
                limit,
            } => write!(
                f,
                "{}: a string of {bytes} bytes exceeds server.max_string_bytes = {limit}; shorten it or raise the limit",
                at(field)
            ),
            Overrun::Values { field, limit } => write!(
                f,
                "{}: the document holds more than {limit} JSON values (one per 16 bytes of server.max_body_bytes); split it or raise server.max_body_bytes",
                at(field)
            ),
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Not JSON (the message is serde_json's, with line and column).
    Syntax(String),
    /// JSON, but over a bound: nothing was built.
    Overrun(Overrun),
}

/// Scans `bytes` under `bounds`, then (only if within them) parses it into a `Value`.
pub fn read(bytes: &[u8], bounds: &Bounds) -> Result<Value, ReadError> {
    check(bytes, bounds)?;
    serde_json::from_slice(bytes).map_err(|e| ReadError::Syntax(e.to_string()))
}

/// Scans `bytes` under `bounds` without building anything but counters and a path.
/// A syntax error is reported as such, unless a bound broke before it was reached.
pub fn check(bytes: &[u8], bounds: &Bounds) -> Result<(), ReadError> {
    let mut state = State {
        bounds: *bounds,
        values: 0,
        path: Vec::new(),
        overrun: None,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let scanned = Node {
        st: &mut state,
        role: Role::Root,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(o) = state.overrun {
        return Err(ReadError::Overrun(o));
    }
    scanned.map_err(|e| ReadError::Syntax(e.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Plain,
    Criteria,
    Items,
    /// A `content` value: a string here is not held to `max_string_bytes`.
    Content,
}

impl Role {
    fn of_key(key: &str) -> Role {
        match key {
            "criteria" | "rubrics" | "rubric_items" => Role::Criteria,
            "items" => Role::Items,
            "content" => Role::Content,
            _ => Role::Plain,
        }
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

struct State {
    bounds: Bounds,
    values: usize,
    path: Vec<Seg>,
    overrun: Option<Overrun>,
}

impl State {
    fn field(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// Records a bound broken and returns the error that stops the scan.
    fn stop<E: serde::de::Error>(&mut self, overrun: Overrun) -> E {
        let message = overrun.to_string();
        self.overrun = Some(overrun);
        E::custom(message)
    }

    fn count_value<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.values += 1;
        if self.values > self.bounds.max_values {
            let overrun = Overrun::Values {
                field: self.field(),
                limit: self.bounds.max_values,
            };
            return Err(self.stop(overrun));
        }
        Ok(())
    }

    fn count_string<E: serde::de::Error>(&mut self, len: usize) -> Result<(), E> {
        if len > self.bounds.max_string_bytes {
            let overrun = Overrun::String {
                field: self.field(),
                bytes: len,
                limit: self.bounds.max_string_bytes,
            };
            return Err(self.stop(overrun));
        }
        Ok(())
    }
}

/// One JSON value at the current path, in the role its key gives it.
struct Node<'s> {
    st: &'s mut State,
    role: Role,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.st.count_value()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.st.count_value()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.st.count_value()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.st.count_value()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.st.count_value()
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        self.st.count_value()?;
        if self.role == Role::Content {
            return Ok(());
        }
        self.st.count_string(s.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let st = self.st;
        st.count_value()?;
        let (limit, items) = match self.role {
            Role::Criteria => (st.bounds.max_criteria, false),
            Role::Items | Role::Root => (st.bounds.max_items, true),
            Role::Plain | Role::Content => (usize::MAX, false),
        };
        // A top-level array is a job's items: its elements are named `items[i]`, as
        // the service names them.
        let root = self.role == Role::Root;
        if root {
            st.path.push(Seg::Key("items".to_owned()));
        }
        let mut n = 0usize;
        let result = loop {
            if n >= limit {
                // Over the bound: count the rest without looking inside, so the
                // message can say how many there were, then stop.
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                if n == limit {
                    break Ok(());
                }
                let field = st.field();
                let overrun = if items {
                    Overrun::Items {
                        field,
                        count: n,
                        limit,
                    }
                } else {
                    Overrun::Criteria {
                        field,
                        count: n,
                        limit,
                    }
                };
                break Err(st.stop(overrun));
            }
            st.path.push(Seg::Index(n));
            let more = seq.next_element_seed(Node {
                st: &mut *st,
                role: Role::Plain,
            })?;
            st.path.pop();
            if more.is_none() {
                break Ok(());
            }
            n += 1;
        };
        if root {
            st.path.pop();
        }
        result
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.st;
        st.count_value()?;
        while let Some(key) = map.next_key_seed(Key { st: &mut *st })? {
            let role = Role::of_key(&key);
            st.path.push(Seg::Key(key));
            map.next_value_seed(Node { st: &mut *st, role })?;
            st.path.pop();
        }
        Ok(())
    }
}

/// An object key: its length is bounded like any string, then it joins the path.
struct Key<'s> {
    st: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<String, E> {
        if s.len() > self.st.bounds.max_string_bytes {
            let overrun = Overrun::String {
                field: self.st.field(),
                bytes: s.len(),
                limit: self.st.bounds.max_string_bytes,
            };
            return Err(self.st.stop(overrun));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_criteria: 3,
        max_items: 2,
        max_string_bytes: 12,
        max_values: 50,
    };

    #[track_caller]
    fn check_doc(doc: &str, expected: Result<(), Overrun>) {
        let got = match check(doc.as_bytes(), &B) {
            Ok(()) => Ok(()),
            Err(ReadError::Overrun(o)) => Err(o),
            Err(ReadError::Syntax(e)) => panic!("syntax error for {doc}: {e}"),
        };
        assert_eq!(got, expected, "doc: {doc}");
    }

    fn criteria(field: &str, count: usize) -> Result<(), Overrun> {
        Err(Overrun::Criteria {
            field: field.to_owned(),
            count,
            limit: 3,
        })
    }

    fn items(field: &str, count: usize) -> Result<(), Overrun> {
        Err(Overrun::Items {
            field: field.to_owned(),
            count,
            limit: 2,
        })
    }

    fn string(field: &str, bytes: usize) -> Result<(), Overrun> {
        Err(Overrun::String {
            field: field.to_owned(),
            bytes,
            limit: 12,
        })
    }

    #[test]
    fn bounds_table() {
        let cases: &[(&str, Result<(), Overrun>)] = &[
            (r#"{"criteria": [1, 2, 3]}"#, Ok(())),
            (r#"{"criteria": [1, 2, 3, 4, 5]}"#, criteria("criteria", 5)),
            // An inline case.v1 rubric: the path names where the array sits.
            (
                r#"{"rubric": {"id": "r", "criteria": [{}, {}, {}, {"text": "x"}]}}"#,
                criteria("rubric.criteria", 4),
            ),
            // HealthBench rows.
            (r#"{"rubrics": [{}, {}, {}, {}]}"#, criteria("rubrics", 4)),
            (
                r#"{"rubric_items": [{}, {}, {}, {}]}"#,
                criteria("rubric_items", 4),
            ),
            // Items: a top-level array, an `items` array; criteria inside an item.
            ("[{}, {}]", Ok(())),
            ("[{}, {}, {}]", items("items", 3)),
            (r#"{"items": [1, 2, 3]}"#, items("items", 3)),
            (
                r#"[{"rubric": {"criteria": [1, 2, 3, 4]}}]"#,
                criteria("items[0].rubric.criteria", 4),
            ),
            (
                r#"{"items": [{}, {"rubrics": [1, 2, 3, 4]}]}"#,
                criteria("items[1].rubrics", 4),
            ),
            // Other arrays are bounded only by the value budget.
            (r#"{"tags": [1, 2, 3, 4, 5, 6]}"#, Ok(())),
            // Strings: values and keys, measured decoded (an escape is one char).
            (r#"{"text": "0123456789ab"}"#, Ok(())),
            (r#"{"text": "0123456789abc"}"#, string("text", 13)),
            (
                r#"{"a": {"b": ["x", "0123456789abc"]}}"#,
                string("a.b[1]", 13),
            ),
            (r#"{"0123456789abc": 1}"#, string("", 13)),
            (r#"{"t": "\u0041\u0042"}"#, Ok(())),
            // `content` strings (a set upload's JSONL, a message) are exempt...
            (r#"{"content": "0123456789abcdef"}"#, Ok(())),
            (
                r#"{"conversation": [{"role": "user", "content": "0123456789abcdef"}]}"#,
                Ok(()),
            ),
            // ... but not strings inside a `content` array or object.
            (
                r#"{"content": ["0123456789abcdef"]}"#,
                string("content[0]", 16),
            ),
        ];
        for (doc, expected) in cases {
            check_doc(doc, expected.clone());
        }
    }

    #[test]
    fn the_value_budget_stops_many_small_values() {
        let doc = format!(r#"{{"pad": [{}]}}"#, vec!["0"; 60].join(","));
        match check(doc.as_bytes(), &B) {
            Err(ReadError::Overrun(Overrun::Values { field, limit: 50 })) => {
                assert_eq!(field, "pad[48]");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bound_is_reported_before_a_later_syntax_error() {
        // The criteria overrun is found first; the broken tail is never reached.
        let doc = r#"{"criteria": [1, 2, 3, 4], "x": "#;
        assert_eq!(
            check(doc.as_bytes(), &B),
            Err(ReadError::Overrun(Overrun::Criteria {
                field: "criteria".into(),
                count: 4,
                limit: 3
            }))
        );
        assert!(matches!(check(b"{\"a\": ", &B), Err(ReadError::Syntax(_))));
        assert!(matches!(check(b"{} {}", &B), Err(ReadError::Syntax(_))));
    }

    #[test]
    fn read_returns_the_document_within_bounds() {
        let doc = read(br#"{"criteria": [{"text": "a"}]}"#, &B).map_err(|e| format!("{e:?}"));
        assert_eq!(doc, Ok(serde_json::json!({"criteria": [{"text": "a"}]})));
    }

    #[test]
    fn messages_name_the_field_the_limit_and_the_fix() {
        let o = Overrun::Criteria {
            field: "rubric.criteria".into(),
            count: 1_300_000,
            limit: 500,
        };
        assert_eq!(
            o.to_string(),
            "rubric.criteria: 1300000 criteria exceed server.max_criteria_per_rubric = 500; split the rubric or raise the limit"
        );
        let s = Overrun::String {
            field: String::new(),
            bytes: 11,
            limit: 10,
        };
        assert!(
            s.to_string()
                .starts_with("the document: a string of 11 bytes")
        );
    }
}
