"""YAML configs from `configs/` (shipped as `medprompt.configs`), with `key.sub=value` overrides."""

from __future__ import annotations

import copy
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from medprompt.common.errors import MedpromptError


class ConfigLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads `2e-4` and `1E3` as floats (YAML 1.1 wants a dot in the mantissa)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python value, with `ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)


def bundled_config_path(name: str) -> Path:
    """Path of a config shipped with the package, e.g. `train` or `acdc`."""
    path = resources.files("medprompt.configs") / f"{name}.yaml"
    if not path.is_file():
        raise MedpromptError(f"no bundled config {name!r}; available: {bundled_config_names()}")
    return Path(str(path))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one YAML mapping, with errors that name the file."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise MedpromptError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise MedpromptError(f"{path}: not valid YAML{line} ({getattr(exc, 'problem', None) or 'unreadable'})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MedpromptError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def load_config(name: str, path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The bundled config `name`, updated by the YAML at `path`, then by `key.sub=value` overrides.

    `path` may also name a bundled config (e.g. `paper`) when no such file exists.
    """
    config = read_yaml(bundled_config_path(name))
    if path is not None:
        config = merge(config, read_yaml(user_config_path(path)))
    return apply_overrides(config, overrides)


def user_config_path(path: str | os.PathLike) -> Path:
    """A YAML file the user gives, or the bundled config of that name (`--config paper`)."""
    path = Path(path)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path
    try:
        return bundled_config_path(path.name)
    except MedpromptError as exc:
        raise MedpromptError(f"{path}: no such config file, and {exc}") from None


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update that returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings; values are parsed as YAML (numbers, lists, booleans)."""
    out = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise MedpromptError(f"override {item!r} is not of the form key=value")
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise MedpromptError(f"override {item!r}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise MedpromptError(f"override {item!r}: unknown key {key!r}; known here: {sorted(node)}")
        try:
            node[parts[-1]] = parse_yaml(raw)
        except yaml.YAMLError:
            raise MedpromptError(f"override {item!r}: the value {raw!r} is not valid YAML") from None
    return out


def dump_config(config: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))


# bundled configs that only change another one (given with --config NAME)
OVERLAYS = {"paper": "train", "encoder_prompts": "train"}


def bundled_config_names() -> list[str]:
    """Names of the configs shipped with the package: datasets and recipes, then `methods/NAME` (one per method)
    and `benchmarks/NAME` (the `medprompt benchmark` protocols)."""
    root = resources.files("medprompt.configs")
    top = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
    nested = [sorted(f"{folder}/{p.name[:-5]}" for p in (root / folder).iterdir() if p.name.endswith(".yaml"))
              for folder in ("methods", "benchmarks")]
    return top + [name for names in nested for name in names]


def describe_configs() -> str:
    """One line per bundled config: its name and the first line of its header comment."""
    lines = []
    for name in bundled_config_names():
        first = bundled_config_path(name).read_text().splitlines()[0].lstrip("# ")
        lines.append(f"  {name:<20} {first}")
    return ("bundled configs (show one with `medprompt config NAME`; `train --method NAME` adds methods/NAME "
            "to train):\n" + "\n".join(lines))


def show_config(name: str, path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> str:
    """The bundled config `name` with its comments, or resolved as YAML when changed by `path` or overrides."""
    overrides = list(overrides)
    if name in OVERLAYS:
        name, path = OVERLAYS[name], bundled_config_path(name) if path is None else path
    if path is None and not overrides:
        return bundled_config_path(name).read_text()
    return yaml.safe_dump(load_config(name, path, overrides), sort_keys=False)
