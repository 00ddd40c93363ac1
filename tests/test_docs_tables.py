"""The documents' result tables are the files `medprompt benchmark` wrote, copied by benchmarks/docs_tables.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "benchmarks" / "docs_tables.py")
docs_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs_tables)


def test_every_generated_block_of_the_docs_is_its_benchmark_file(capsys):
    blocks = [m["source"] for doc in docs_tables.documents(ROOT) for m in docs_tables.BLOCK.finditer(doc.read_text())]
    assert {"benchmarks/recipe/summary.md", "benchmarks/volumes/summary.md"} <= set(blocks)
    assert docs_tables.main(["--check"]) == 0, capsys.readouterr().out


def write_project(root: Path, table: str) -> Path:
    (root / "docs" / "benchmarks" / "run").mkdir(parents=True)
    (root / "docs" / "benchmarks" / "run" / "summary.md").write_text(table)
    page = root / "docs" / "results.md"
    page.write_text("# Results\n\n<!-- generated from benchmarks/run/summary.md -->\n| a | b |\n|---|---|\n| 1 | 2 |\n"
                    "<!-- end generated -->\n\nAfter the table.\n")
    return page


def test_a_stale_block_is_named_by_check_and_rewritten_from_its_file(tmp_path, capsys):
    page = write_project(tmp_path, "| a | b |\n|---|---|\n| 1 | 3 |\n")
    assert docs_tables.main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/results.md: the block from benchmarks/run/summary.md is stale" in capsys.readouterr().out
    assert "| 1 | 2 |" in page.read_text()  # --check changes nothing
    assert docs_tables.main(["--root", str(tmp_path)]) == 0
    assert page.read_text() == ("# Results\n\n<!-- generated from benchmarks/run/summary.md -->\n| a | b |\n|---|---|\n"
                                "| 1 | 3 |\n<!-- end generated -->\n\nAfter the table.\n")
    assert docs_tables.main(["--check", "--root", str(tmp_path)]) == 0


def test_a_block_naming_a_missing_file_is_refused(tmp_path):
    page = write_project(tmp_path, "")
    page.write_text(page.read_text().replace("benchmarks/run/", "benchmarks/gone/"))
    with pytest.raises(SystemExit, match="results.md: its generated block names benchmarks/gone/summary.md"):
        docs_tables.main(["--check", "--root", str(tmp_path)])
