#!/usr/bin/env python3
"""Independent restatement of three published scoring methods, written from their
publications and sharing no code with tribunal (standard library only).

usage: scoring_reference.py METHOD DATA_DIR OUT.jsonl SEED
  METHOD: professional | quarkmed | livemedbench

Reads every *.jsonl file of HealthBench rows in DATA_DIR, keeps one row per prompt_id
(the one with the most rubric items; ties keep the first seen), turns each row into
the method's input with seeded verdicts from random.Random(SEED), writes the rows to
OUT.jsonl and prints the expected figures as JSON on stdout:
  {"n_rows", "overall": {"score", "n"}, "tags": {tag: {"score", "n"}},
   "bootstrap_std", "examples": {id: score or null}, ...method extras}

professional  HealthBench Professional (simple-evals --healthbench-professional-mode):
              rows rewritten in the Professional shape (conversation.messages,
              rubric_items [{criterion_text, points}], use_case/type/difficulty/
              specialty), each with a random `response` mixing 1- to 4-byte characters;
              adjusted = score - 0.0147 * (len(response) - 2000) / 500, len in code
              points, never clipped per example; means clipped to [0, 1]. Extras:
              "overall_length_adjusted", "tags_length_adjusted", "adjusted_examples".
quarkmed      QuarkMedBench technical report section 2.2, Eq. 2-4, on rubrics converted
              by this tier mapping: points >= 7 essential, 4..6 important, 1..3
              highlight, < 0 pitfall; criterion tags reduced to their axis:* tag.
              Judge grades 0/1/2 are drawn in the report's own units and written as
              tribunal credit (grade / 2); the score below is computed in grade units.
              Parameters rotate by row: published defaults; tag cap L and other gate
              ratios; tribunal's earlier essential_max rule.
livemedbench  LiveMedBench evaluate/metric_calc.py: HealthBench's per-case formula, 0
              when a case has no positive points, means clipped; a judge failure
              (null criteria_met, 1 in 10) counts as not met. Every 25th row keeps only
              its negative criteria, to exercise the zero case. Extra: "abstained".
"""

import json
import random
import sys

PRO_CENTER = 2000.0
PRO_PENALTY = 0.0147
# Characters of 1, 2, 3 and 4 UTF-8 bytes: the length counts code points, not bytes.
ALPHABET = "abcdefgh \n\u00e9\u00df\u65e5\u672c\U0001f642"
TIERS = ("essential", "important", "highlight", "pitfall")


# The shared rows are read exactly as the HealthBench reference reads them (the data
# loader only; every formula below is restated independently).
from healthbench_reference import load_rows  # noqa: E402  (same directory)


def clipped_mean(values):
    return min(1.0, max(0.0, sum(values) / len(values)))


def bootstrap_std(values, seed):
    boot = random.Random(seed)
    means = []
    for _ in range(1000):
        sample = [values[boot.randrange(len(values))] for _ in values]
        means.append(clipped_mean(sample))
    mu = sum(means) / len(means)
    return (sum((m - mu) ** 2 for m in means) / len(means)) ** 0.5


def figures(tag_values):
    return {t: {"score": clipped_mean(v), "n": len(v)} for t, v in tag_values.items()}


def hb_score(items):
    """items: (points, met). None without positive points (HealthBench Eq. 1-2)."""
    possible = sum(p for p, _ in items if p > 0)
    if possible == 0:
        return None
    return sum(p for p, met in items if met) / possible


