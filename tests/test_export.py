"""`vz export`: the NDJSON shape, --namespace, --output (atomic), progress on a terminal, and that
what it writes goes back in through `vz insert`/`vz upsert` and the real `wrangler vectorize insert`.
(Remote export and the cross-mode round trips are in test_remote.py.)"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_server import ServedStore, served_store  # noqa: F401  (fixture)
from interop_clients import WRANGLERS, Install


def nd(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in recs)


RECS = [
    {"id": "b", "values": [0.1, -2.5, 3.0], "namespace": "ns1", "metadata": {"genre": "x", "n": {"k": True}}},
    {"id": "a", "values": [1e-45, 3.4e38, -0.0]},
    {"id": "c", "values": [1, 2, 3], "metadata": {"tags": ["p", "q"], "year": 2001}, "namespace": "ns2"},
]


@pytest.fixture
def idx(vz: Any) -> str:
    assert vz("create", "idx", "--dimensions", "3", "--metric", "euclidean").exit_code == 0
    assert vz("insert", "idx", "--file", "-", input=nd(RECS)).exit_code == 0
    return "idx"


def test_shape_order_and_float32_text(vz: Any, idx: str) -> None:
    r = vz("export", idx)
    assert (r.exit_code, r.stderr) == (0, "")
    # id order; {id, values, metadata, namespace?}; values are the float64 text of the stored float32
    assert r.stdout == (
        '{"id":"a","values":[1.401298464324817e-45,3.3999999521443642e+38,-0.0],"metadata":{}}\n'
        '{"id":"b","values":[0.10000000149011612,-2.5,3.0],"metadata":{"genre":"x","n":{"k":true}},"namespace":"ns1"}\n'
        '{"id":"c","values":[1.0,2.0,3.0],"metadata":{"tags":["p","q"],"year":2001},"namespace":"ns2"}\n')


def test_namespace_filter(vz: Any, idx: str) -> None:
    assert [json.loads(x)["id"] for x in vz("export", idx, "--namespace", "ns2").stdout.splitlines()] == ["c"]
    assert vz("export", idx, "--namespace", "none-such").stdout == ""


def test_empty_index_and_unknown_index(vz: Any) -> None:
    assert vz("create", "empty", "--dimensions", "2", "--metric", "cosine").exit_code == 0
    r = vz("export", "empty")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    r = vz("export", "nope")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == '✘ [ERROR] vectorize.index.not_found - Index name "nope" [code: 3000]\n'


def test_output_file_is_written_atomically(vz: Any, idx: str, tmp_path: Path) -> None:
    out = tmp_path / "dump.ndjson"
    r = vz("export", idx, "--output", str(out))
    assert (r.exit_code, r.stdout) == (0, "")
    assert r.stderr == f"Exported 3 vectors from 'idx' to {out}\n"
    assert out.read_bytes().decode() == vz("export", idx).stdout
    # a failed export leaves an existing file as it was, and no temporary file behind
    out.write_text("keep me\n")
    r = vz("export", "nope", "-o", str(out))
    assert r.exit_code == 1 and out.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.ndjson", "store"]


def test_export_then_insert_and_upsert_round_trip(vz: Any, idx: str) -> None:
    dump = vz("export", idx).stdout
    for cmd in ("insert", "upsert"):
        assert vz("create", f"copy-{cmd}", "--dimensions", "3", "--metric", "euclidean").exit_code == 0
        r = vz(cmd, f"copy-{cmd}", "--file", "-", "--json", input=dump)
        assert (r.exit_code, r.json()["count"]) == (0, 3)
        assert vz("export", f"copy-{cmd}").stdout == dump
    got = {o["id"]: np.array(o["values"], dtype=np.float32) for o in map(json.loads, dump.splitlines())}
    for rec in RECS:
        assert got[rec["id"]].tobytes() == np.array(rec["values"], dtype=np.float32).tobytes()


def test_progress_is_shown_on_a_terminal_only(vz: Any, store: Path, tmp_path: Path) -> None:
    n = 10_000  # the export progress bar's threshold
    assert vz("create", "big", "--dimensions", "2", "--metric", "cosine").exit_code == 0
    data = b"".join(b'{"id":"v%05d","values":[%d,1]}\n' % (i, i) for i in range(n))
    assert vz("insert", "big", "--file", "-", input=data).exit_code == 0
    env = {**os.environ, "VZ_STORE": str(store), "TERM": "xterm", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    out = tmp_path / "big.ndjson"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vzcli", "export", "big", "-o", str(out)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:  # read the terminal until the process closes it
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(60) == 0
    text = seen.decode("utf-8", "replace")
    assert "Exporting big" in text and f"/{n}" in text, text
    assert f"Exported {n} vectors from 'big'" in text
    assert len(out.read_bytes().splitlines()) == n
    # not a terminal: no progress at all
    r = vz("export", "big", "-o", str(out))
    assert r.stderr == f"Exported {n} vectors from 'big' to {out}\n"


@pytest.mark.interop
@pytest.mark.parametrize("install", WRANGLERS)
def test_wrangler_vectorize_insert_accepts_the_export(vz: Any, idx: str, served_store: ServedStore,  # noqa: F811
                                                      tmp_path: Path, install: Install) -> None:
    from test_devbinding_e2e import free_port, offline_env

    dump = tmp_path / "dump.ndjson"
    assert vz("export", idx, "-o", str(dump)).exit_code == 0
    served = ["--store", str(served_store.store)]
    assert vz(*served, "create", "fromwr", "--dimensions", "3", "--metric", "euclidean").exit_code == 0
    env = {**offline_env(tmp_path / "wr", free_port(), install), "CLOUDFLARE_API_BASE_URL": served_store.api,
           "CLOUDFLARE_ACCOUNT_ID": served_store.account, "CLOUDFLARE_API_TOKEN": served_store.token or ""}
    p = subprocess.run([install.node, str(install.wrangler_js), "vectorize", "insert", "fromwr", "--file", str(dump)],
                       env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Successfully enqueued 3 vectors" in p.stdout
    assert vz(*served, "export", "fromwr").stdout == dump.read_text()
