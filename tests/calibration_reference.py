#!/usr/bin/env python3
"""Independent reference for tribunal's agreement statistics, using scikit-learn
(cohen_kappa_score), statsmodels (fleiss_kappa) and the krippendorff package.

usage:
  calibration_reference.py kqa NLI_medical_annotator.csv
      -> {"fleiss": x, "pairwise": {"physician_0|physician_1": k, ...}, "alpha": a}
  calibration_reference.py synthetic OUT.jsonl SEED N
      writes a calibration.v1 ordinal set with 3 humans and 2 judges (seeded), and prints
      {"fleiss", "alpha_ordinal", "pairwise": {...}, "judges": {name: {"vs_majority",
       "vs_majority_n", "vs_each": {human: k}}}, "weighted": {"linear", "quadratic"}}
"""

import csv
import json
import random
import sys

import krippendorff
import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score
from statsmodels.stats.inter_rater import fleiss_kappa

KQA = ["Entailment", "Neutral", "Contradiction"]


def fleiss_from_rows(rows, k):
    table = np.zeros((len(rows), k), dtype=int)
    for i, labels in enumerate(rows):
        for c in labels:
            table[i, c] += 1
    return float(fleiss_kappa(table, method="fleiss"))


def kqa(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = [[KQA.index(r[f"label_{j}"]) for j in range(3)] for r in rows]
    out = {"fleiss": fleiss_from_rows(labels, 3), "pairwise": {}}
    for a in range(3):
        for b in range(a + 1, 3):
            x = [l[a] for l in labels]
            y = [l[b] for l in labels]
            out["pairwise"][f"physician_{a}|physician_{b}"] = float(cohen_kappa_score(x, y))
    data = np.array([[l[j] for l in labels] for j in range(3)], dtype=float)
    out["alpha"] = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    print(json.dumps(out))


def synthetic(out_path, seed, n):
    rng = random.Random(seed)
    cats = ["poor", "fair", "good", "excellent"]
    humans = ["h1", "h2", "h3"]
    judges = {"judge-a": 0.8, "judge-b": 0.55}
    rows = []
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": "calibration.v1", "name": "synthetic", "scale": "ordinal", "categories": cats}) + "\n")
        for i in range(n):
            truth = rng.randrange(4)
            labels = {}
            for h in humans:
                labels[h] = truth if rng.random() < 0.75 else rng.randrange(4)
            for j, p in judges.items():
                labels[j] = truth if rng.random() < p else rng.randrange(4)
            rows.append(labels)
            item = {
                "id": f"s{i}",
                "category": "even" if i % 2 == 0 else "odd",
                "labels": [{"rater": r, "kind": "human" if r in humans else "judge", "value": cats[v]} for r, v in labels.items()],
            }
            f.write(json.dumps(item) + "\n")
    out = {"fleiss": fleiss_from_rows([[r[h] for h in humans] for r in rows], 4), "pairwise": {}, "judges": {}}
    data = np.array([[r[h] for r in rows] for h in humans], dtype=float)
    out["alpha_ordinal"] = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    for a in range(3):
        for b in range(a + 1, 3):
            x = [r[humans[a]] for r in rows]
            y = [r[humans[b]] for r in rows]
            out["pairwise"][f"{humans[a]}|{humans[b]}"] = float(cohen_kappa_score(x, y))
    x = [r["h1"] for r in rows]
    y = [r["h2"] for r in rows]
    out["weighted"] = {
        "linear": float(cohen_kappa_score(x, y, weights="linear")),
        "quadratic": float(cohen_kappa_score(x, y, weights="quadratic")),
    }
    for j in judges:
        truth, pred = [], []
        for r in rows:
            counts = [0] * 4
            for h in humans:
                counts[r[h]] += 1
            top = max(counts)
            if counts.count(top) == 1:
                truth.append(counts.index(top))
                pred.append(r[j])
        pooled_h = [r[h] for h in humans for r in rows]
        pooled_j = [r[j] for h in humans for r in rows]
        out["judges"][j] = {
            "vs_majority": float(cohen_kappa_score(truth, pred)),
            "vs_majority_n": len(truth),
            "vs_majority_macro_f1": float(f1_score(truth, pred, average="macro", labels=list(range(4)))),
            "vs_each": {h: float(cohen_kappa_score([r[h] for r in rows], [r[j] for r in rows])) for h in humans},
            "vs_each_macro_f1": {h: float(f1_score([r[h] for r in rows], [r[j] for r in rows], average="macro", labels=list(range(4)))) for h in humans},
            # HealthBench meta-eval: the judge against every human label in turn.
            "pooled_macro_f1": float(f1_score(pooled_h, pooled_j, average="macro", labels=list(range(4)))),
            "pooled_agreement": float(accuracy_score(pooled_h, pooled_j)),
            "pooled_n": len(pooled_h),
        }
    print(json.dumps(out))


def synthetic_binary(out_path, seed, n, live):
    """Benchmark sets (BENCHMARKS.md): binary with `met`; `live` adds case, response and
    one of 50 criteria per item and leaves the judge labels to a live run."""
    rng = random.Random(seed)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": "calibration.v1", "name": "live" if live else "binary", "scale": "nominal", "categories": ["false", "true"], "met": "true"}) + "\n")
        for i in range(n):
            truth = rng.random() < 0.45
            raters = [("h1", "human", 0.9), ("h2", "human", 0.85), ("h3", "human", 0.8)]
            if not live:
                raters += [("ja", "judge", 0.9), ("jb", "judge", 0.7)]
            labels = [{"rater": r, "kind": k, "value": truth if rng.random() < a else not truth} for r, k, a in raters]
            item = {"id": f"i{i}", "category": f"c{i % 4}", "labels": labels}
            if live:
                item.update({"case": f"Synthetic question {i}?", "response": f"Synthetic answer {i}.", "criterion": f"Criterion {i % 50}."})
            f.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "kqa":
        kqa(sys.argv[2])
    elif sys.argv[1] in ("synthetic-binary", "synthetic-live"):
        synthetic_binary(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[1] == "synthetic-live")
    else:
        synthetic(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
