"""vz's own Python children import vz's modules, never a `vzcli/` in the working directory
(`vzcli.spawn`): `python -m` puts the working directory first on sys.path, and a `vz insert`
run in a directory holding another checkout or a hostile download ran that code as its ANN
builder (and `vz doctor` as its probe, the pytest plugin as its server)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vzcli import pytest_plugin, spawn

VZ = str(Path(sys.executable).parent / "vz")


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """A directory whose `vzcli` package, imported from anywhere, leaves a marker file."""
    d = tmp_path / "download"
    marker = tmp_path / "PWNED"
    (d / "vzcli").mkdir(parents=True)
    payload = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("__init__", "__main__", "annchild", "doctor"):
        (d / "vzcli" / f"{name}.py").write_text(payload)
    return d, marker


def _vz(cwd: Path, store: Path, *args: str, stdin: bytes = b"") -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("VZ_STORE", "PYTHONPATH")}
    env["VZ_MERGE_THRESHOLD"] = "100"
    p = subprocess.Popen([VZ, "--store", str(store), *args], cwd=cwd, env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p


def test_the_builder_child_and_doctors_probe_ignore_a_vzcli_in_the_working_directory(hostile, tmp_path) -> None:
    d, marker = hostile
    store = tmp_path / "store"
    p = _vz(d, store, "create", "k", "--dimensions", "4", "--metric", "cosine")
    assert p.communicate(timeout=120)[0] and p.returncode == 0
    lines = "".join(json.dumps({"id": f"v{i}", "values": [1, i % 7, i % 11, 1]}) + "\n" for i in range(3000))
    p = _vz(d, store, "insert", "k", "--file", "-")
    out, err = p.communicate(lines.encode(), timeout=300)
    assert p.returncode == 0, err
    con = sqlite3.connect(store / "catalog.sqlite3")
    ann_file, nodes = con.execute("SELECT ann_file, ann_nodes FROM indexes").fetchone()
    con.close()
    # built by the builder child (its pid in the name), not by the parent's fallback merge
    assert nodes == 3000 and ann_file.split("-")[2] != str(p.pid)
    p = _vz(d, store, "doctor", "--json")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert json.loads(out)["healthy"] is True  # its probe searched the file
    assert not marker.exists()


def test_the_pytest_plugins_server_ignores_a_vzcli_in_the_working_directory(hostile, tmp_path, monkeypatch) -> None:
    d, marker = hostile
    monkeypatch.chdir(d)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    proc, url = pytest_plugin.start_server(tmp_path / "store", token="t" * 32, log_path=tmp_path / "log")
    try:
        assert url.startswith("http://127.0.0.1:")
    finally:
        pytest_plugin.stop_server(proc)
    assert not marker.exists()


def test_a_child_gets_this_processs_import_path_and_no_working_directory(hostile) -> None:
    d, marker = hostile
    code = "import sys, vzcli; print(vzcli.__file__); print(repr(sys.path[0]))"
    r = subprocess.run([*spawn.argv("vzcli.spawn")[:2], "-c", code], cwd=d, env=spawn.env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    file, first = r.stdout.splitlines()
    assert Path(file).resolve() == Path(pytest_plugin.__file__).resolve().parent / "__init__.py"
    assert first != repr(str(d)) and first != "''" and not marker.exists()
