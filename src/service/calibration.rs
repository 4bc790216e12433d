//! Calibration sets, labels (with their history), runs and disagreements as callers
//! see them. A set belongs to the key that uploaded it and a run to the key that
//! started it; annotators and admins see every set and run, a client only its own
//! (another's is `not_found`). Must not compute statistics (that is `calibration`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::auth::ListFilter;
use super::{Action, Caller, Owned, Service, corrupt, invalid};
use crate::calibration::report::AgreementReport;
use crate::calibration::set::NewLabel;
use crate::calibration::{CalibrationSet, LabelValue, RaterKind};
use crate::error::Error;
use crate::item::RubricSource;
use crate::rubric::{FieldError, Invalid};
use crate::store::{
    CalibrationRunRecord, CalibrationSetRecord, Finished, LabelEvent, LabelRow, LabelsStored,
    now_ms,
};

/// Largest bootstrap a calibration run may ask for (CPU per report).
const MAX_RESAMPLES: usize = 10_000;

/// The text formats a set can be uploaded in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
pub enum SetFormat {
    #[default]
    #[serde(rename = "calibration.v1")]
    CalibrationV1,
    #[serde(rename = "kqa")]
    Kqa,
    #[serde(rename = "healthbench-meta")]
    HealthbenchMeta,
    #[serde(rename = "csv")]
    Csv,
}

/// `POST /v1/calibration/sets`: a set's text and how to read it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCalibrationSet {
    /// Default `calibration.v1`.
    #[serde(default)]
    pub format: SetFormat,
    /// The set's text: JSONL (calibration.v1, healthbench-meta) or CSV (kqa, csv).
    pub content: String,
    /// Replaces the name the content gives; unique across the server.
    #[serde(default)]
    #[schema(pattern = r"\S")]
    pub name: Option<String>,
    /// The column mapping, for `format: csv` (required there).
    #[serde(default)]
    pub csv: Option<CsvUpload>,
}

/// What to do with a set file sent as it is where the `{"format", "content"}`
/// document was expected.
pub const UNWRAPPED_SET_HINT: &str = "this looks like a calibration file as it is on disk (JSON Lines); send it as it is with content-type: application/x-ndjson (HTTP; the name comes from its header or ?name=), or wrap it: {\"format\": \"calibration.v1\", \"content\": \"<the file's text>\"}";

/// Whether `text`, sent where a [`NewCalibrationSet`] document was expected, is a
/// set file as it is: its first line is a JSON object without `content` (a
/// calibration.v1 header or an item), so the upload needs the hint, not only the
/// JSON error.
pub fn is_unwrapped_set_file(text: &str) -> bool {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return false;
    };
    matches!(
        serde_json::from_str::<Value>(first),
        Ok(Value::Object(o)) if !o.contains_key("content")
    )
}

/// Measurement scales of a set.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ScaleName {
    Nominal,
    Ordinal,
    Interval,
}

