"""Config problems as a person can act on them: each names its key path and, for an unknown key, the fix.

A typo gets the closest valid key at that place (``did you mean 'treatment'?``); a key that is
valid elsewhere in the config gets where it belongs (`` `rollback` belongs under models[].rollback,
not models[].experiments[] ``), derived from the pydantic models themselves, so every key of every
section is covered without a hand-kept list.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, ValidationError


def key_path(loc: tuple) -> str:
    """A pydantic error location as a key path: ``models[0].experiments[1].split``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "model-")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _submodel(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The config model a field holds (directly, optionally, in a list or as dict values) and whether it is a collection."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = getattr(annotation, "__origin__", None)
    for arg in getattr(annotation, "__args__", ()):
        model, many = _submodel(arg)
        if model is not None:
            return model, many or origin in (list, dict)
    return None, False


def known_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at the parent of ``loc``, to suggest a fix for a typo."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _submodel(field.annotation)[0]
    return list(model.model_fields) if model else []


def key_homes(model: type[BaseModel], prefix: str = "", seen: frozenset[type[BaseModel]] = frozenset()) -> dict[str, list[str]]:
    """Every key under ``model`` with the generic paths where it is valid (``models[].rollback``)."""
    homes: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        homes.setdefault(name, []).append(path)
        inner, many = _submodel(field.annotation)
        if inner is not None and inner not in seen:
            for key, paths in key_homes(inner, path + ("[]" if many else ""), seen | {model}).items():
                homes.setdefault(key, []).extend(paths)
    return homes


def misplaced_hint(root: type[BaseModel], loc: tuple) -> str:
    """Where a key that is valid elsewhere in the config belongs, or an empty string."""
    key = str(loc[-1])
    homes = key_homes(root).get(key, [])
    if not homes:
        return ""
    here = re.sub(r"\[\d+\]", "[]", key_path(loc[:-1])) if loc[:-1] else "the top level"
    return f"; `{key}` belongs under {' or '.join(homes)}, not {here}"


def describe_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem of ``exc`` (a validation of ``root``), each starting with its key path."""
    problems = []
    for err in exc.errors():
        where = key_path(err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), known_keys(root, err["loc"]), n=1)
            hint = misplaced_hint(root, err["loc"]) or (f"; did you mean {close[0]!r}?" if close else "")
            problems.append(f"{where}: unknown key{hint}")
        else:
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return problems
