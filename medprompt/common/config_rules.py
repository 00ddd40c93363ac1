"""Type and range rules for config values, checked before any work starts.

A value that YAML parsed from `--set key=value` or a user's file is checked
against its key's rule; the message names the key, the value and what is
allowed, so a typo costs one line instead of a traceback halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from medprompt.common.errors import MedpromptError


@dataclass(frozen=True)
class Rule:
    """What one key accepts: a whole number, a number, a flag, a word from `choices`, a list of numbers (of whole
    numbers: "ints"), a list of words from `choices` ("words", any letter case), or a mapping from such words to
    whole numbers >= `low` ("counts")."""

    kind: str  # "int", "number", "bool", "choice", "numbers", "ints", "words", "counts"
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
                "ints": f"a list of {self.length or 'some'} whole numbers", "choice": f"one of {list(self.choices)}",
                "words": f"a list of words from {list(self.choices)}",
                "counts": f"a mapping of words from {list(self.choices)} to whole numbers"}[self.kind]
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
        if self.kind == "words":
            return isinstance(value, list) and bool(value) and all(self.word_ok(v) for v in value)
        if self.kind == "counts":
            return isinstance(value, Mapping) and bool(value) and all(
                self.word_ok(k) and self.number_ok(v, int) for k, v in value.items())
        if self.kind in ("numbers", "ints"):
            if not isinstance(value, list) or not value or (self.length is not None and len(value) != self.length):
                return False
            if not all(self.number_ok(v, int if self.kind == "ints" else float) for v in value):
                return False
            return not self.increasing or all(a < b for a, b in zip(value, value[1:]))
        return self.number_ok(value, int if self.kind == "int" else float)

    def word_ok(self, value: Any) -> bool:
        return isinstance(value, str) and value.upper() in {c.upper() for c in self.choices}

    def number_ok(self, value: Any, kind: type) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            return False
        if value != value:  # NaN
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


FRACTION = Rule("number", 0, 1)


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key (None where a section or the key is missing)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def check_config(config: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Raise on the first key whose value breaks its rule, or whose section is given a value that is no section."""
    for key, rule in rules.items():
        parts = key.split(".")
        for depth in range(1, len(parts)):
            section = ".".join(parts[:depth])
            value = lookup(config, section)
            if value is not None and not isinstance(value, Mapping):
                keys = sorted(k for k in rules if k.startswith(section + "."))
                raise MedpromptError(f"config key {section}: {value!r} is not allowed; it is a section of keys "
                                     f"({', '.join(keys)}): --set {keys[0]}=...")
        value = lookup(config, key)
        if not rule.accepts(value):
            raise MedpromptError(f"config key {key}: {value!r} is not allowed; it takes {rule.describe()} "
                                 f"(--set {key}=...)")


class ConfigSection:
    """Base of a config section kept as a frozen dataclass: its fields, their `--set` rules (`RULES`, keys relative
    to the section) and its parsing live together, in the module that uses the section."""

    RULES: ClassVar[dict[str, Rule]] = {}

    @classmethod
    def section_rules(cls, section: str) -> dict[str, Rule]:
        """The rules under their dotted keys in a config (`refine.min_island`, ...)."""
        return {f"{section}.{key}": rule for key, rule in cls.RULES.items()}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Any:
        """The section from its (checked) mapping; keys left out keep their defaults."""
        return cls(**dict(values or {}))
