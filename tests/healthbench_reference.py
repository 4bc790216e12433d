#!/usr/bin/env python3
"""Independent reference for HealthBench scoring, written from the published formula
(HealthBench paper Eq. 1-4 and simple-evals' healthbench_eval.py), sharing no code
with tribunal.

usage: healthbench_reference.py DATA_DIR OUT.jsonl SEED

Reads every *.jsonl file in DATA_DIR, keeps one row per prompt_id (the one with the
most rubric items; ties keep the first seen), adds `criteria_met` to every rubric item
from random.Random(SEED) (met with probability 1/2), writes the rows to OUT.jsonl and
prints the expected figures as JSON on stdout:
  {"n_rows": int, "overall": {"score", "n"}, "tags": {tag: {"score", "n"}},
   "bootstrap_std": float, "examples": {prompt_id: score}}
"""

import glob
import json
import os
import random
import sys


def calculate_score(items):
    """items: list of (points, met). None when there are no positive points."""
    possible = sum(p for p, _ in items if p > 0)
    if possible == 0:
        return None
    return sum(p for p, met in items if met) / possible


def clipped_mean(values):
    return min(1.0, max(0.0, sum(values) / len(values)))


def load_rows(data_dir):
    """The distinct rows of every *.jsonl file in data_dir, in first-seen order; a
    prompt seen twice keeps the row with more rubric items."""
    rows, order = {}, []
    for path in sorted(glob.glob(os.path.join(data_dir, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                pid = row["prompt_id"]
                if pid not in rows:
                    order.append(pid)
                    rows[pid] = row
                elif len(row["rubrics"]) > len(rows[pid]["rubrics"]):
                    rows[pid] = row
    return [rows[pid] for pid in order]


def main():
    data_dir, out_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    loaded = load_rows(data_dir)
    rows = {row["prompt_id"]: row for row in loaded}
    order = [row["prompt_id"] for row in loaded]
    rng = random.Random(seed)
    overall = []
    tag_values = {}
    examples = {}
    with open(out_path, "w", encoding="utf-8") as out:
        for pid in order:
            row = rows[pid]
            for item in row["rubrics"]:
                item["criteria_met"] = rng.random() < 0.5
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            items = [(c["points"], c["criteria_met"]) for c in row["rubrics"]]
            score = calculate_score(items)
            assert score is not None, pid
            examples[pid] = score
            overall.append(score)
            for tag in row["example_tags"]:
                tag_values.setdefault(tag, []).append(score)
            by_tag = {}
            for c in row["rubrics"]:
                for tag in c["tags"]:
                    by_tag.setdefault(tag, []).append((c["points"], c["criteria_met"]))
            for tag, sub in by_tag.items():
                s = calculate_score(sub)
                if s is not None:
                    tag_values.setdefault(tag, []).append(s)
    # Bootstrap std of the overall figure, with Python's own RNG: tribunal's value is
    # compared against it with a tolerance, since the two RNG streams differ.
    boot = random.Random(seed + 1)
    means = []
    for _ in range(1000):
        sample = [overall[boot.randrange(len(overall))] for _ in overall]
        means.append(clipped_mean(sample))
    mu = sum(means) / len(means)
    std = (sum((m - mu) ** 2 for m in means) / len(means)) ** 0.5
    json.dump(
        {
            "n_rows": len(order),
            "overall": {"score": clipped_mean(overall), "n": len(overall)},
            "tags": {
                t: {"score": clipped_mean(v), "n": len(v)} for t, v in tag_values.items()
            },
            "bootstrap_std": std,
            "examples": examples,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
