//! The human majority: the strict plurality of an item's human category labels, the
//! reference every judge is compared with (and, in live runs, the label simulated
//! judges are handed). Pure; used by `report`, `reliability` and `live`, must not use
//! any of them.

use crate::calibration::set::{CalibrationSet, LabelValue, RaterKind};

pub(super) fn cat(v: LabelValue) -> Option<usize> {
    match v {
        LabelValue::Category(c) => Some(c),
        LabelValue::Number(_) => None,
    }
}

/// The strict plurality of some category labels (labels outside `0..k` are ignored).
pub(super) fn majority_of(values: impl IntoIterator<Item = LabelValue>, k: usize) -> Option<usize> {
    let mut counts = vec![0usize; k];
    for c in values.into_iter().filter_map(cat).filter(|c| *c < k) {
        counts[c] += 1;
    }
    let max = *counts.iter().max()?;
    if max == 0 || counts.iter().filter(|c| **c == max).count() > 1 {
        return None;
    }
    counts.iter().position(|c| *c == max)
}

/// The strict plurality of item `item`'s human labels, as a category index: `None` on a tie,
/// without human category labels, or for an item that does not exist. A rater who labelled
/// the item twice counts once, with the first label, as everywhere in the report.
pub fn human_majority(set: &CalibrationSet, item: usize) -> Option<usize> {
    let it = set.items.get(item)?;
    let mut seen: Vec<&str> = Vec::new();
    let firsts = it
        .labels
        .iter()
        .filter(|l| l.kind == RaterKind::Human)
        .filter(|l| {
            let new = !seen.contains(&l.rater.as_str());
            if new {
                seen.push(&l.rater);
            }
            new
        })
        .map(|l| l.value);
    majority_of(firsts, set.categories.len())
}
