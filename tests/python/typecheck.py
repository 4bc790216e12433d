"""A run-time check that a JSON value fits a `tribunal_client.models` type, key by key.

The client's types are static (TypedDicts over plain dicts), so nothing at run time
would notice a response that drifted from them. `mismatches(value, T)` walks the value
against the annotation: unknown keys (the document forgot a field), missing required
keys, wrong primitive types, values outside a Literal. Every client test passes what
it received through it.
"""

from __future__ import annotations

import typing
from typing import Any, List, Literal, Union, get_args, get_origin

from typing import NotRequired, Required, is_typeddict

import tribunal_client.models as models


def _hints(tp: Any) -> dict[str, Any]:
    return typing.get_type_hints(tp, globalns=vars(models), include_extras=True)


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) in (Required, NotRequired):
        tp = get_args(tp)[0]
    return tp


def mismatches(value: Any, tp: Any, path: str = "$") -> List[str]:
    tp = _unwrap(tp)
    if isinstance(tp, typing.ForwardRef):
        tp = getattr(models, tp.__forward_arg__)
    if isinstance(tp, str):
        tp = getattr(models, tp)
    if tp is Any:
        return []
    if tp is type(None):
        return [] if value is None else [f"{path}: {value!r} is not null"]
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, wanted object {tp.__name__}"]
        hints = _hints(tp)
        found = [f"{path}.{k}: not declared in {tp.__name__}" for k in value if k not in hints]
        found += [f"{path}.{k}: required by {tp.__name__}, missing" for k in tp.__required_keys__ if k not in value]
        for k, v in value.items():
            if k in hints:
                found += mismatches(v, hints[k], f"{path}.{k}")
        return found
    origin = get_origin(tp)
    if origin is Union:
        options = [mismatches(value, t, path) for t in get_args(tp)]
        if any(not o for o in options):
            return []
        return [f"{path}: {value!r:.80} fits none of {tp}: " + " | ".join(o[0] for o in options)]
    if origin is Literal:
        return [] if value in get_args(tp) else [f"{path}: {value!r} not one of {get_args(tp)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, wanted array"]
        (item,) = get_args(tp)
        return [m for i, v in enumerate(value) for m in mismatches(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, wanted map"]
        _, item = get_args(tp)
        return [m for k, v in value.items() for m in mismatches(v, item, f"{path}[{k!r}]")]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: {value!r} is not a boolean"]
    if tp is int:
        # JSON Schema's `integer` is any number with no fractional part, so 7.0 is one
        # (the server writes some integral fields from f64s, e.g. a rubric's points).
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
        return [] if ok else [f"{path}: {value!r} is not an integer"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not a number"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: {value!r} is not a string"]
    return [f"{path}: no check for {tp}"]


def conforms(value: Any, tp: Any) -> Any:
    """`value`, after asserting it fits `tp` (every mismatch listed)."""
    found = mismatches(value, tp)
    assert not found, "response does not match the client's types:\n" + "\n".join(found[:20])
    return value
