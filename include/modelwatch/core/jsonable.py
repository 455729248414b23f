"""JSON-ready values: numpy scalars to Python, tuples to lists, non-finite floats to None; a ``to_dict`` mixin for dataclasses."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from typing import Any

# -- serialisation -------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars -> Python, tuples -> lists, non-finite floats -> None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Serialisable:
    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (no NaN or inf)."""
        return plain(asdict(self))
