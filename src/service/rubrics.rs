//! Rubric versions: store, validate, read, list. Rubrics are shared by every team
//! (they hold criteria, not graded responses), so reads need only the role.

use serde_json::{Value, json};

use super::{Action, Caller, Service, to_value};
use crate::error::Error;
use crate::rubric::Invalid;
use crate::rubric::schema::parse_rubric;
use crate::store::RubricEntry;

impl Service {
    /// Validates and stores a rubric version; `created` is false when identical
    /// content was already stored under that version.
    pub async fn create_rubric(
        &self,
        caller: &Caller,
        doc: &Value,
    ) -> Result<(Value, bool), Error> {
        caller.require(Action::WriteRubrics)?;
        let rubric = parse_rubric(doc)?;
        self.check_criteria(rubric.criteria.len(), "criteria")?;
        let created = self.store.put_rubric(&rubric).await?;
        Ok((to_value(&rubric.to_raw())?, created))
    }

    /// `Err(Error::Invalid)` carries the problems; other errors are the caller's.
    pub fn validate_rubric(
        &self,
        caller: &Caller,
        doc: &Value,
    ) -> Result<Result<Value, Invalid>, Error> {
        caller.require(Action::ReadRubrics)?;
        Ok(match parse_rubric(doc) {
            Ok(rubric) => Ok(to_value(&rubric.to_raw())?),
            Err(inv) => Err(inv),
        })
    }

    pub async fn rubric(
        &self,
        caller: &Caller,
        id: &str,
        version: Option<u32>,
    ) -> Result<Value, Error> {
        caller.require(Action::ReadRubrics)?;
        let r = self
            .store
            .get_rubric(id, version)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "rubric",
                name: version.map_or_else(|| id.to_owned(), |v| format!("{id}@{v}")),
            })?;
        to_value(&r.to_raw())
    }

    pub async fn rubrics(&self, caller: &Caller) -> Result<Value, Error> {
        caller.require(Action::ReadRubrics)?;
        Ok(
            json!({"rubrics": self.store.list_rubrics().await?.iter().map(entry_json).collect::<Vec<_>>()}),
        )
    }

    pub async fn rubric_versions(&self, caller: &Caller, id: &str) -> Result<Value, Error> {
        caller.require(Action::ReadRubrics)?;
        let versions = self.store.rubric_versions(id).await?;
        if versions.is_empty() {
            return Err(Error::NotFound {
                what: "rubric",
                name: id.to_owned(),
            });
        }
        Ok(json!({"id": id, "versions": versions.iter().map(entry_json).collect::<Vec<_>>()}))
    }
}

fn entry_json(e: &RubricEntry) -> Value {
    json!({"id": e.id, "version": e.version, "title": e.title, "criteria": e.criteria, "created_at": e.created_at})
}
