import json
import subprocess
import sys
from pathlib import Path


def test_installed_vz_help_runs(tmp_path: Path) -> None:
    vz = Path(sys.executable).with_name("vz")
    r = subprocess.run([str(vz), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0
    assert "Usage: vz [OPTIONS] COMMAND" in r.stdout
    assert r.stderr == ""


def test_python_m_vzcli_version(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "vzcli", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.startswith("vz ")


def test_demo_builds_and_queries(vz) -> None:
    r = vz("demo", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["index"] == "vz-demo" and out["count"] == 240
    assert [len(q["matches"]) for q in out["queries"]] == [3] * 6
    soup = out["queries"][1]
    assert soup["filter"] == {"category": "recipes"}
    assert {m["category"] for m in soup["matches"]} == {"recipes"}
    # a second run re-creates the index from scratch
    again = vz("demo", "--json").json()
    assert again["count"] == 240 and json.dumps(again["queries"]) == json.dumps(out["queries"])