/// How to read a generic CSV upload.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvUpload {
    /// Column mapping such as `id=row,human:alice=label_a,judge:gpt=label_g`.
    pub map: String,
    #[serde(default)]
    pub scale: Option<ScaleName>,
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    #[serde(default)]
    pub met: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/calibration/runs`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCalibrationRun {
    /// The id of a stored calibration set.
    pub set: String,
    /// Bootstrap seed (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Bootstrap resamples for confidence intervals (default 1000).
    #[serde(default)]
    #[schema(maximum = 10000)]
    pub resamples: Option<u32>,
    /// Confidence level of the intervals (default 0.95).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1)]
    pub confidence: Option<f64>,
    /// The fewest items two humans must both have labelled for their pair to count in
    /// the human band (default: the set's `min_pair_items`, else 20).
    #[serde(default)]
    pub min_pair_items: Option<u32>,
}

/// `POST /v1/calibration/sets/{id}/labels` (decoded by `parse_new_labels`, which
/// reports every problem at once).
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub struct NewLabels {
    #[schema(min_items = 1)]
    labels: Vec<NewLabelSchema>,
}

#[derive(utoipa::ToSchema)]
#[schema(as = NewLabel)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
struct NewLabelSchema {
    /// The item's id in the set.
    item: String,
    /// The rater: for a human label the caller's own key name (`local` without
    /// keys; only an admin may name another rater, an import the label history
    /// records as `imported_by`); for a judge label the judge's name (admins and the
    /// set's owner only).
    rater: String,
    kind: RaterKindName,
    /// A category name, `true`/`false` for binary sets, or a number on interval scales.
    value: Value,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
enum RaterKindName {
    Human,
    Judge,
}

/// A stored calibration set. Listings leave out the fields read from its document
/// (`scale` to `runnable_items`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CalibrationSetDoc {
    pub id: String,
    pub name: String,
    /// The API key that uploaded it; null without auth.
    pub owner: Option<String>,
    pub items: u64,
    pub labels: u64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// The category that means "criterion met" in binary sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raters: Option<Raters>,
    /// Items with a task (conversation, response, criterion) a live run can judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runnable_items: Option<usize>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Raters {
    pub humans: Vec<String>,
    pub judges: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CalibrationSetList {
    pub sets: Vec<CalibrationSetDoc>,
}

/// What a label write changed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LabelsWritten {
    /// Labels new to the set.
    pub added: usize,
    /// Labels that corrected an earlier label of the same rater and kind.
    pub replaced: usize,
    pub set: CalibrationSetDoc,
}

/// What an undo changed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LabelUndone {
    /// The label write that was undone.
    pub undone: LabelEvent,
    /// The history entry the undo wrote: `value` is the label restored, null when the
    /// undone write had added it (the label is removed); `previous` is the undone value.
    pub event: LabelEvent,
    pub set: CalibrationSetDoc,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LabelHistory {
    pub set: String,
    pub item: Option<String>,
    pub history: Vec<LabelEvent>,
}

/// A calibration run: its job and, once finished, the agreement report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CalibrationRunDoc {
    pub id: String,
    /// The set's id.
    pub set: String,
    pub owner: Option<String>,
    pub state: crate::store::JobState,
    pub job: super::JobStatus,
    pub finished_at: Option<i64>,
    /// The agreement report (see calibration/README.md); null until the run finishes.
    pub report: Option<crate::calibration::report::AgreementReport>,
}

/// One item where the committee or a judge differs from the human majority.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Disagreement {
    pub seq: u64,
    pub item: String,
    pub category: Option<String>,
    pub criterion: Option<String>,
    pub response: Option<String>,
    pub human_majority: Option<String>,
    pub humans: Vec<HumanLabel>,
    pub committee: Option<String>,
    pub judges: Vec<JudgeReading>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HumanLabel {
    pub rater: String,
    pub label: Value,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JudgeReading {
    pub judge: String,
    pub label: Option<String>,
    pub agrees: Option<bool>,
    pub explanations: Vec<String>,
}

/// A page of disagreements, in item order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Disagreements {
    pub run: String,
    /// The set's categories were reduced to met / not met for the judges.
    pub binarized: bool,
    pub items: Vec<Disagreement>,
    /// Cursor (`after`) for the next page; null on the last.
    pub next: Option<u64>,
}

/// Importer errors (`line N: field: message`) as field errors under `field`.
fn errors_under(field: &str, errors: Vec<String>) -> Error {
    Error::Invalid(Invalid(
        errors
            .into_iter()
            .map(|e| FieldError::new(field, e))
            .collect(),
    ))
}

fn set_doc(rec: &CalibrationSetRecord, set: Option<&CalibrationSet>) -> CalibrationSetDoc {
    use crate::calibration::Scale;
    CalibrationSetDoc {
        id: rec.id.clone(),
        name: rec.name.clone(),
        owner: rec.owner.clone(),
        items: rec.items,
        labels: rec.labels,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        scale: set.map(|s| match s.scale {
            Scale::Nominal => ScaleName::Nominal,
            Scale::Ordinal => ScaleName::Ordinal,
            Scale::Interval => ScaleName::Interval,
        }),
        categories: set.map(|s| s.categories.clone()),
        met: set.and_then(|s| s.met.clone()),
        raters: set.map(|s| Raters {
            humans: s.raters(RaterKind::Human),
            judges: s.raters(RaterKind::Judge),
        }),
        runnable_items: set.map(|s| s.items.iter().filter(|i| i.task.is_some()).count()),
    }
}

/// A label's value as the API shows it: the category's name, or the number.
fn label_value_json(set: &CalibrationSet, v: &LabelValue) -> Value {
    match v {
        LabelValue::Category(c) => set
            .categories
            .get(*c)
            .map_or(Value::Null, |n| Value::from(n.as_str())),
        LabelValue::Number(x) => json!(x),
    }
}

/// Item positions by id, so each label finds its item without a scan of the set.
fn item_index(set: &CalibrationSet) -> std::collections::HashMap<String, usize> {
    set.items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.clone(), i))
        .collect()
}

/// The current value of `(item, rater, kind)` in a set, as the API shows it.
fn current_label(
    set: &CalibrationSet,
    index: &std::collections::HashMap<String, usize>,
    l: &NewLabel,
) -> Option<Value> {
    let item = set.items.get(*index.get(&l.item)?)?;
    let label = item
        .labels
        .iter()
        .find(|x| x.rater == l.rater && x.kind == l.kind)?;
    Some(label_value_json(set, &label.value))
}

fn run_not_found(id: &str) -> Error {
    Error::NotFound {
        what: "calibration run",
        name: id.to_owned(),
    }
}

impl Service {
    /// Uploads a set; it is stored as calibration.v1.
    pub async fn create_calibration_set(
        &self,
        caller: &Caller,
        new: &NewCalibrationSet,
    ) -> Result<CalibrationSetDoc, Error> {
        use crate::calibration::set;
        caller.require(Action::CreateCalibrationSet)?;
        let content = new.content.as_str();
        let mut parsed = match new.format {
            SetFormat::CalibrationV1 => set::parse_set(content),
            SetFormat::Kqa => set::import_kqa(content),
            SetFormat::HealthbenchMeta => set::import_healthbench_meta(content),
            SetFormat::Csv => {
                let Some(csv) = &new.csv else {
                    return Err(invalid(
                        "csv",
                        "missing: a CSV upload needs {\"map\": \"id=row,human:alice=label_a,...\"}",
                    ));
                };
                set::import_csv(content, &csv_mapping(csv)?)
            }
        }
        .map_err(|e| errors_under("content", e))?;
        // A set without items could be stored but not read back as calibration.v1.
        if parsed.items.is_empty() {
            return Err(invalid(
                "content",
                "the set has no items; send at least one item (one JSONL line or CSV row after the header)",
            ));
        }
        // One rule for names (`names`): the given name, else the content's, in its
        // normal form (NFC, trimmed), which is also what uniqueness is checked on.
        let field = if new.name.is_some() {
            "name"
        } else {
            "content.name"
        };
        parsed.name = crate::names::name(new.name.as_deref().unwrap_or(&parsed.name))
            .map_err(|e| invalid(field, e))?;
        // Set names are unique across owners (people pick sets by name). The conflict
        // names no id another owner could then read.
        let _guard = self.calibration_lock.lock().await;
        if let Some(other) = self
            .store
            .list_calibration_sets(None)
            .await?
            .into_iter()
            .find(|s| crate::names::normal_form(&s.name) == parsed.name)
        {
            let whose = if caller.sees(Owned::Calibration, other.owner.as_deref()) {
                format!(" (id {})", other.id)
            } else {
                String::new()
            };
            return Err(Error::Conflict(format!(
                "a calibration set named \"{}\" exists{whose}; pass another `name` (set names are unique)",
                other.name
            )));
        }
        let now = now_ms();
        // Labels are stored as rows, the document holds the items only. A repeated
        // (item, rater, kind) keeps its first label, the one agreement counts.
        let mut seen = std::collections::HashSet::new();
        let labels: Vec<_> = parsed
            .take_labels()
            .into_iter()
            .filter(|(i, l)| seen.insert((*i, l.rater.clone(), l.kind)))
            .collect();
        let rows: Vec<LabelRow> = labels
            .iter()
            .map(|(i, l)| LabelRow {
                item: parsed.items[*i].id.clone(),
                rater: l.rater.clone(),
                kind: l.kind.as_str().to_owned(),
                value: label_value_json(&parsed, &l.value),
            })
            .collect();
        let document = parsed.to_jsonl();
        for (i, l) in labels {
            parsed.items[i].labels.push(l);
        }
        let rec = CalibrationSetRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: parsed.name.clone(),
            owner: caller.owner().map(str::to_owned),
            document,
            items: parsed.items.len() as u64,
            labels: rows.len() as u64,
            created_at: now,
            updated_at: now,
        };
        self.store.put_calibration_set(&rec, &rows).await?;
        Ok(set_doc(&rec, Some(&parsed)))
    }

    /// A stored set the caller may see, parsed, with its label version. The parse is
    /// kept (`SetCache`) and reused while the version is unchanged, so a page of a
    /// large set costs one small read, not a parse of its whole document.
    async fn stored_set(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(CalibrationSetRecord, Arc<CachedSet>, u64), Error> {
        let missing = || Error::NotFound {
            what: "calibration set",
            name: id.to_owned(),
        };
        let (rec, version) = self
            .store
            .calibration_set_version(id)
            .await?
            .ok_or_else(missing)?;
        if !caller.sees(Owned::Calibration, rec.owner.as_deref()) {
            return Err(missing());
        }
        if let Some(set) = self.calibration_cache.set(id, version) {
            return Ok((rec, set, version));
        }
        let (_, set) = crate::calibration::run::stored_set(self.store.as_ref(), id)
            .await?
            .ok_or_else(missing)?;
        // The document and labels were read after the version, so it is at least that new: kept
        // under `version`, it can only be newer than a reader expects, never older.
        let set = Arc::new(CachedSet::new(set));
        self.calibration_cache.put_set(id, version, set.clone());
        Ok((rec, set, version))
    }

    pub async fn calibration_set(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CalibrationSetDoc, Error> {
        caller.require(Action::ReadCalibration)?;
        let (rec, set, _) = self.stored_set(caller, id).await?;
        Ok(cached_set_doc(&rec, &set))
    }

    /// The caller's sets (annotators and admins: every set, or `owner`'s).
    pub async fn calibration_sets(
        &self,
        caller: &Caller,
        owner: Option<&str>,
    ) -> Result<CalibrationSetList, Error> {
        caller.require(Action::ReadCalibration)?;
        let sets = match caller.list_filter(Owned::Calibration, owner) {
            ListFilter::Nothing => Vec::new(),
            ListFilter::All => self.store.list_calibration_sets(None).await?,
            ListFilter::Owner(o) => self.store.list_calibration_sets(Some(o)).await?,
        };
        Ok(CalibrationSetList {
            sets: sets.iter().map(|s| set_doc(s, None)).collect(),
        })
    }

    /// Adds (or corrects) labels: `{"labels": [{"item", "rater", "kind", "value"}]}`.
    /// All or nothing: one invalid label changes nothing. Each write is kept in the
    /// set's label history with its author, time and the value it replaced. Who may
    /// write which label is `label_writers`. Each label is one row: the set's document
    /// is not rewritten, and only writers to the same set wait for each other.
    pub async fn add_calibration_labels(
        &self,
        caller: &Caller,
        id: &str,
        doc: &Value,
    ) -> Result<LabelsWritten, Error> {
        use crate::calibration::set::parse_new_labels;
        caller.require(Action::AddLabels)?;
        let labels = parse_new_labels(doc).map_err(|e| errors_under("labels", e))?;
        let _guard = self.label_locks.lock(id).await;
        let (rec, cached, version) = self.stored_set(caller, id).await?;
        let imported_by = label_writers(caller, rec.owner.as_deref(), &labels)?;
        let valid = cached
            .set
            .check_labels_in(&labels, |id| cached.index.get(id).copied())
            .map_err(|e| errors_under("labels", e))?;
        let at = now_ms();
        let history: Vec<LabelEvent> = labels
            .iter()
            .zip(&valid)
            .zip(imported_by)
            .map(|((l, (_, label)), imported_by)| LabelEvent {
                item: l.item.clone(),
                rater: l.rater.clone(),
                kind: l.kind.as_str().to_owned(),
                value: label_value_json(&cached.set, &label.value),
                // The store fills in the value each write replaced.
                previous: None,
                author: caller.owner().map(str::to_owned),
                imported_by,
                at,
            })
            .collect();
        let stored = self
            .store
            .write_calibration_labels(id, &history, None)
            .await?;
        let raters: Vec<(usize, String, RaterKind)> = valid
            .iter()
            .map(|(i, l)| (*i, l.rater.clone(), l.kind))
            .collect();
        let touched: Vec<(usize, &str, RaterKind)> = raters
            .iter()
            .map(|(i, r, k)| (*i, r.as_str(), *k))
            .collect();
        let set = self
            .relabel_kept_set(id, cached, version, &stored, &touched, |s| {
                s.apply_labels(valid);
            })
            .await?;
        Ok(LabelsWritten {
            added: usize::try_from(stored.added).unwrap_or(usize::MAX),
            replaced: usize::try_from(stored.replaced).unwrap_or(usize::MAX),
            set: cached_set_doc(&stored_rec(rec, &stored, at), &set),
        })
    }

    /// Undoes the caller's newest label write on a set that is not undone yet: the
    /// label gets back the value it replaced, or is removed when that write added it.
    /// The undo is a history entry like any write (who, when, old and new value) that
    /// also names the write it undoes, so a second undo goes one write further back.
    /// Same rules as adding labels: the `AddLabels` action on a set the caller sees,
    /// and only the caller's own writes.
    pub async fn undo_calibration_label(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<LabelUndone, Error> {
        caller.require(Action::AddLabels)?;
        let _guard = self.label_locks.lock(id).await;
        let (rec, cached, version) = self.stored_set(caller, id).await?;
        let Some((n, undone)) = self.store.last_undoable_label(id, caller.owner()).await? else {
            return Err(Error::Conflict(format!(
                "nothing to undo: {} has no label write on this set that is not undone yet",
                rater_name(caller)
            )));
        };
        let kind = RaterKind::parse(&undone.kind).ok_or_else(|| {
            corrupt(
                format_args!("label history of set {id}"),
                format!("rater kind {:?}", undone.kind),
            )
        })?;
        let key = NewLabel {
            item: undone.item.clone(),
            rater: undone.rater.clone(),
            kind,
            value: Value::Null,
        };
        // Someone (an admin, or another write under the same rater) may have changed
        // the label since: undoing would then silently drop their value.
        let now = current_label(&cached.set, &cached.index, &key);
        if now.as_ref() != Some(&undone.value) {
            return Err(Error::Conflict(format!(
                "the label of item \"{}\" by {} was changed after that write (it is now {}); write the label you want instead",
                undone.item,
                undone.rater,
                now.map_or_else(|| "removed".to_owned(), |v| v.to_string())
            )));
        }
        let item = cached.index.get(&undone.item).copied().ok_or_else(|| {
            corrupt(
                format_args!("label history of set {id}"),
                format!("item {:?} is not in the set", undone.item),
            )
        })?;
        let restore = match &undone.previous {
            Some(previous) => Some(
                crate::calibration::set::label_value(
                    cached.set.scale,
                    &cached.set.categories,
                    previous,
                )
                .map_err(|e| corrupt(format_args!("label history of set {id}"), e))?,
            ),
            None => None,
        };
        let at = now_ms();
        let event = LabelEvent {
            item: undone.item.clone(),
            rater: undone.rater.clone(),
            kind: undone.kind.clone(),
            value: undone.previous.clone().unwrap_or(Value::Null),
            previous: Some(undone.value.clone()),
            author: caller.owner().map(str::to_owned),
            imported_by: (kind == RaterKind::Human && undone.rater != rater_name(caller))
                .then(|| rater_name(caller)),
            at,
        };
        let stored = self
            .store
            .write_calibration_labels(id, std::slice::from_ref(&event), Some(n))
            .await?;
        let rater = undone.rater.clone();
        let touched = [(item, undone.rater.as_str(), kind)];
        let set = self
            .relabel_kept_set(id, cached, version, &stored, &touched, |s| match restore {
                Some(value) => {
                    s.apply_labels(vec![(
                        item,
                        crate::calibration::Label { rater, kind, value },
                    )]);
                }
                None => s.remove_label(item, &rater, kind),
            })
            .await?;
        Ok(LabelUndone {
            undone,
            event,
            set: cached_set_doc(&stored_rec(rec, &stored, at), &set),
        })
    }

    /// The set after a label write of `events` history entries: the kept parse
    /// (`cached`, at label version `version`) changed by `apply` in place when the
    /// write came right after that version (no copy when nobody else holds it), and
    /// kept under the new version; otherwise (another replica wrote in between) the
    /// set read again.
    async fn relabel_kept_set(
        &self,
        id: &str,
        cached: Arc<CachedSet>,
        version: u64,
        stored: &LabelsStored,
        touched: &[(usize, &str, RaterKind)],
        apply: impl FnOnce(&mut CalibrationSet),
    ) -> Result<Arc<CachedSet>, Error> {
        if stored.first != version {
            drop(cached);
            // The writer already passed the visibility check.
            let (_, set, _) = self.stored_set(&Caller::local_admin(), id).await?;
            return Ok(set);
        }
        let cached = match self.calibration_cache.take_set(id, version) {
            Some(kept) => {
                drop(cached);
                kept
            }
            None => cached,
        };
        let mut set = Arc::try_unwrap(cached).unwrap_or_else(|shared| (*shared).clone());
        let had: Vec<bool> = touched
            .iter()
            .map(|&(i, rater, _)| {
                set.set
                    .items
                    .get(i)
                    .is_some_and(|it| labelled_by(it, rater))
            })
            .collect();
        apply(&mut set.set);
        set.relabelled(touched, &had);
        let set = Arc::new(set);
        self.calibration_cache
            .put_set(id, version + touched.len() as u64, set.clone());
        Ok(set)
    }

    /// Every label written to a set through the API (one item's, when given), oldest
    /// first: who wrote it, when, and the value it replaced.
    pub async fn label_history(
        &self,
        caller: &Caller,
        id: &str,
        item: Option<&str>,
    ) -> Result<LabelHistory, Error> {
        caller.require(Action::ReadCalibration)?;
        let (rec, cached, _) = self.stored_set(caller, id).await?;
        let set = &cached.set;
        if let Some(item) = item {
            if !cached.index.contains_key(item) {
                return Err(invalid(
                    "item",
                    format!("no item \"{item}\" in set \"{}\"", set.name),
                ));
            }
        }
        let mut events = self.store.label_history(id, item).await?;
        if !sees_all_labels(caller, rec.owner.as_deref()) {
            // Blind: other raters' writes only on items the caller has labelled.
            let me = rater_name(caller);
            events.retain(|e| {
                e.author.as_deref() == caller.owner()
                    || cached
                        .index
                        .get(&e.item)
                        .is_some_and(|&i| labelled_by(&set.items[i], &me))
            });
        }
        Ok(LabelHistory {
            set: id.to_owned(),
            item: item.map(str::to_owned),
            history: events,
        })
    }

    /// Starts a calibration run over a stored set. The run is a job; its report is
    /// written when the job finishes.
    pub async fn start_calibration_run(
        &self,
        caller: &Caller,
        new: &NewCalibrationRun,
    ) -> Result<CalibrationRunDoc, Error> {
        use crate::calibration::{ReportOptions, live, run::RunOptions};
        caller.require(Action::StartCalibrationRun)?;
        let set_id = new.set.as_str();
        let defaults = ReportOptions::default();
        let seed = new.seed.unwrap_or(defaults.seed);
        let resamples = match new.resamples {
            None => defaults.resamples,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_RESAMPLES)
                .ok_or_else(|| {
                    invalid(
                        "resamples",
                        format!("must be an integer from 0 to {MAX_RESAMPLES}"),
                    )
                })?,
        };
        let confidence = match new.confidence {
            None => defaults.confidence,
            Some(c) if c > 0.0 && c < 1.0 => c,
            Some(_) => {
                return Err(invalid(
                    "confidence",
                    "must be a number between 0 and 1, e.g. 0.95",
                ));
            }
        };
        let (_, cached, _) = self.stored_set(caller, set_id).await?;
        let set = &cached.set;
        if set.items.len() > self.limits.max_items_per_job {
            return Err(Error::TooLarge {
                what: "calibration run",
                detail: format!(
                    "{} items; the limit is {} (server.max_items_per_job)",
                    set.items.len(),
                    self.limits.max_items_per_job
                ),
                field: Some("set".into()),
            });
        }
        let mut rubrics = std::collections::BTreeMap::new();
        for it in &set.items {
            if let Some(crate::calibration::set::Task {
                criterion: crate::calibration::set::TaskCriterion::Reference { rubric, .. },
                ..
            }) = &it.task
            {
                if rubrics.contains_key(rubric) {
                    continue;
                }
                let (id, version) = crate::item::parse_rubric_reference(rubric)
                    .map_err(|m| invalid("set", format!("rubric \"{rubric}\": {m}")))?;
                let r = self
                    .grader
                    .resolve(&RubricSource::Reference { id, version })
                    .await?;
                self.check_criteria(r.criteria.len(), "set")?;
                rubrics.insert(rubric.clone(), r);
            }
        }
        let plan = live::plan(set, &rubrics, self.grader.simulated())
            .map_err(|e| errors_under("set", e))?;
        let opts = RunOptions::from_plan(
            &plan,
            &ReportOptions {
                seed,
                resamples,
                confidence,
                min_pair_items: new.min_pair_items.and_then(|n| usize::try_from(n).ok()),
            },
        );
        let run = CalibrationRunRecord {
            id: uuid::Uuid::now_v7().to_string(),
            set_id: set_id.to_owned(),
            options: serde_json::to_string(&opts).map_err(|e| Error::Internal(e.to_string()))?,
            report: None,
            finished_at: None,
        };
        // The quota is counted and taken with the run's job, in one transaction.
        let admission = self
            .store
            .create_calibration_run_under_quota(
                &run,
                seed,
                caller.owner(),
                &plan.rows,
                self.job_quota(caller),
            )
            .await?;
        Self::admitted(caller, admission)?;
        self.jobs.start(&run.id);
        self.calibration_run(caller, &run.id).await
    }

    /// A run the caller may see, with its job.
    async fn stored_run(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(CalibrationRunRecord, crate::store::JobRecord), Error> {
        caller.require(Action::ReadCalibration)?;
        let run = self
            .store
            .calibration_run(id)
            .await?
            .ok_or_else(|| run_not_found(id))?;
        let job = self.job_record(id).await?;
        if !caller.sees(Owned::Calibration, job.owner.as_deref()) {
            return Err(run_not_found(id));
        }
        Ok((run, job))
    }

    /// A run: its job's progress and, once finished, the agreement report.
    pub async fn calibration_run(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CalibrationRunDoc, Error> {
        let (run, job) = self.stored_run(caller, id).await?;
        let report = self
            .run_report(id, run.report.as_deref())
            .await?
            .map(|r| (*r).clone());
        Ok(CalibrationRunDoc {
            id: run.id,
            set: run.set_id,
            owner: job.owner.clone(),
            state: job.state,
            job: super::JobStatus::from(&job),
            finished_at: run.finished_at,
            report,
        })
    }

    /// Items where the committee or a judge differs from the human majority, with the
    /// judges' explanations, in item order after `after` (a `seq`).
    pub async fn calibration_disagreements(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Disagreements, Error> {
        use crate::calibration::{live, report::human_majority, run};
        let (rec, _) = self.stored_run(caller, id).await?;
        let opts: run::RunOptions = serde_json::from_str(&rec.options)
            .map_err(|e| corrupt(format_args!("options of calibration run {id}"), e))?;
        // The run was visible, so its set is read as the service (a client's run may
        // be over a set it could see when it started the run).
        let (set_rec, stored, _) = self.stored_set(&Caller::local_admin(), &rec.set_id).await?;
        let plan = run::stored_plan(&stored.set, &opts)?;
        // Blind callers see an item's labels and verdicts once they have labelled it.
        let blind =
            (!sees_all_labels(caller, set_rec.owner.as_deref())).then(|| rater_name(caller));
        let limit = super::jobs::check_limit(limit)? as usize;
        let name = |c: Option<usize>| c.and_then(|c| plan.set.categories.get(c)).cloned();
        let mut items = Vec::new();
        let mut cursor = after;
        let mut more = false;
        'pages: loop {
            let page = self
                .store
                .items_by_seq(id, Finished::DoneOnly, cursor, 500)
                .await?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, text) in page {
                if items.len() == limit {
                    more = true;
                    break 'pages;
                }
                cursor = Some(seq);
                let Some(&i) = usize::try_from(seq).ok().and_then(|s| plan.items.get(s)) else {
                    continue;
                };
                if blind
                    .as_ref()
                    .is_some_and(|me| !labelled_by(&plan.set.items[i], me))
                {
                    continue;
                }
                let Some(report) = run::stored_report(&text)
                    .map_err(|e| corrupt(format_args!("calibration run {id} result {seq}"), e))?
                else {
                    continue;
                };
                let Some(majority) = human_majority(&plan.set, i) else {
                    continue;
                };
                let readings = live::readings(&report, plan.map);
                if readings
                    .iter()
                    .all(|r| r.category.is_none_or(|c| c == majority))
                {
                    continue;
                }
                let it = &plan.set.items[i];
                let committee = readings.iter().find(|r| r.rater == live::COMMITTEE);
                items.push(Disagreement {
                    seq,
                    item: it.id.clone(),
                    category: it.category.clone(),
                    criterion: it.criterion.clone(),
                    response: it.task.as_ref().map(|t| t.response.clone()),
                    human_majority: name(Some(majority)),
                    humans: it
                        .labels
                        .iter()
                        .filter(|l| l.kind == RaterKind::Human)
                        .map(|l| HumanLabel {
                            rater: l.rater.clone(),
                            label: label_value_json(&plan.set, &l.value),
                        })
                        .collect(),
                    committee: committee.and_then(|r| name(r.category)),
                    judges: readings
                        .iter()
                        .filter(|r| r.rater != live::COMMITTEE)
                        .map(|r| JudgeReading {
                            judge: r.rater.clone(),
                            label: name(r.category),
                            agrees: r.category.map(|c| c == majority),
                            explanations: r.explanations.clone(),
                        })
                        .collect(),
                });
            }
            cursor = Some(last);
        }
        let next = if more { cursor } else { None };
        Ok(Disagreements {
            run: id.to_owned(),
            binarized: plan.binarized,
            items,
            next,
        })
    }
}

/// The CSV column mapping of an upload.
fn csv_mapping(v: &CsvUpload) -> Result<crate::calibration::set::CsvMapping, Error> {
    let mut m =
        crate::calibration::set::parse_csv_mapping(&v.map).map_err(|e| invalid("csv.map", e))?;
    if let Some(s) = v.scale {
        m.scale = match s {
            ScaleName::Nominal => crate::calibration::Scale::Nominal,
            ScaleName::Ordinal => crate::calibration::Scale::Ordinal,
            ScaleName::Interval => crate::calibration::Scale::Interval,
        };
    }
    if let Some(c) = &v.categories {
        m.categories = Some(c.clone());
    }
    if let Some(s) = &v.met {
        m.met = Some(s.clone());
    }
    if let Some(s) = &v.name {
        m.name.clone_from(s);
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------
// The review queue (the annotator UI's main page) and the reads it needs. Added for
// the UI transport; the API's label write (`add_calibration_labels`) stays the one
// way labels are written.

/// How many of a set's newest runs its pages list.
const RUNS_LISTED: u32 = 200;

/// How many finished runs the dashboard's kappa-over-time chart shows.
const TREND_RUNS: usize = 20;

/// Which items the review queue walks through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// Only items the caller has not labelled yet.
    pub unlabelled: bool,
    /// Only items where a judge label in the set differs from the human majority.
    pub disagreements: bool,
    /// Only items of this item category (`category` in calibration.v1).
    pub category: Option<String>,
    /// Only items with this criterion key.
    pub criterion: Option<String>,
}

/// Where in the filtered items the queue stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueuePosition {
    /// The first matching item.
    #[default]
    First,
    /// The first matching item the caller has not labelled (where an annotator picks
    /// up their work), else the first matching item.
    FirstUnlabelled,
    /// This item, whether or not it matches the filter.
    Item(String),
    /// The first matching item after this one (save-and-next).
    After(String),
}

/// The review queue at one item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReviewQueue {
    pub set: CalibrationSetDoc,
    /// The set's description, which annotators read as guidelines (plain text).
    pub guidelines: Option<String>,
    /// The name labels are written under: the caller's key name (`local` without keys).
    pub rater: String,
    pub total: usize,
    /// Items the caller has labelled.
    pub mine: usize,
    /// Every human rater's labelled-item count; only for admins.
    pub progress: Vec<RaterProgress>,
    /// Items matching the filter.
    pub matching: usize,
    /// The current item's 1-based position among the matching items.
    pub position: Option<usize>,
    pub prev: Option<String>,
    pub next: Option<String>,
    /// Distinct item categories and criterion keys, for the filters.
    pub item_categories: Vec<String>,
    pub criteria: Vec<String>,
    pub current: Option<ReviewItem>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RaterProgress {
    pub rater: String,
    pub labelled: usize,
}

/// One item as the annotator sees it. `reveal` is `None` until the caller has
/// labelled the item: blind labelling, enforced here so no transport can leak it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReviewItem {
    pub id: String,
    pub index: usize,
    pub category: Option<String>,
    /// The criterion's text (a rubric reference is resolved to its text).
    pub criterion: Option<String>,
    pub conversation: Vec<Turn>,
    pub response: Option<String>,
    /// The caller's own label, when given.
    pub mine: Option<Value>,
    pub reveal: Option<Reveal>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Turn {
    pub role: &'static str,
    pub content: String,
}

/// What the judges and the other humans said about an item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reveal {
    /// The other humans' labels.
    pub humans: Vec<HumanLabel>,
    pub human_majority: Option<String>,
    /// Judge labels stored in the set.
    pub judge_labels: Vec<HumanLabel>,
    /// The run the readings come from, when one was given and covered the item.
    pub run: Option<String>,
    /// Each judge's (and the committee's) reading in that run, with explanations.
    pub readings: Vec<JudgeReading>,
}

/// A run of a set, as lists show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunEntry {
    pub id: String,
    pub state: crate::store::JobState,
    pub created_at: i64,
    /// When the report was written.
    pub finished_at: Option<i64>,
    pub done: u64,
    pub failed: u64,
    pub total: u64,
}

impl RunEntry {
    fn new(run: &CalibrationRunRecord, job: &crate::store::JobRecord) -> RunEntry {
        RunEntry {
            id: run.id.clone(),
            state: job.state,
            created_at: job.created_at,
            finished_at: run.finished_at,
            done: job.done,
            failed: job.failed,
            total: job.total,
        }
    }
}

/// The committee's (or the only judge's) kappa against the human majority in one
/// finished run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunKappa {
    pub run: String,
    pub at: Option<i64>,
    pub judge: Option<String>,
    pub kappa: Option<f64>,
}

/// A set as the set list shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetOverview {
    pub set: CalibrationSetDoc,
    pub runs: usize,
    /// The newest finished run's kappa.
    pub last: Option<RunKappa>,
}

/// The agreement dashboard of a set.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub set: CalibrationSetDoc,
    pub runs: Vec<RunEntry>,
    /// The run whose report is shown.
    pub run: Option<RunEntry>,
    pub report: Option<Arc<AgreementReport>>,
    /// Kappa per finished run, oldest first.
    pub trend: Vec<RunKappa>,
    /// Human labels written (or corrected) through the API after the shown run's
    /// report: that report predates them.
    pub newer_labels: usize,
}

/// A parsed set with the facts every page of it needs, computed once per label
/// version.
#[derive(Debug, Clone)]
pub struct CachedSet {
    pub set: CalibrationSet,
    /// Item positions by id.
    pub index: std::collections::HashMap<String, usize>,
    pub humans: Vec<String>,
    pub judges: Vec<String>,
    pub runnable: usize,
    /// Items each human rater has labelled.
    pub progress: std::collections::BTreeMap<String, usize>,
    /// Distinct item categories and criterion keys, for the queue's filters.
    pub item_categories: Vec<String>,
    pub criteria: Vec<String>,
}

impl CachedSet {
    /// Brings what labels decide (raters, progress) up to date after the labels of
    /// `touched` (item, rater, kind) changed, from whether each rater had a human label
    /// on its item before (`had`): a few map and list updates, not a pass over every
    /// label (a removed label may remove a rater, so only then are the rater lists
    /// recounted). Items, and so the index, categories and criteria, never change.
    fn relabelled(&mut self, touched: &[(usize, &str, RaterKind)], had: &[bool]) {
        let mut removed = false;
        for (&(i, rater, kind), &had) in touched.iter().zip(had) {
            let Some(item) = self.set.items.get(i) else {
                continue;
            };
            let present = item
                .labels
                .iter()
                .any(|l| l.rater == rater && l.kind == kind);
            let has = labelled_by(item, rater);
            match (had, has) {
                (false, true) => *self.progress.entry(rater.to_owned()).or_default() += 1,
                (true, false) => {
                    if let Some(n) = self.progress.get_mut(rater) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.progress.remove(rater);
                        }
                    }
                }
                _ => {}
            }
            let list = match kind {
                RaterKind::Human => &mut self.humans,
                RaterKind::Judge => &mut self.judges,
            };
            if present {
                if let Err(at) = list.binary_search_by(|x| x.as_str().cmp(rater)) {
                    list.insert(at, rater.to_owned());
                }
            } else {
                removed = true;
            }
        }
        if removed {
            self.humans = self.set.raters(RaterKind::Human);
            self.judges = self.set.raters(RaterKind::Judge);
        }
    }

    fn new(set: CalibrationSet) -> CachedSet {
        let progress = progress(&set);
        let distinct = |f: fn(&crate::calibration::set::CalItem) -> Option<&String>| {
            let s: std::collections::BTreeSet<&String> = set.items.iter().filter_map(f).collect();
            s.into_iter().cloned().collect::<Vec<_>>()
        };
        CachedSet {
            index: item_index(&set),
            humans: set.raters(RaterKind::Human),
            judges: set.raters(RaterKind::Judge),
            runnable: set.items.iter().filter(|i| i.task.is_some()).count(),
            item_categories: distinct(|it| it.category.as_ref()),
            criteria: distinct(|it| it.criterion.as_ref()),
            progress,
            set,
        }
    }
}

/// Items each human rater has labelled.
fn progress(set: &CalibrationSet) -> std::collections::BTreeMap<String, usize> {
    let mut progress = std::collections::BTreeMap::<String, usize>::new();
    let mut seen = Vec::new();
    for it in &set.items {
        seen.clear();
        for l in it.labels.iter().filter(|l| l.kind == RaterKind::Human) {
            if !seen.contains(&l.rater.as_str()) {
                seen.push(l.rater.as_str());
                match progress.get_mut(&l.rater) {
                    Some(n) => *n += 1,
                    None => {
                        progress.insert(l.rater.clone(), 1);
                    }
                }
            }
        }
    }
    progress
}

/// What the review queue needs of a run.
#[derive(Debug)]
pub struct RunView {
    set_id: String,
    binarized: bool,
    map: crate::calibration::live::LabelMap,
    /// The job's `seq` of each set item the run graded.
    seq_of: std::collections::HashMap<usize, u64>,
    /// `items[seq]`: the set item of each `seq`.
    items: Vec<usize>,
    finished: bool,
    readings: std::sync::OnceLock<Arc<Vec<Option<Vec<usize>>>>>,
}

/// Parsed sets, reports and run views kept between requests. Sets are kept under
/// their label version (a write makes a new version, so a kept parse is never read
/// stale); reports and run views only once their run is done (they never change
/// after). Small and bounded: a few sets (a 10,000-item parse is tens of MB), more
/// reports.
#[derive(Debug, Default)]
pub struct CalibrationCache {
    sets: std::sync::Mutex<std::collections::VecDeque<(String, u64, Arc<CachedSet>)>>,
    reports: std::sync::Mutex<std::collections::HashMap<String, Arc<AgreementReport>>>,
    runs: std::sync::Mutex<std::collections::HashMap<String, Arc<RunView>>>,
}

/// Kept parses of sets, reports and run views at most.
const KEPT_SETS: usize = 4;
const KEPT_REPORTS: usize = 256;
const KEPT_RUNS: usize = 8;

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written (each
    // change is one insert or remove), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CalibrationCache {
    fn set(&self, id: &str, version: u64) -> Option<Arc<CachedSet>> {
        let sets = locked(&self.sets);
        sets.iter()
            .find(|(i, v, _)| i == id && *v == version)
            .map(|(_, _, s)| s.clone())
    }

    /// Takes a set's kept parse at `version` out of the cache (a label write changes
    /// it in place and puts it back under the new version).
    fn take_set(&self, id: &str, version: u64) -> Option<Arc<CachedSet>> {
        let mut sets = locked(&self.sets);
        let at = sets.iter().position(|(i, v, _)| i == id && *v == version)?;
        sets.remove(at).map(|(_, _, s)| s)
    }

    fn put_set(&self, id: &str, version: u64, set: Arc<CachedSet>) {
        let mut sets = locked(&self.sets);
        sets.retain(|(i, _, _)| i != id);
        if sets.len() >= KEPT_SETS {
            sets.pop_front();
        }
        sets.push_back((id.to_owned(), version, set));
    }

    fn report(&self, run: &str) -> Option<Arc<AgreementReport>> {
        locked(&self.reports).get(run).cloned()
    }

    fn put_report(&self, run: &str, report: Arc<AgreementReport>) {
        let mut m = locked(&self.reports);
        if m.len() >= KEPT_REPORTS {
            m.clear();
        }
        m.insert(run.to_owned(), report);
    }

    fn run(&self, run: &str) -> Option<Arc<RunView>> {
        locked(&self.runs).get(run).cloned()
    }

    fn put_run(&self, run: &str, view: Arc<RunView>) {
        let mut m = locked(&self.runs);
        if m.len() >= KEPT_RUNS {
            m.clear();
        }
        m.insert(run.to_owned(), view);
    }
}

/// The human majority of item `i` in the categories a run judged it in (the set's
/// own, or met / not met when the run binarized the set), and those categories. Only
/// item `i` is copied, so the queue never copies the whole set for one item.
fn plan_majority(set: &CalibrationSet, i: usize, binarized: bool) -> (Option<usize>, Vec<String>) {
    let Some(it) = set.items.get(i) else {
        return (None, Vec::new());
    };
    let one = CalibrationSet {
        name: String::new(),
        description: None,
        scale: set.scale,
        categories: set.categories.clone(),
        met: set.met.clone(),
        min_pair_items: set.min_pair_items,
        items: vec![crate::calibration::set::CalItem {
            id: String::new(),
            category: None,
            criterion: None,
            task: None,
            labels: it.labels.clone(),
        }],
    };
    let base = crate::calibration::live::base_set(&one, binarized);
    (
        crate::calibration::report::human_majority(&base, 0),
        base.categories,
    )
}

/// `plan_majority`'s category without copying anything, for the disagreement filter's
/// pass over every item: the set's own majority, or, for a binarized run, the strict
/// majority of met against not met over each human rater's first label (as
/// `live::base_set` and `human_majority` count them).
fn plan_majority_fast(set: &CalibrationSet, i: usize, binarized: bool) -> Option<usize> {
    let met = set
        .met
        .as_ref()
        .and_then(|m| set.categories.iter().position(|c| c == m));
    let (true, Some(met)) = (binarized, met) else {
        return crate::calibration::report::human_majority(set, i);
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut counts = [0usize; 2];
    for l in set.items.get(i)?.labels.iter() {
        if l.kind != RaterKind::Human || seen.contains(&l.rater.as_str()) {
            continue;
        }
        seen.push(&l.rater);
        if let LabelValue::Category(c) = l.value {
            counts[usize::from(c == met)] += 1;
        }
    }
    match counts[0].cmp(&counts[1]) {
        std::cmp::Ordering::Greater => Some(0),
        std::cmp::Ordering::Less => Some(1),
        std::cmp::Ordering::Equal => None,
    }
}

/// A set's document as the API shows it, from a kept parse.
fn cached_set_doc(rec: &CalibrationSetRecord, c: &CachedSet) -> CalibrationSetDoc {
    use crate::calibration::Scale;
    CalibrationSetDoc {
        id: rec.id.clone(),
        name: rec.name.clone(),
        owner: rec.owner.clone(),
        items: rec.items,
        labels: rec.labels,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        scale: Some(match c.set.scale {
            Scale::Nominal => ScaleName::Nominal,
            Scale::Ordinal => ScaleName::Ordinal,
            Scale::Interval => ScaleName::Interval,
        }),
        categories: Some(c.set.categories.clone()),
        met: c.set.met.clone(),
        raters: Some(Raters {
            humans: c.humans.clone(),
            judges: c.judges.clone(),
        }),
        runnable_items: Some(c.runnable),
    }
}

/// The rater name a caller's own labels are written under: its key's name, or
/// `local` on a server without keys.
pub fn rater_name(caller: &Caller) -> String {
    caller.owner().unwrap_or("local").to_owned()
}

/// Who may write which label, for every transport: a human label is the caller's
/// own (rater = the caller's key name); only an admin may write one under another
/// rater's name (an import, returned here as the `imported_by` to record); judge
/// labels only from an admin or the set's owner. The error names the label and field
/// and says what to send instead.
fn label_writers(
    caller: &Caller,
    set_owner: Option<&str>,
    labels: &[NewLabel],
) -> Result<Vec<Option<String>>, Error> {
    let me = rater_name(caller);
    let admin = caller.role == super::Role::Admin;
    let owner = caller.owner().is_some() && caller.owner() == set_owner;
    let mut imported_by = Vec::with_capacity(labels.len());
    for (i, l) in labels.iter().enumerate() {
        match l.kind {
            RaterKind::Human => {
                if l.rater == me {
                    imported_by.push(None);
                } else if admin {
                    imported_by.push(Some(me.clone()));
                } else {
                    return Err(Error::Forbidden(format!(
                        "labels[{i}].rater: \"{}\" is not you; a human label is written under the caller's key name: send \"rater\": \"{me}\" (only an admin may import labels on behalf of other raters)",
                        l.rater
                    )));
                }
            }
            RaterKind::Judge => {
                if !(admin || owner) {
                    return Err(Error::Forbidden(format!(
                        "labels[{i}].kind: only an admin or the set's owner may write judge labels; send kind \"human\" for your own label"
                    )));
                }
                imported_by.push(None);
            }
        }
    }
    Ok(imported_by)
}

/// Whether the caller sees every rater's labels and the judges' verdicts on a set
/// (one rule for the API, gRPC and the UI): admins and the set's owner do. Everyone
/// else (annotators) labels blind: an item's other labels and verdicts only once they
/// have labelled it themselves.
pub fn sees_all_labels(caller: &Caller, set_owner: Option<&str>) -> bool {
    caller.role == super::Role::Admin || (caller.owner().is_some() && caller.owner() == set_owner)
}

/// Whether `rater` has a human label on the item.
fn labelled_by(item: &crate::calibration::set::CalItem, rater: &str) -> bool {
    item.labels
        .iter()
        .any(|l| l.kind == RaterKind::Human && l.rater == rater)
}

/// A set's record after a label write: the store's new label count and time.
fn stored_rec(rec: CalibrationSetRecord, stored: &LabelsStored, at: i64) -> CalibrationSetRecord {
    CalibrationSetRecord {
        labels: stored.labels,
        updated_at: at,
        ..rec
    }
}

impl Service {
    /// The set's canonical calibration.v1 JSONL (for export).
    pub async fn calibration_set_document(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(String, String), Error> {
        caller.require(Action::ReadCalibration)?;
        let (rec, cached, _) = self.stored_set(caller, id).await?;
        if sees_all_labels(caller, rec.owner.as_deref()) {
            return Ok((rec.name, cached.set.to_jsonl()));
        }
        // Blind: an item's labels only once the caller has labelled it.
        let me = rater_name(caller);
        let mut set = cached.set.clone();
        for it in &mut set.items {
            if !labelled_by(it, &me) {
                it.labels.clear();
            }
        }
        Ok((rec.name, set.to_jsonl()))
    }

    /// A job's finished items (done or failed) in item order after `after` (a `seq`),
    /// for the UI's job and item pages: one store query, whatever the job's size.
    pub async fn job_items_by_seq(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, Error> {
        self.job(caller, id).await?;
        let limit = super::jobs::check_limit(limit)?;
        Ok(self
            .store
            .items_by_seq(id, Finished::AlsoFailed, after, limit)
            .await?)
    }

    /// `run` as a run of `set_id` the caller may see; a run of another set is
    /// `invalid_input` on `run` (its item mapping would not fit this set).
    pub async fn run_of_set(
        &self,
        caller: &Caller,
        run: &str,
        set_id: &str,
    ) -> Result<CalibrationRunDoc, Error> {
        let doc = self.calibration_run(caller, run).await?;
        if doc.set != set_id {
            return Err(invalid(
                "run",
                format!("run {run} is a run of another set; pick one of this set's runs"),
            ));
        }
        Ok(doc)
    }

    /// The runs of a set the caller may see, newest first (the newest `RUNS_LISTED`),
    /// from one store query over the set's runs.
    pub async fn calibration_runs_of_set(
        &self,
        caller: &Caller,
        set_id: &str,
    ) -> Result<Vec<RunEntry>, Error> {
        caller.require(Action::ReadCalibration)?;
        // Visibility only: the document is neither read nor parsed.
        let missing = || Error::NotFound {
            what: "calibration set",
            name: set_id.to_owned(),
        };
        let (rec, _) = self
            .store
            .calibration_set_version(set_id)
            .await?
            .ok_or_else(missing)?;
        if !caller.sees(Owned::Calibration, rec.owner.as_deref()) {
            return Err(missing());
        }
        self.visible_runs(caller, set_id).await
    }

    async fn visible_runs(&self, caller: &Caller, set_id: &str) -> Result<Vec<RunEntry>, Error> {
        let runs = self
            .store
            .calibration_runs_of_set(set_id, RUNS_LISTED)
            .await?;
        Ok(runs
            .into_iter()
            .filter(|(_, job)| caller.sees(Owned::Calibration, job.owner.as_deref()))
            .map(|(run, job)| RunEntry::new(&run, &job))
            .collect())
    }

    /// A finished run's report, parsed once and kept (a report never changes once
    /// written). `None` while the run is unfinished. The caller checks visibility.
    async fn run_report(
        &self,
        run_id: &str,
        text: Option<&str>,
    ) -> Result<Option<Arc<AgreementReport>>, Error> {
        if let Some(r) = self.calibration_cache.report(run_id) {
            return Ok(Some(r));
        }
        let owned;
        let text = match text {
            Some(t) => Some(t),
            None => {
                owned = self
                    .store
                    .calibration_run(run_id)
                    .await?
                    .and_then(|r| r.report);
                owned.as_deref()
            }
        };
        let Some(text) = text else {
            return Ok(None);
        };
        let report: AgreementReport = serde_json::from_str(text)
            .map_err(|e| corrupt(format_args!("report of calibration run {run_id}"), e))?;
        let report = Arc::new(report);
        self.calibration_cache.put_report(run_id, report.clone());
        Ok(Some(report))
    }

    /// The committee's (or the only judge's) kappa against the human majority in a
    /// finished run, for the set list and the trend.
    async fn run_kappa(&self, run: &RunEntry) -> Result<Option<RunKappa>, Error> {
        if run.finished_at.is_none() {
            return Ok(None);
        }
        let Some(rep) = self.run_report(&run.id, None).await? else {
            return Ok(None);
        };
        let j = rep
            .judges
            .iter()
            .find(|j| j.judge == crate::calibration::live::COMMITTEE)
            .or_else(|| rep.judges.first());
        Ok(Some(RunKappa {
            run: run.id.clone(),
            at: run.finished_at,
            judge: j.map(|j| j.judge.clone()),
            kappa: j.and_then(|j| j.vs_human_majority.cohen_kappa.value),
        }))
    }

    /// The caller's sets with their last finished run's committee kappa (the UI's set
    /// list): one run query per set, reports read from the kept parses.
    pub async fn calibration_set_overview(
        &self,
        caller: &Caller,
    ) -> Result<Vec<SetOverview>, Error> {
        let list = self.calibration_sets(caller, None).await?;
        let mut out = Vec::with_capacity(list.sets.len());
        for set in list.sets {
            let runs = self.visible_runs(caller, &set.id).await?;
            let last = match runs.iter().find(|r| r.finished_at.is_some()) {
                Some(r) => self.run_kappa(r).await?,
                None => None,
            };
            out.push(SetOverview {
                set,
                runs: runs.len(),
                last,
            });
        }
        Ok(out)
    }

    /// The agreement dashboard of a set: the set, its runs, the chosen run (`run`, or
    /// the newest finished one) with its report, and the committee's kappa in each
    /// finished run, oldest first (the newest `TREND_RUNS`).
    pub async fn calibration_dashboard(
        &self,
        caller: &Caller,
        set_id: &str,
        run: Option<&str>,
    ) -> Result<Dashboard, Error> {
        caller.require(Action::ReadCalibration)?;
        let (rec, set, _) = self.stored_set(caller, set_id).await?;
        let runs = self.visible_runs(caller, set_id).await?;
        let chosen = match run {
            Some(r) => {
                let (run_rec, job) = self.stored_run(caller, r).await?;
                if run_rec.set_id != set_id {
                    return Err(invalid(
                        "run",
                        format!("run {r} is a run of another set; pick one of this set's runs"),
                    ));
                }
                let report = self.run_report(r, run_rec.report.as_deref()).await?;
                Some((RunEntry::new(&run_rec, &job), report))
            }
            None => match runs.iter().find(|r| r.finished_at.is_some()) {
                Some(r) => Some((r.clone(), self.run_report(&r.id, None).await?)),
                None => None,
            },
        };
        let mut trend = Vec::new();
        for r in runs
            .iter()
            .filter(|r| r.finished_at.is_some())
            .take(TREND_RUNS)
        {
            trend.extend(self.run_kappa(r).await?);
        }
        trend.reverse();
        let (run, report) = chosen.unzip();
        let newer_labels = match run.as_ref().and_then(|r| r.finished_at) {
            Some(at) => self
                .store
                .label_history(set_id, None)
                .await?
                .iter()
                .filter(|e| e.at > at && e.kind == "human")
                .count(),
            None => 0,
        };
        Ok(Dashboard {
            set: cached_set_doc(&rec, &set),
            runs,
            run,
            report: report.flatten(),
            trend,
            newer_labels,
        })
    }

    /// A run's progress for someone who can see its set (annotators cannot read jobs):
    /// the run must be a run of `set_id` the caller may see.
    pub async fn calibration_run_progress(
        &self,
        caller: &Caller,
        set_id: &str,
        run: &str,
    ) -> Result<RunEntry, Error> {
        caller.require(Action::ReadCalibration)?;
        let (run_rec, job) = self.stored_run(caller, run).await?;
        if run_rec.set_id != set_id {
            return Err(invalid(
                "run",
                format!("run {run} is a run of another set; pick one of this set's runs"),
            ));
        }
        Ok(RunEntry::new(&run_rec, &job))
    }

    /// What the queue needs of a run: its item mapping (parsed once per run and kept)
    /// and, for the disagreement filter, every item's readings (kept once it is done).
    async fn run_view(
        &self,
        caller: &Caller,
        run_id: &str,
        set_id: &str,
    ) -> Result<Arc<RunView>, Error> {
        if let Some(v) = self.calibration_cache.run(run_id) {
            // Kept views are only of runs this caller's check below admitted once;
            // visibility is still checked per caller.
            if v.set_id == set_id {
                self.stored_run_visible(caller, run_id).await?;
                return Ok(v);
            }
        }
        let (rec, job) = self.stored_run(caller, run_id).await?;
        if rec.set_id != set_id {
            return Err(invalid(
                "run",
                format!("run {run_id} is a run of another set; pick one of this set's runs"),
            ));
        }
        let opts: crate::calibration::run::RunOptions = serde_json::from_str(&rec.options)
            .map_err(|e| corrupt(format_args!("options of calibration run {run_id}"), e))?;
        let map = opts
            .map()
            .ok_or_else(|| corrupt("calibration run options", "no category mapping"))?;
        let seq_of = opts
            .items
            .iter()
            .enumerate()
            .map(|(seq, &i)| (i, seq as u64))
            .collect();
        let view = Arc::new(RunView {
            set_id: rec.set_id.clone(),
            binarized: opts.binarized,
            map,
            seq_of,
            items: opts.items,
            finished: job.state.is_final(),
            readings: std::sync::OnceLock::new(),
        });
        if view.finished {
            self.calibration_cache.put_run(run_id, view.clone());
        }
        Ok(view)
    }

    /// Whether the caller may see a run (one job read).
    async fn stored_run_visible(&self, caller: &Caller, id: &str) -> Result<(), Error> {
        let job = self.job_record(id).await?;
        if !caller.sees(Owned::Calibration, job.owner.as_deref()) {
            return Err(run_not_found(id));
        }
        Ok(())
    }

    /// Every graded item's readings in a run (committee and judges, categories of the
    /// run's possibly binarized set), by set item index. Read from all of the run's
    /// results once; kept with the run's view when the run is done.
    async fn run_readings(
        &self,
        run_id: &str,
        view: &RunView,
    ) -> Result<Arc<Vec<Option<Vec<usize>>>>, Error> {
        use crate::calibration::{live, run};
        if let Some(r) = view.readings.get() {
            return Ok(r.clone());
        }
        let n = view.items.iter().copied().max().map_or(0, |m| m + 1);
        let mut out: Vec<Option<Vec<usize>>> = vec![None; n];
        for (seq, rep) in run::results(self.store.as_ref(), run_id).await? {
            let Some(&i) = usize::try_from(seq).ok().and_then(|s| view.items.get(s)) else {
                continue;
            };
            let cats = live::readings(&rep, view.map)
                .into_iter()
                .filter_map(|r| r.category)
                .collect();
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(cats);
            }
        }
        let out = Arc::new(out);
        if view.finished {
            let _ = view.readings.set(out.clone());
        }
        Ok(out)
    }

    /// The review queue of a set for the caller, at `at` among the items `filter`
    /// admits. The other raters' labels and the judges' readings (from `run`, when
    /// given) are only included for an item the caller has labelled. Whole-set work
    /// is a pass over the kept parse (no document read, no report parsed); the run's
    /// results are read for the one item shown, or once per run for the disagreement
    /// filter.
    pub async fn review_queue(
        &self,
        caller: &Caller,
        set_id: &str,
        filter: &QueueFilter,
        at: &QueuePosition,
        run: Option<&str>,
    ) -> Result<ReviewQueue, Error> {
        caller.require(Action::ReadCalibration)?;
        let (rec, cached, _) = self.stored_set(caller, set_id).await?;
        let set = &cached.set;
        let view = match run {
            Some(r) => Some(self.run_view(caller, r, set_id).await?),
            None => None,
        };
        let readings = match (&view, run, filter.disagreements) {
            (Some(v), Some(r), true) => Some(self.run_readings(r, v).await?),
            _ => None,
        };
        let rater = rater_name(caller);
        let mine_of = |it: &crate::calibration::set::CalItem| {
            it.labels
                .iter()
                .any(|l| l.kind == RaterKind::Human && l.rater == rater)
        };
        // A judge label in the set, or (with a run) a judge's or the committee's
        // reading in that run, differs from the human majority.
        let disagrees = |i: usize| {
            let set_judges = crate::calibration::report::human_majority(set, i).is_some_and(|m| {
                set.items[i]
                    .labels
                    .iter()
                    .any(|l| l.kind == RaterKind::Judge && l.value != LabelValue::Category(m))
            });
            set_judges
                || match (&readings, &view) {
                    (Some(rs), Some(v)) => rs.get(i).and_then(Option::as_ref).is_some_and(|cats| {
                        plan_majority_fast(set, i, v.binarized)
                            .is_some_and(|m| cats.iter().any(|&c| c != m))
                    }),
                    _ => false,
                }
        };
        let matches: Vec<usize> = (0..set.items.len())
            .filter(|&i| {
                let it = &set.items[i];
                (!filter.unlabelled || !mine_of(it))
                    && filter
                        .category
                        .as_ref()
                        .is_none_or(|c| it.category.as_ref() == Some(c))
                    && filter
                        .criterion
                        .as_ref()
                        .is_none_or(|c| it.criterion.as_ref() == Some(c))
                    && (!filter.disagreements || disagrees(i))
            })
            .collect();
        let find =
            |id: &str| {
                cached.index.get(id).copied().ok_or_else(|| {
                    invalid("item", format!("no item \"{id}\" in set \"{}\"", set.name))
                })
            };
        let current = match at {
            QueuePosition::First => matches.first().copied(),
            QueuePosition::FirstUnlabelled => matches
                .iter()
                .copied()
                .find(|&i| !mine_of(&set.items[i]))
                .or_else(|| matches.first().copied()),
            QueuePosition::Item(id) => Some(find(id)?),
            QueuePosition::After(id) => {
                let after = find(id)?;
                let k = matches.partition_point(|&i| i <= after);
                matches.get(k).copied()
            }
        };
        // `matches` is in item order, so positions are binary searches.
        let (pos, prev, next) = match current {
            Some(c) => {
                let k = matches.partition_point(|&i| i < c);
                let here = matches.get(k) == Some(&c);
                let prev = k.checked_sub(1).and_then(|p| matches.get(p));
                let next = matches.get(if here { k + 1 } else { k });
                (here.then_some(k), prev, next)
            }
            None => (None, None, None),
        };
        let id_of = |i: Option<&usize>| i.map(|&i| set.items[i].id.clone());
        let mine = cached.progress.get(&rater).copied().unwrap_or(0);
        let current = match current {
            Some(i) => Some(
                self.review_item(set, i, &rater, run.zip(view.as_deref()))
                    .await?,
            ),
            None => None,
        };
        Ok(ReviewQueue {
            guidelines: set.description.clone(),
            rater,
            total: set.items.len(),
            mine,
            progress: if caller.role == super::Role::Admin {
                cached
                    .progress
                    .iter()
                    .map(|(rater, &labelled)| RaterProgress {
                        rater: rater.clone(),
                        labelled,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            matching: matches.len(),
            position: pos.map(|p| p + 1),
            prev: id_of(prev),
            next: id_of(next),
            item_categories: cached.item_categories.clone(),
            criteria: cached.criteria.clone(),
            current,
            set: cached_set_doc(&rec, &cached),
        })
    }

    async fn review_item(
        &self,
        set: &CalibrationSet,
        i: usize,
        rater: &str,
        run: Option<(&str, &RunView)>,
    ) -> Result<ReviewItem, Error> {
        use crate::calibration::set::TaskCriterion;
        let it = &set.items[i];
        let mine = it
            .labels
            .iter()
            .find(|l| l.kind == RaterKind::Human && l.rater == rater)
            .map(|l| label_value_json(set, &l.value));
        let criterion = match it.task.as_ref().map(|t| &t.criterion) {
            Some(TaskCriterion::Inline { text }) => Some(text.clone()),
            Some(TaskCriterion::Reference {
                rubric,
                criterion_id,
            }) => Some(
                self.criterion_text(rubric, criterion_id)
                    .await
                    .unwrap_or_else(|| format!("{rubric} / {criterion_id}")),
            ),
            None => it.criterion.clone(),
        };
        let reveal = match mine {
            Some(_) => Some(self.reveal(set, i, rater, run).await?),
            None => None,
        };
        Ok(ReviewItem {
            id: it.id.clone(),
            index: i,
            category: it.category.clone(),
            criterion,
            conversation: it
                .task
                .iter()
                .flat_map(|t| t.conversation.iter())
                .map(|m| Turn {
                    role: m.role.as_str(),
                    content: m.content.clone(),
                })
                .collect(),
            response: it.task.as_ref().map(|t| t.response.clone()),
            mine,
            reveal,
        })
    }

    /// The text of a stored rubric's criterion; `None` when it cannot be resolved (the
    /// queue then shows the reference).
    async fn criterion_text(&self, rubric: &str, criterion_id: &str) -> Option<String> {
        let (id, version) = crate::item::parse_rubric_reference(rubric).ok()?;
        let r = self
            .grader
            .resolve(&RubricSource::Reference { id, version })
            .await
            .ok()?;
        r.criteria
            .iter()
            .find(|c| c.id.0 == criterion_id)
            .map(|c| c.text.clone())
    }

    async fn reveal(
        &self,
        set: &CalibrationSet,
        i: usize,
        rater: &str,
        run: Option<(&str, &RunView)>,
    ) -> Result<Reveal, Error> {
        use crate::calibration::{live, run as cal_run};
        let it = &set.items[i];
        let labels_of = |kind: RaterKind| {
            it.labels
                .iter()
                .filter(|l| l.kind == kind && !(kind == RaterKind::Human && l.rater == rater))
                .map(|l| HumanLabel {
                    rater: l.rater.clone(),
                    label: label_value_json(set, &l.value),
                })
                .collect::<Vec<_>>()
        };
        let mut reveal = Reveal {
            humans: labels_of(RaterKind::Human),
            human_majority: crate::calibration::report::human_majority(set, i)
                .and_then(|c| set.categories.get(c).cloned()),
            judge_labels: labels_of(RaterKind::Judge),
            run: None,
            readings: Vec::new(),
        };
        let Some((run_id, view)) = run else {
            return Ok(reveal);
        };
        let Some(&seq) = view.seq_of.get(&i) else {
            return Ok(reveal);
        };
        let page = self
            .store
            .items_by_seq(run_id, Finished::DoneOnly, seq.checked_sub(1), 1)
            .await?;
        let Some((_, text)) = page.into_iter().find(|(s, _)| *s == seq) else {
            return Ok(reveal);
        };
        let Some(report) = cal_run::stored_report(&text)
            .map_err(|e| corrupt(format_args!("calibration run {run_id} result {seq}"), e))?
        else {
            return Ok(reveal);
        };
        let (majority, categories) = plan_majority(set, i, view.binarized);
        let name = |c: Option<usize>| c.and_then(|c| categories.get(c)).cloned();
        reveal.run = Some(run_id.to_owned());
        reveal.readings = live::readings(&report, view.map)
            .into_iter()
            .map(|r| JudgeReading {
                judge: r.rater.clone(),
                label: name(r.category),
                agrees: r.category.zip(majority).map(|(c, m)| c == m),
                explanations: r.explanations,
            })
            .collect();
        Ok(reveal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a label write or an undo, the kept parse's raters and per-rater progress,
    /// updated from the touched labels only, equal a full recount of the changed set.
    #[test]
    fn relabelled_matches_a_full_recount() {
        use crate::calibration::Label;
        let text = [
            r#"{"format": "calibration.v1", "name": "r", "scale": "nominal", "categories": ["a", "b"]}"#,
            r#"{"id": "i0", "labels": [{"rater": "h1", "kind": "human", "value": "a"}, {"rater": "j", "kind": "judge", "value": "b"}]}"#,
            r#"{"id": "i1", "labels": [{"rater": "h1", "kind": "human", "value": "b"}]}"#,
            r#"{"id": "i2", "labels": []}"#,
        ]
        .join("\n");
        let set = crate::calibration::set::parse_set(&text).unwrap();
        let label = |rater: &str, kind| Label {
            rater: rater.into(),
            kind,
            value: LabelValue::Category(1),
        };
        let check = |mut kept: CachedSet,
                     touched: &[(usize, &str, RaterKind)],
                     change: &dyn Fn(&mut CalibrationSet)| {
            let had: Vec<bool> = touched
                .iter()
                .map(|&(i, r, _)| labelled_by(&kept.set.items[i], r))
                .collect();
            change(&mut kept.set);
            kept.relabelled(touched, &had);
            let full = CachedSet::new(kept.set.clone());
            assert_eq!(
                (&kept.humans, &kept.judges, &kept.progress),
                (&full.humans, &full.judges, &full.progress)
            );
            kept
        };
        // New raters, a replaced label and a new judge.
        let kept = check(
            CachedSet::new(set),
            &[
                (2, "h2", RaterKind::Human),
                (0, "h1", RaterKind::Human),
                (2, "a-judge", RaterKind::Judge),
            ],
            &|s| {
                s.apply_labels(vec![
                    (2, label("h2", RaterKind::Human)),
                    (0, label("h1", RaterKind::Human)),
                    (2, label("a-judge", RaterKind::Judge)),
                ]);
            },
        );
        // Undos that remove labels: a rater's last label, and one of several.
        let kept = check(kept, &[(2, "h2", RaterKind::Human)], &|s| {
            s.remove_label(2, "h2", RaterKind::Human)
        });
        check(kept, &[(1, "h1", RaterKind::Human)], &|s| {
            s.remove_label(1, "h1", RaterKind::Human)
        });
    }

    /// The filter's shortcut agrees with the exact computation (a one-item copy through
    /// `live::base_set`) on ties, repeats, missing labels and three categories.
    #[test]
    fn fast_plan_majority_matches_the_exact_one() {
        let header = r#"{"format": "calibration.v1", "name": "m", "scale": "nominal", "categories": ["a", "b", "c"], "met": "b"}"#;
        let cases: [&[(&str, &str)]; 7] = [
            &[],
            &[("x", "a")],
            &[("x", "b"), ("y", "a")],
            &[("x", "b"), ("y", "a"), ("z", "c")],
            &[("x", "b"), ("x", "a"), ("y", "b")],
            &[("x", "a"), ("y", "c"), ("z", "b")],
            &[("x", "b"), ("y", "b"), ("z", "a")],
        ];
        let mut lines = vec![header.to_owned()];
        for (n, labels) in cases.iter().enumerate() {
            let labels: Vec<Value> = labels
                .iter()
                .map(|(r, v)| json!({"rater": r, "kind": "human", "value": v}))
                .chain(std::iter::once(
                    json!({"rater": "j", "kind": "judge", "value": "c"}),
                ))
                .collect();
            lines.push(json!({"id": format!("i{n}"), "labels": labels}).to_string());
        }
        let set = crate::calibration::set::parse_set(&lines.join("\n")).unwrap();
        for i in 0..cases.len() {
            for binarized in [false, true] {
                assert_eq!(
                    plan_majority_fast(&set, i, binarized),
                    plan_majority(&set, i, binarized).0,
                    "item {i}, binarized {binarized}"
                );
            }
        }
    }
}
