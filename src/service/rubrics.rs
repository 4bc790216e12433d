//! Rubric versions: store, validate, read, list. Rubrics are shared by every team
//! (they hold criteria, not graded responses), so reads need only the role.

use serde_json::Value;

use super::{Action, Caller, Service};
use crate::error::Error;
use crate::rubric::bounded::{Bounds, Overrun};
use crate::rubric::schema::parse_rubric;
use crate::rubric::{Invalid, RawRubric};
use crate::store::RubricEntry;

/// The answer of a rubric check.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RubricValidation {
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// The rubric in canonical form (derived criterion ids filled in), when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rubric: Option<RawRubric>,
}

/// One problem, at a field path such as `criteria[2].points`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Service {
    /// The bounds every JSON request document is scanned under before it is parsed
    /// (`rubric::bounded`): the transports read bodies through them, and the job
    /// intake reads each item line through them.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_criteria: self.limits.max_criteria_per_rubric,
            max_items: self.limits.max_items_per_job,
            max_string_bytes: self.limits.max_string_bytes,
            max_values: Bounds::values_for(self.limits.max_body_bytes),
        }
    }

    /// Validates and stores a rubric version; `created` is false when identical
    /// content was already stored under that version.
    pub async fn create_rubric(
        &self,
        caller: &Caller,
        doc: &Value,
    ) -> Result<(RawRubric, bool), Error> {
        caller.require(Action::WriteRubrics)?;
        let rubric = parse_rubric(doc)?;
        self.check_criteria(rubric.criteria.len(), "criteria")?;
        let created = self.store.put_rubric(&rubric).await?;
        Ok((rubric.to_raw(), created))
    }

    /// Checks a document as a rubric.v1 without storing it: an invalid rubric is an
    /// answer (its problems), not an error.
    pub fn validate_rubric(&self, caller: &Caller, doc: &Value) -> Result<RubricValidation, Error> {
        caller.require(Action::ReadRubrics)?;
        Ok(match parse_rubric(doc) {
            Ok(rubric) if rubric.criteria.len() > self.limits.max_criteria_per_rubric => {
                return Err(Overrun::Criteria {
                    field: "criteria".to_owned(),
                    count: rubric.criteria.len(),
                    limit: self.limits.max_criteria_per_rubric,
                }
                .into());
            }
            Ok(rubric) => RubricValidation {
                valid: true,
                problems: Vec::new(),
                rubric: Some(rubric.to_raw()),
            },
            Err(Invalid(problems)) => RubricValidation {
                valid: false,
                problems: problems
                    .into_iter()
                    .map(|p| Problem {
                        field: p.field,
                        message: p.message,
                    })
                    .collect(),
                rubric: None,
            },
        })
    }

    pub async fn rubric(
        &self,
        caller: &Caller,
        id: &str,
        version: Option<u32>,
    ) -> Result<RawRubric, Error> {
        caller.require(Action::ReadRubrics)?;
        let r = self
            .store
            .get_rubric(id, version)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "rubric",
                name: version.map_or_else(|| id.to_owned(), |v| format!("{id}@{v}")),
            })?;
        Ok(r.to_raw())
    }

    pub async fn rubrics(&self, caller: &Caller) -> Result<RubricList, Error> {
        caller.require(Action::ReadRubrics)?;
        Ok(RubricList {
            rubrics: self.store.list_rubrics().await?.iter().map(entry).collect(),
        })
    }

    pub async fn rubric_versions(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<RubricVersions, Error> {
        caller.require(Action::ReadRubrics)?;
        let versions = self.store.rubric_versions(id).await?;
        if versions.is_empty() {
            return Err(Error::NotFound {
                what: "rubric",
                name: id.to_owned(),
            });
        }
        Ok(RubricVersions {
            id: id.to_owned(),
            versions: versions.iter().map(entry).collect(),
        })
    }
}

/// A document over a bound is refused as too large, naming the field and the limit.
impl From<Overrun> for Error {
    fn from(o: Overrun) -> Self {
        let field = o.field();
        Error::TooLarge {
            what: o.what(),
            field: (!field.is_empty()).then(|| field.to_owned()),
            detail: o.to_string(),
        }
    }
}

fn entry(e: &RubricEntry) -> RubricSummary {
    RubricSummary {
        id: e.id.clone(),
        version: e.version,
        title: e.title.clone(),
        criteria: e.criteria,
        created_at: e.created_at,
    }
}

/// A stored rubric version, summarised.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RubricSummary {
    pub id: String,
    pub version: u32,
    pub title: String,
    /// Number of criteria.
    pub criteria: usize,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The latest version of every stored rubric.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RubricList {
    pub rubrics: Vec<RubricSummary>,
}

/// Every stored version of one rubric, oldest first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RubricVersions {
    pub id: String,
    pub versions: Vec<RubricSummary>,
}
