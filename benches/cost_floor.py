#!/usr/bin/env python3
"""The judge-cost floor of per-criterion grading on the shared HealthBench rows (issue 13).

Run: python3 benches/cost_floor.py   (reads ../shared/data/healthbench; prints figures)

A model of the bill `benches/judge_throughput/cost.rs` measures, written to answer one
question the bench cannot: how low can *any* per-criterion prompt go against the same
mock? It re-implements the mock's billing exactly (tests/it/mock_openai.rs: its
word-piece tokenizer `token_ends`, the prompt text `<|role|>\\ncontent\\n` per message,
prefixes cached from 1,024 tokens in 128-token blocks, gpt-4.1 prices, the same 60-token
answer on every call) and bills, in the bench's order, the simple-evals-style prompt,
tribunal's v2 and v3 layouts (to check the model against the bench), and idealised
layouts no real grader would ship: no instructions at all, no delimiters, and a filler
sized per item to reach the cache minimum exactly. It prints each layout's cost ratio
to the simple-evals-style bill. Nothing here is part of tribunal; it only does
arithmetic over prompt texts.
"""
import glob
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "healthbench")
WORD_PIECE = 8
PRICES = (2.0, 0.5, 8.0)  # input, cached input, output; USD per million tokens
ANSWER_TOKENS = 60


def token_ends(text):
    """The mock's tokenizer rule (see tests/it/mock_openai.rs::token_ends)."""
    ends, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c.isalpha() or (c == " " and i + 1 < n and text[i + 1].isalpha()):
            if c == " ":
                i += 1
            k = 0
            while i < n and text[i].isalpha() and k < WORD_PIECE:
                i, k = i + 1, k + 1
        elif c.isascii() and c.isdigit():
            k = 0
            while i < n and text[i].isascii() and text[i].isdigit() and k < 3:
                i, k = i + 1, k + 1
        elif c.isspace():
            while i < n and text[i].isspace() and not (
                text[i] == " " and i + 1 < n and text[i + 1].isalpha()
            ):
                i += 1
        else:
            i += 1
        ends.append(i)
    return ends


class Bill:
    def __init__(self):
        self.seen, self.calls, self.inp, self.cached, self.usd = set(), 0, 0, 0, 0.0

    def admit(self, messages):
        text = "".join(f"<|{role}|>\n{content}\n" for role, content in messages)
        ends = token_ends(text)
        h, at, cached, length = hashlib.blake2b(digest_size=16), 0, 0, 1024
        while length <= len(ends):
            end = ends[length - 1]
            h.update(text[at:end].encode())
            at = end
            key = h.copy().digest()
            if key in self.seen:
                cached = length
            else:
                self.seen.add(key)
            length += 128
        self.calls += 1
        self.inp += len(ends)
        self.cached += cached
        self.usd += (
            (len(ends) - cached) * PRICES[0] + cached * PRICES[1] + ANSWER_TOKENS * PRICES[2]
        ) / 1e6


def rows():
    seen, items = set(), []
    for path in sorted(glob.glob(os.path.join(DATA, "*.jsonl"))):
        for line in open(path, encoding="utf-8"):
            r = __import__("json").loads(line)
            response = (r.get("ideal_completions_data") or {}).get("ideal_completion")
            if not response or r["prompt_id"] in seen:
                continue
            seen.add(r["prompt_id"])
            crits = [(c["criterion"], c["points"]) for c in r["rubrics"]]
            items.append((r["prompt"], response, crits))
    return items


def simple_evals_instructions():
    src = open(os.path.join(ROOT, "benches", "judge_throughput", "cost.rs"), encoding="utf-8").read()
    m = re.search(r'const SIMPLE_EVALS_INSTRUCTIONS: &str = "(.*?)";\n', src, re.S)
    return m.group(1).replace('\\"', '"')


def system_of(version, stem="binary", examples=True):
    t = open(os.path.join(ROOT, "judge-prompts", version, f"{stem}.jinja"), encoding="utf-8").read()
    system = t.split('{% if part == "system" %}\n', 1)[1].split("{% else %}", 1)[0]
    if examples:
        system = re.sub(r"\{% if item_chars < \d+ %\}\n|\{% endif %\}\n", "", system)
    else:
        system = re.sub(r"\{% if item_chars < \d+ %\}\n.*?\{% endif %\}\n", "", system, flags=re.S)
    return system.strip()


def neutralise(t):
    return t.replace("<<<", "‹‹‹").replace(">>>", "›››")


