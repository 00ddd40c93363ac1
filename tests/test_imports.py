"""The house's floors: which stage may import which, and no import cycles (function-level imports included).

medprompt's folders are the pipeline's stages; data flows one way, so a stage imports only from the stages
below it (training and inference, side by side, never from each other), and a module that one other stage
alone uses belongs in that stage's folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("medprompt", "preprocessing")
FLOORS = {"common": 0, "data": 1, "backbones": 2, "methods": 3, "training": 4, "inference": 4, "evaluation": 5,
          "annotate": 6,
          "export": 6, "cli": 7}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body."""
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import submodule` reaches the submodule; anything else reaches the module itself
                submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                candidates = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return graph


ENTRY_POINT = "medprompt.__main__"  # `python -m medprompt` (and torchrun -m): the command line's, by Python's rule


def stage(module: str) -> str:
    """The stage folder of a medprompt module (the package's own `__init__` is common ground)."""
    if module == ENTRY_POINT:
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOORS) else "common"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (one representative per back edge)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_library_never_imports_the_dataset_adapters():
    graph = import_graph()
    crossing = {m: sorted(t for t in targets if t.startswith("preprocessing"))
                for m, targets in graph.items() if m.startswith("medprompt") and stage(m) != "cli"}
    assert {m: t for m, t in crossing.items() if t} == {}


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_every_module_lives_in_a_stage_folder():
    flat = [m for m in import_graph() if m.startswith("medprompt.") and m.count(".") == 1 and m.split(".")[1] not in FLOORS
            and m != ENTRY_POINT]
    assert flat == []


def test_a_stage_imports_only_from_the_stages_below_it():
    graph = import_graph()
    upward = {f"{m} -> {t}" for m, targets in graph.items() if m.startswith("medprompt")
              for t in targets if t.startswith("medprompt") and stage(t) != stage(m)
              and FLOORS[stage(t)] >= FLOORS[stage(m)]}
    assert upward == set()


def test_a_module_used_by_one_other_stage_alone_lives_in_that_stage():
    graph = import_graph()
    users: dict[str, set[str]] = {}
    for m, targets in graph.items():
        for t in targets:
            users.setdefault(t, set()).add(stage(m))
    for method_module in (m for m in graph if m.startswith("medprompt.methods.")):
        users.setdefault(method_module, set()).add("methods")  # the registry imports its package's modules at load
    # a stage's entry points, used by the command line alone, stay in their stage
    misplaced = {t: sorted(stages) for t, stages in users.items() if t.startswith("medprompt.") and t.count(".") > 1
                 and len(stages) == 1 and not stages & {stage(t), "cli"}}
    assert misplaced == {}
