//! Verdict scales: what a judge (or a human label) says about one criterion.
//! Pure value types; parsing model text into a `Verdict` lives in `judge::parse`.

use std::fmt;

/// Credit on a positive QuarkMed tier: 0, 0.5 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credit {
    None,
    Partial,
    Full,
}

/// Severity of a pitfall: none, minor or major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    None,
    Minor,
    Major,
}

/// The outcome for one criterion. An abstention is not a verdict: it is modelled as
/// `Option<Verdict>::None` by callers, so it can never be mistaken for met / not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Met(bool),
    Credit(Credit),
    Severity(Severity),
}

impl Verdict {
    /// How much of the criterion's behaviour is present, in [0, 1].
    pub fn presence(self) -> f64 {
        match self {
            Verdict::Met(true) => 1.0,
            Verdict::Met(false) => 0.0,
            Verdict::Credit(Credit::None) | Verdict::Severity(Severity::None) => 0.0,
            Verdict::Credit(Credit::Partial) | Verdict::Severity(Severity::Minor) => 0.5,
            Verdict::Credit(Credit::Full) | Verdict::Severity(Severity::Major) => 1.0,
        }
    }

    /// Reads the JSON forms accepted in input files and judge answers:
    /// `true`/`false`, `0`/`0.5`/`1`, `"none"`/`"minor"`/`"major"`, and
    /// `"met"`/`"not_met"`. `null` is not a verdict (the caller treats it as an abstention).
    pub fn from_json(v: &serde_json::Value) -> Result<Verdict, String> {
        use serde_json::Value;
        match v {
            Value::Bool(b) => Ok(Verdict::Met(*b)),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Ok(Verdict::Credit(Credit::None)),
                Some(0.5) => Ok(Verdict::Credit(Credit::Partial)),
                Some(1.0) => Ok(Verdict::Credit(Credit::Full)),
                _ => Err(format!("{n} is not a credit; use 0, 0.5 or 1")),
            },
            Value::String(s) => match s.as_str() {
                "none" => Ok(Verdict::Severity(Severity::None)),
                "minor" => Ok(Verdict::Severity(Severity::Minor)),
                "major" => Ok(Verdict::Severity(Severity::Major)),
                "met" => Ok(Verdict::Met(true)),
                "not_met" => Ok(Verdict::Met(false)),
                other => Err(format!(
                    "\"{other}\" is not a verdict; use true/false, 0/0.5/1 or \"none\"/\"minor\"/\"major\""
                )),
            },
            other => Err(format!(
                "{} is not a verdict; use true/false, 0/0.5/1, \"none\"/\"minor\"/\"major\", or null for an abstention",
                json_kind(other)
            )),
        }
    }

    /// The canonical JSON form (inverse of `from_json`).
    pub fn to_json(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Verdict::Met(b) => json!(b),
            Verdict::Credit(Credit::None) => json!(0.0),
            Verdict::Credit(Credit::Partial) => json!(0.5),
            Verdict::Credit(Credit::Full) => json!(1.0),
            Verdict::Severity(Severity::None) => json!("none"),
            Verdict::Severity(Severity::Minor) => json!("minor"),
            Verdict::Severity(Severity::Major) => json!("major"),
        }
    }

    pub fn describe(self) -> String {
        self.to_string()
    }
}

/// Written and read in the canonical JSON form (`to_json` / `from_json`), so
/// `grade_report.v1` carries verdicts exactly as input files and judges spell them.
impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.to_json(), s)
    }
}

impl<'de> serde::Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
        Verdict::from_json(&v).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Verdict {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some("met / not met")),
            )
            .item(
                // 0, 0.5 or 1; stated as a range because client generators (such as
                // openapi-python-client) cannot read numeric enums.
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0))
                    .maximum(Some(1.0))
                    .description(Some("credit on a positive tier: 0, 0.5 or 1")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["none", "minor", "major"]))
                    .description(Some("severity of a pitfall")),
            )
            .into()
    }
}

impl utoipa::ToSchema for Verdict {}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Met(true) => f.write_str("met"),
            Verdict::Met(false) => f.write_str("not met"),
            Verdict::Credit(Credit::None) => f.write_str("credit 0"),
            Verdict::Credit(Credit::Partial) => f.write_str("credit 0.5"),
            Verdict::Credit(Credit::Full) => f.write_str("credit 1"),
            Verdict::Severity(Severity::None) => f.write_str("severity none"),
            Verdict::Severity(Severity::Minor) => f.write_str("severity minor"),
            Verdict::Severity(Severity::Major) => f.write_str("severity major"),
        }
    }
}

pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip() {
        for v in [
            Verdict::Met(true),
            Verdict::Met(false),
            Verdict::Credit(Credit::None),
            Verdict::Credit(Credit::Partial),
            Verdict::Credit(Credit::Full),
            Verdict::Severity(Severity::None),
            Verdict::Severity(Severity::Minor),
            Verdict::Severity(Severity::Major),
        ] {
            assert_eq!(Verdict::from_json(&v.to_json()), Ok(v));
        }
    }

    #[test]
    fn rejects_off_scale_values() {
        for bad in [json!(0.7), json!("maybe"), json!([true]), json!({})] {
            assert!(Verdict::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_writes_and_reads_the_canonical_form() {
        for (v, text) in [
            (Verdict::Met(true), "true"),
            (Verdict::Met(false), "false"),
            (Verdict::Credit(Credit::None), "0.0"),
            (Verdict::Credit(Credit::Partial), "0.5"),
            (Verdict::Credit(Credit::Full), "1.0"),
            (Verdict::Severity(Severity::None), "\"none\""),
            (Verdict::Severity(Severity::Minor), "\"minor\""),
            (Verdict::Severity(Severity::Major), "\"major\""),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), text, "{v:?}");
            assert_eq!(serde_json::from_str::<Verdict>(text).unwrap(), v, "{text}");
        }
        assert!(serde_json::from_str::<Verdict>("0.7").is_err());
    }
}