def labelled(nonce, kind, text):
    return f"<<<BEGIN_UNTRUSTED nonce={nonce} kind={kind}>>>\n{neutralise(text)}\n<<<END_UNTRUSTED nonce={nonce} kind={kind}>>>"


def compact(nonce, kind, text):
    return f"<<<{nonce} {kind}>>>\n{neutralise(text)}\n<<<{nonce} /{kind}>>>"


def bare(nonce, kind, text):
    return text


def item_part(prompt, response, nonce, fence, v2_spacing):
    """The user message up to the criterion, laid out as the v2 / v3 templates do."""
    blocks = [fence(nonce, f"turn-{i + 1}-{m['role']}", m["content"]) for i, m in enumerate(prompt)]
    rblock = fence(nonce, "response", response)
    if v2_spacing:
        head = f"Delimiter nonce for this item: {nonce}\n\n# Conversation\n"
        body = "".join(f"\n{b}\n\n" for b in blocks) + "\n# Response under evaluation (the final assistant turn)\n"
    else:
        head = f"Item nonce: {nonce}\n\n# Conversation\n"
        body = "".join(f"{b}\n" for b in blocks) + "\n# Response under evaluation (the final assistant turn)\n"
    chars = sum(len(b) for b in blocks) + len(rblock)
    return head + body + rblock + "\n\n# Criterion\n", chars


def criterion(text, points):
    s = f"[{points:+d}] {text}"
    if points < 0:
        s += "\n(Negative points: answer true if the response DID this undesirable thing.)"
    return s


def run(items, system_for, fence, v2_spacing=False):
    bill = Bill()
    for idx, (prompt, response, crits) in enumerate(items):
        nonce = hashlib.sha256(str(idx).encode()).hexdigest()[:16]
        user, chars = item_part(prompt, response, nonce, fence, v2_spacing)
        system = system_for(user, chars)
        for text, points in crits:
            messages = [("user", user + criterion(text, points))]
            if system:
                messages.insert(0, ("system", system))
            bill.admit(messages)
    return bill


def main():
    if not os.path.isdir(DATA):
        print("skipped: ../shared/data/healthbench is absent")
        if os.environ.get("CI") == "true":
            sys.exit(1)
        return
    items = rows()
    instructions = simple_evals_instructions()
    base = Bill()
    for prompt, response, crits in items:
        conv = "".join(f"{m['role']}: {m['content']}\n\n" for m in prompt) + f"assistant: {response}"
        for text, points in crits:
            base.admit([("user",
                "Your job is to read a conversation and one rubric item, and to decide whether the last turn of the conversation (the assistant's response) meets the rubric item.\n\n"
                f"# Conversation\n{conv}\n\n# Rubric item\n[{points}] {text}\n\n{instructions}")])
    print(f"{len(items)} rows, {base.calls} calls; simple-evals-style bill ${base.usd:.2f} "
          f"({base.inp} input tokens, {100 * base.cached / base.inp:.1f}% cached; "
          f"the 60-token answers are {100 * base.calls * ANSWER_TOKENS * PRICES[2] / 1e6 / base.usd:.1f}% of it)")

    v2 = system_of("v2")
    v3_full, v3_short = system_of("v3"), system_of("v3", examples=False)
    threshold = int(re.search(r"item_chars < (\d+)", open(os.path.join(ROOT, "judge-prompts", "v3", "binary.jinja")).read()).group(1))
    filler = "Reference notes. " * 1000

    def padded(rules):
        def system(user, _chars):
            need = 1024 + 64 - len(token_ends(f"<|system|>\n{rules}\n<|user|>\n{user}"))
            return rules if need <= 0 else rules + "\n" + filler[: token_ends(filler)[need]]
        return system

    layouts = [
        ("tribunal v2 (model of the bench row)", lambda u, c: v2, labelled, True),
        ("tribunal v3 (model of the bench row)", lambda u, c: v3_full if c < threshold else v3_short, compact, False),
        ("ideal: v3's rules, per-item filler to exactly 1,088 tokens", padded(v3_short), compact, False),
        ("ideal: no instructions, per-item filler to exactly 1,088 tokens", padded(""), compact, False),
        ("ideal: no instructions, no delimiters, per-item filler", padded(""), bare, False),
    ]
    for name, system_for, fence, v2_spacing in layouts:
        b = run(items, system_for, fence, v2_spacing)
        print(f"{name:66s} ${b.usd:6.2f}  ratio {b.usd / base.usd:.3f}  "
              f"({b.inp / b.calls:.0f} input tokens per call, {100 * b.cached / b.inp:.1f}% cached)")


if __name__ == "__main__":
    main()
