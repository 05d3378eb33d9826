"""The base of every spec model: strict, closed, frozen (gstc.spec, and the modes and scorings that plug into it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # No NaN or infinity anywhere: `.inf` is never a sensible rate, lr or width.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def as_mapping(key: str):
    """Accept the short form `field: name` for `field: {key: name}`."""

    def convert(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    return convert
