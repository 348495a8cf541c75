"""Numeric ranges declared once, on a config dataclass's field: `check` enforces them and the CLI builds its types from them."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .errors import ConfigError


def _num(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Range:
    """Numbers from `lo` to `hi` (None: unbounded on that side), each end included unless it is open;
    `unit` and `note` only word the messages ("in 0..10000 minutes (0 = none)")."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""
    note: str = ""

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            if self.lo_open or self.hi_open:
                text = f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
            else:
                text = f"in {_num(self.lo)}..{_num(self.hi)}"
        elif self.lo is not None:
            text = f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        elif self.hi is not None:
            text = f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        else:
            text = "a number"
        return text + (f" {self.unit}" if self.unit else "") + (f" ({self.note})" if self.note else "")


def bounded(default, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
            unit: str = "", note: str = "", label: str | None = None):
    """A dataclass field with its default and its range; `label` names it in messages (else its option or its words)."""
    rng = Range(lo, hi, lo_open, hi_open, unit, note)
    return dataclasses.field(default=default, metadata={"range": rng, "label": label})


def range_of(field: dataclasses.Field) -> Range | None:
    return field.metadata.get("range")


def is_integer(field: dataclasses.Field) -> bool:
    """Whether the field is annotated `int` (or `int | None`); the annotations are strings (`from __future__`)."""
    return str(field.type).split("|")[0].strip() in ("int", "<class 'int'>")


def check(config, options: bool = False) -> None:
    """ConfigError for the first field of `config` outside its range (None passes: not set). Messages name a field
    by its `label`, else as its command-line option (`options`: --calib-size) or in words (batch size)."""
    for f in dataclasses.fields(config):
        rng, value = range_of(f), getattr(config, f.name)
        if rng is None or value is None:
            continue
        integer = is_integer(f)
        if value not in rng or (integer and not isinstance(value, numbers.Integral)):
            label = f.metadata.get("label") or (f"--{f.name.replace('_', '-')}" if options else f.name.replace("_", " "))
            kind = "an integer " if integer and not isinstance(value, numbers.Integral) else ""
            raise ConfigError(f"{label} must be {kind}{rng}, got {value!r}")