def professional(rows, rng, out):
    overall, adjusted = [], []
    tags, tags_adj = {}, {}
    examples, adjusted_examples = {}, {}
    for row in rows:
        n = rng.randint(0, 8000)
        response = "".join(rng.choice(ALPHABET) for _ in range(n))
        items = [
            {"criterion_text": c["criterion"], "points": c["points"], "criteria_met": rng.random() < 0.5}
            for c in row["rubrics"]
        ]
        theme = next((t.split(":", 1)[1] for t in row["example_tags"] if t.startswith("theme:")), "none")
        slices = {
            "use_case": theme,
            "type": rng.choice(["question", "task"]),
            "difficulty": rng.choice(["easy", "medium", "hard"]),
            "specialty": rng.choice(["cardiology", "nephrology", "general medicine"]),
        }
        pro = {
            "id": row["prompt_id"],
            "conversation": {"messages": row["prompt"]},
            "rubric_items": items,
            **slices,
            "canary_string": row.get("canary", ""),
            "response": response,
        }
        ideal = (row.get("ideal_completions_data") or {}).get("ideal_completion")
        if ideal:
            pro["physician_response"] = ideal
        out.write(json.dumps(pro, ensure_ascii=False) + "\n")
        score = hb_score([(i["points"], i["criteria_met"]) for i in items])
        assert score is not None, row["prompt_id"]
        adj = score - PRO_PENALTY * ((len(response) - PRO_CENTER) / 500.0)
        examples[pro["id"]] = score
        adjusted_examples[pro["id"]] = adj
        overall.append(score)
        adjusted.append(adj)
        for field, value in slices.items():
            tag = f"{field}:{value}"
            tags.setdefault(tag, []).append(score)
            tags_adj.setdefault(tag, []).append(adj)
    return {
        "overall": {"score": clipped_mean(overall), "n": len(overall)},
        "tags": figures(tags),
        "overall_length_adjusted": {"score": clipped_mean(adjusted), "n": len(adjusted)},
        "tags_length_adjusted": figures(tags_adj),
        "examples": examples,
        "adjusted_examples": adjusted_examples,
        "headline": adjusted,
    }


def tier_of(points):
    if points >= 7:
        return "essential"
    if points >= 4:
        return "important"
    if points >= 1:
        return "highlight"
    return "pitfall"


def quark_params(i):
    """Row i's parameters: published defaults, then the two other variants."""
    base = {"w": {"essential": 2.0, "important": 1.0, "highlight": 1.0, "pitfall": 2.0},
            "r_essential": 0.5, "r_pitfall": 0.0, "rule": "earned_essential", "factor": 2.0, "L": None}
    if i % 3 == 1:
        base.update(r_essential=0.4, r_pitfall=0.25, L=1.5)
    elif i % 3 == 2:
        base.update(rule="essential_max", factor=1.0)
    return base


def quark_score(p, crits):
    """crits: (tier, grade 0..2, group). Eq. 2-4 in the report's grade units."""
    w = p["w"]
    if not any(t != "pitfall" for t, _, _ in crits):
        return None
    e = sum(g for t, g, _ in crits if t == "essential")
    e_max = 2 * sum(1 for t, _, _ in crits if t == "essential")
    pit = sum(g for t, g, _ in crits if t == "pitfall")
    pit_max = 2 * sum(1 for t, _, _ in crits if t == "pitfall")
    groups, groups_max = {}, {}
    for t, g, group in crits:
        if t in ("important", "highlight"):
            groups[group] = groups.get(group, 0.0) + w[t] * g
            groups_max[group] = groups_max.get(group, 0.0) + w[t] * 2
    # L is given in tribunal credit units (a full criterion earns 1); grades are twice that.
    cap_l = None if p["L"] is None else 2 * p["L"]
    per = (lambda x: x) if cap_l is None else (lambda x: min(x, cap_l))

    def cap(essential):
        if p["rule"] == "earned_essential":
            return p["factor"] * essential
        return p["factor"] * w["essential"] * e_max if e_max > 0 else float("inf")

    rejected = (e_max > 0 and e < p["r_essential"] * e_max) or (pit_max > 0 and pit > p["r_pitfall"] * pit_max)
    bonus = 0.0 if rejected else min(sum(per(v) for v in groups.values()), cap(e))
    reference_bonus = min(sum(per(v) for v in groups_max.values()), cap(e_max))
    # The reference (ideal) response triggers no pitfall, so R_pit = 0.
    denominator = w["essential"] * e_max + reference_bonus
    if denominator <= 0:
        return None
    raw = (w["essential"] * e + bonus - w["pitfall"] * pit) / denominator
    return min(1.0, max(0.0, raw))


