"""Type and range rules for config values, checked before any work starts.

A value that YAML parsed from `--set key=value` or a user's file is checked
against its key's rule; the message names the key, the value and what is
allowed, so a typo costs one line instead of a traceback halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from medprompt.errors import MedpromptError


@dataclass(frozen=True)
class Rule:
    """What one key accepts: a whole number, a number, a flag, a word from `choices`, or a list of numbers
    (of whole numbers: "ints")."""

    kind: str  # "int", "number", "bool", "choice", "numbers", "ints"
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    choices: tuple[str, ...] = ()
    length: int | None = None  # for lists
    increasing: bool = False   # for lists: strictly increasing

    def describe(self) -> str:
        """'a whole number >= 1', 'a number in [0, 1]', 'one of ...', 'null or ...'."""
        what = {"int": "a whole number", "number": "a number", "bool": "true or false",
                "numbers": f"a list of {self.length or 'some'} numbers",
                "ints": f"a list of {self.length or 'some'} whole numbers", "choice": f"one of {list(self.choices)}"}[self.kind]
        if self.low is not None and self.high is not None:
            what += f" in [{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            what += f" >= {self.low:g}"
        if self.increasing:
            what += ", increasing"
        return f"null or {what}" if self.nullable else what

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if self.kind in ("numbers", "ints"):
            if not isinstance(value, list) or not value or (self.length is not None and len(value) != self.length):
                return False
            if not all(self.number_ok(v, int if self.kind == "ints" else float) for v in value):
                return False
            return not self.increasing or all(a < b for a, b in zip(value, value[1:]))
        return self.number_ok(value, int if self.kind == "int" else float)

    def number_ok(self, value: Any, kind: type) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            return False
        if value != value:  # NaN
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key (None where a section or the key is missing)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def check_config(config: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Raise on the first key whose value breaks its rule."""
    for key, rule in rules.items():
        value = lookup(config, key)
        if not rule.accepts(value):
            raise MedpromptError(f"config key {key}: {value!r} is not allowed; it takes {rule.describe()} "
                                 f"(--set {key}=...)")
