"""The example Makefile: `make -j4` from a clean state, then again (nothing to do), then `make -B -j4`
(every command re-run on the built state) all succeed and leave the same index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _make(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("make") and shutil.which("jq"), "make and jq are needed (.ci/run installs them)"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["make", "-C", str(EXAMPLES), "-j4", f"STORE={tmp_path / 'store'}",
                           f"OUT={tmp_path / 'out'}", *extra], capture_output=True, text=True, env=env, timeout=300)


def _state(tmp_path: Path) -> tuple[list[str], str]:
    out = tmp_path / "out"
    ids = (out / "ids.txt").read_text().split()
    export = "\n".join(sorted((out / "export.ndjson").read_text().splitlines()))
    return ids, export


def test_makefile_pipeline_parallel_and_rerun(tmp_path: Path) -> None:
    first = _make(tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    ids, export = _state(tmp_path)
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 240
    assert ids[0] == "doc-001" and ids[-1] == "doc-240"
    records = [json.loads(line) for line in export.splitlines()]
    assert len(records) == 240 and {r["id"] for r in records} == set(ids)
    assert all(len(r["values"]) == 384 for r in records)
    recipes = json.loads((out / "query-recipes.json").read_text())
    assert recipes["count"] == 3
    assert [m["metadata"]["category"] for m in recipes["matches"]] == ["recipes"] * 3
    assert set(recipes["matches"][0]["metadata"]) == {"category", "year"}  # indexed properties only
    recent = json.loads((out / "query-recent.json").read_text())
    assert recent["count"] == 5
    assert all(m["metadata"]["year"] >= 2000 and m["metadata"]["category"] in ("music", "films")
               for m in recent["matches"])
    loaded = [json.loads((out / f"loaded-{c}.json").read_text()) for c in
              ("films", "books", "music", "places", "recipes", "technology")]
    assert [x["count"] for x in loaded] == [40] * 6

    again = _make(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout

    forced = _make(tmp_path, "-B")
    assert forced.returncode == 0, forced.stderr
    assert _state(tmp_path) == (ids, export)