def quarkmed(rows, rng, out):
    overall, tags, examples = [], {}, {}
    undefined = 0
    for i, row in enumerate(rows):
        p = quark_params(i)
        crits, criteria, verdicts = [], [], {}
        for j, c in enumerate(row["rubrics"]):
            tier = tier_of(c["points"])
            grade = rng.randrange(3)
            axis = [t for t in c["tags"] if t.startswith("axis:")][:1]
            cid = f"c{j}"
            crits.append((tier, grade, axis[0] if axis else "", axis))
            criteria.append({"id": cid, "text": c["criterion"], "tier": tier, "tags": axis})
            verdicts[cid] = ["none", "minor", "major"][grade] if tier == "pitfall" else grade / 2
        scoring = {"policy": "quarkmed", "r_essential": p["r_essential"], "r_pitfall": p["r_pitfall"],
                   "saturation": p["rule"], "saturation_factor": p["factor"]}
        if p["L"] is not None:
            scoring["tag_cap"] = p["L"]
        pid = row["prompt_id"]
        case = {
            "format": "case.v1",
            "case_id": pid,
            "conversation": row["prompt"],
            "response": "(graded offline)",
            "tags": row["example_tags"],
            "rubric": {"format": "rubric.v1", "id": f"quarkmed-{pid}", "version": 1,
                       "title": f"QuarkMed conversion of {pid}", "scoring": scoring, "criteria": criteria},
            "verdicts": verdicts,
        }
        out.write(json.dumps(case, ensure_ascii=False) + "\n")
        score = quark_score(p, [(t, g, grp) for t, g, grp, _ in crits])
        examples[pid] = score
        if score is None:
            undefined += 1
            continue
        overall.append(score)
        for tag in row["example_tags"]:
            tags.setdefault(tag, []).append(score)
        for tag in sorted({t for _, _, _, ts in crits for t in ts}):
            sub = [(t, g, grp) for t, g, grp, ts in crits if tag in ts]
            s = quark_score(p, sub)
            if s is not None:
                tags.setdefault(tag, []).append(s)
    return {
        "overall": {"score": clipped_mean(overall), "n": len(overall)},
        "tags": figures(tags),
        "examples": examples,
        "undefined": undefined,
        "headline": overall,
    }


def livemedbench(rows, rng, out):
    overall, tags, examples = [], {}, {}
    abstained = 0
    for i, row in enumerate(rows):
        rubrics = row["rubrics"]
        if i % 25 == 0 and any(c["points"] < 0 for c in rubrics):
            rubrics = [c for c in rubrics if c["points"] < 0]
        items = []
        for c in rubrics:
            met = None if rng.random() < 0.1 else rng.random() < 0.5
            abstained += met is None
            items.append({"criterion": c["criterion"], "points": c["points"], "tags": c["tags"], "criteria_met": met})
        out.write(json.dumps({**row, "rubrics": items}, ensure_ascii=False) + "\n")
        # A failed judge call counts as not met (their evaluator returns "0").
        graded = [(c["points"], c["criteria_met"] is True) for c in items]
        possible = sum(p for p, _ in graded if p > 0)
        score = sum(p for p, met in graded if met) / possible if possible > 0 else 0.0
        examples[row["prompt_id"]] = score
        overall.append(score)
        for tag in row["example_tags"]:
            tags.setdefault(tag, []).append(score)
        by_tag = {}
        for c in items:
            for tag in c["tags"]:
                by_tag.setdefault(tag, []).append((c["points"], c["criteria_met"] is True))
        for tag, sub in by_tag.items():
            # LiveMedBench publishes no tag figures; tags follow HealthBench (omitted
            # without positive points).
            s = hb_score(sub)
            if s is not None:
                tags.setdefault(tag, []).append(s)
    return {
        "overall": {"score": clipped_mean(overall), "n": len(overall)},
        "tags": figures(tags),
        "examples": examples,
        "abstained": abstained,
        "headline": overall,
    }


def main():
    method, data_dir, out_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    methods = {"professional": professional, "quarkmed": quarkmed, "livemedbench": livemedbench}
    if method not in methods:
        sys.exit(f"unknown method {method!r}; use one of {', '.join(methods)}")
    rows = load_rows(data_dir)
    rng = random.Random(seed)
    with open(out_path, "w", encoding="utf-8") as out:
        expected = methods[method](rows, rng, out)
    headline = expected.pop("headline")
    expected["n_rows"] = len(rows)
    # Python's own RNG: tribunal's value is compared with a tolerance.
    expected["bootstrap_std"] = bootstrap_std(headline, seed + 1)
    json.dump(expected, sys.stdout)


if __name__ == "__main__":
    main()
