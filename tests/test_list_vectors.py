"""list-vectors: count limits, stable byte order, opaque cursors, --all, and paging under concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corehelp import create, fails, rec, write


@pytest.fixture
def docs(vz):
    create(vz, "docs", 2)
    return "docs"


def _page(vz, name, *args):
    r = vz("list-vectors", name, *args, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()


def _walk(vz, name, count: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = _page(vz, name, "--count", str(count), *(["--cursor", cursor] if cursor else []))
        ids += [v["id"] for v in page["vectors"]]
        assert page["count"] == len(page["vectors"]) <= count
        if not page["isTruncated"]:
            assert page["nextCursor"] is None and page["cursorExpirationTimestamp"] is None
            return ids
        cursor = page["nextCursor"]


def test_empty_index(vz, docs) -> None:
    assert _page(vz, docs) == {"count": 0, "totalCount": 0, "isTruncated": False, "nextCursor": None,
                               "cursorExpirationTimestamp": None, "vectors": []}
    r = vz("list-vectors", docs)
    assert r.exit_code == 0 and r.stdout == "" and "No vectors found" in r.stderr
    r = vz("list-vectors", docs, "--all")
    assert r.exit_code == 0 and r.stdout == ""


def test_shape_default_count_and_byte_order(vz, docs) -> None:
    ids = [f"v{i:03d}" for i in range(150)] + ["B", "Z", "a", "é", "Éa", "~"]
    write(vz, docs, [rec(i, [1, 0]) for i in reversed(ids)])
    expected = sorted(ids, key=lambda s: s.encode())
    page = _page(vz, docs)
    assert list(page) == ["count", "totalCount", "isTruncated", "nextCursor", "cursorExpirationTimestamp", "vectors"]
    assert page["count"] == 100 and page["totalCount"] == 156 and page["isTruncated"] is True
    assert page["vectors"] == [{"id": i} for i in expected[:100]]
    assert page["cursorExpirationTimestamp"].endswith("Z")
    assert _walk(vz, docs, 7) == expected
    assert _walk(vz, docs, 1000) == expected
    # --all streams NDJSON, one {"id"} a line, the same order
    r = vz("list-vectors", docs, "--all")
    assert r.exit_code == 0
    assert [json.loads(line) for line in r.stdout.splitlines()] == [{"id": i} for i in expected]
    r = vz("list-vectors", docs, "--all", "--count", "3")
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == expected


def test_last_page_exactly_full(vz, docs) -> None:
    write(vz, docs, [rec(f"v{i}", [1, 0]) for i in range(4)])
    p1 = _page(vz, docs, "--count", "2")
    p2 = _page(vz, docs, "--count", "2", "--cursor", p1["nextCursor"])
    assert [v["id"] for v in p2["vectors"]] == ["v2", "v3"]
    # may be truncated with an empty next page, or not truncated; either way the walk ends cleanly
    if p2["isTruncated"]:
        assert _page(vz, docs, "--count", "2", "--cursor", p2["nextCursor"])["vectors"] == []
    assert _page(vz, docs, "--count", "4")["isTruncated"] is False


@pytest.mark.parametrize("count", ["0", "1001", "-1"])
def test_count_out_of_range(vz, docs, count) -> None:
    r = vz("list-vectors", docs, "--count", count, "--json")
    fails(r, 2, 40051)
    assert r.stdout == ""
    r = vz("list-vectors", docs, "--count", count, "--all")
    fails(r, 2, 40051)
    assert r.stdout == ""


@pytest.mark.parametrize("count", ["1", "1000"])
def test_count_bounds_fine(vz, docs, count) -> None:
    write(vz, docs, [rec("a", [1, 0]), rec("b", [0, 1])])
    assert _page(vz, docs, "--count", count)["count"] == min(2, int(count))


@pytest.mark.parametrize("cursor", ["garbage", "eyJpIjoxfQ", "e30", "!!!", "W10"])
def test_bad_cursor(vz, docs, cursor) -> None:
    write(vz, docs, [rec("a", [1, 0])])
    r = vz("list-vectors", docs, "--cursor", cursor, "--json")
    err = fails(r, 2, 40052)
    assert r.stdout == ""
    assert "List vectors cursor appears to be corrupted" in err


def test_cursor_of_another_index_or_a_recreated_one(vz, docs) -> None:
    write(vz, docs, [rec(f"v{i}", [1, 0]) for i in range(3)])
    create(vz, "other", 2)
    write(vz, "other", [rec(f"v{i}", [1, 0]) for i in range(3)])
    cur = _page(vz, docs, "--count", "1")["nextCursor"]
    fails(vz("list-vectors", "other", "--cursor", cur), 2, 40052)
    vz("delete", docs, "-y")
    create(vz, docs, 2)
    write(vz, docs, [rec(f"v{i}", [1, 0]) for i in range(3)])
    fails(vz("list-vectors", docs, "--cursor", cur), 2, 40052)


def test_expired_cursor(vz, docs, monkeypatch) -> None:
    write(vz, docs, [rec(f"v{i}", [1, 0]) for i in range(3)])
    cur = _page(vz, docs, "--count", "1")["nextCursor"]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3601)
    err = fails(vz("list-vectors", docs, "--cursor", cur), 2, 40052)
    assert "expired" in err


def test_cursor_with_all_is_usage_error(vz, docs) -> None:
    assert vz("list-vectors", docs, "--all", "--cursor", "x").exit_code == 2


def test_human_output_shows_next_page_command(vz, docs) -> None:
    write(vz, docs, [rec(f"v{i}", [1, 0]) for i in range(3)])
    r = vz("list-vectors", docs, "--count", "2")
    assert r.exit_code == 0
    assert "Showing 2 of 3 total vectors" in r.stdout and "vz list-vectors docs --cursor " in r.stdout


def test_pages_are_stable_across_deletes_and_inserts_in_process(vz, docs) -> None:
    ids = [f"k{i:03d}" for i in range(30)]
    write(vz, docs, [rec(i, [1, 0]) for i in ids])
    seen: list[str] = []
    cursor = None
    step = 0
    while True:
        page = _page(vz, docs, "--count", "4", *(["--cursor", cursor] if cursor else []))
        seen += [v["id"] for v in page["vectors"]]
        # between pages: delete a later id, add a new one before and after the cursor
        step += 1
        write(vz, docs, [rec(f"k{step:03d}x", [0, 1]), rec(f"a{step}", [0, 1])])
        vz("delete-vectors", docs, "--ids", f"k{29 - step:03d}x")
        if not page["isTruncated"]:
            break
        cursor = page["nextCursor"]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
    assert not any(s.startswith("a") for s in seen)  # sorted before the first cursor: never seen


# --- another process writing while we page ----------------------------------------------------------

WRITER = r"""
set -u
i=0
while [ ! -e "$STOP" ]; do
  i=$((i+1))
  # new ids interleave with the stable ones (base-0007 < base-0007-t3 < base-0008)
  printf '{"id":"base-%04d-t%d","values":[0,1]}\n{"id":"base-%04d-t%d","values":[1,1]}\n' \
    $(( (i*7) % 120 )) $i $(( (i*13) % 120 )) $i | "$VZ" insert docs --file - --json >/dev/null || exit 1
  "$VZ" delete-vectors docs --ids "base-$(printf %04d $(( ((i-1)*7) % 120 )))-t$((i-1))" --json >/dev/null || exit 1
done
"""


def _mutation(vz, name) -> str | None:
    return vz("info", name, "--json").json().get("processedUpToMutation")


def _wait_change(vz, name, old: str | None, proc: subprocess.Popen, deadline_s: float = 60) -> str | None:
    """Poll until another process has written since `old` (no sleeps as synchronisation)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        cur = _mutation(vz, name)
        if cur != old:
            return cur
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        time.sleep(0.01)  # polling interval only
    raise AssertionError("the writer process made no progress")


def test_paging_while_another_process_writes(vz, docs, store, tmp_path) -> None:
    base = [f"base-{i:04d}" for i in range(120)]
    write(vz, docs, [rec(i, [1, 0]) for i in base])
    vz_bin = str(Path(sys.executable).with_name("vz"))
    stop = tmp_path / "stop"
    env = {**os.environ, "VZ_STORE": str(store), "STOP": str(stop), "VZ": vz_bin}
    proc = subprocess.Popen(["bash", "-c", WRITER], env=env, stderr=subprocess.PIPE, text=True)
    try:
        last = _wait_change(vz, docs, _mutation(vz, docs), proc)
        seen: list[str] = []
        cursor = None
        writes_between_pages = 0
        while True:
            page = _page(vz, docs, "--count", "30", *(["--cursor", cursor] if cursor else []))
            seen += [v["id"] for v in page["vectors"]]
            if not page["isTruncated"]:
                break
            cursor = page["nextCursor"]
            last = _wait_change(vz, docs, last, proc)  # make sure the writer ran between these pages
            writes_between_pages += 1
        assert writes_between_pages >= 3
    finally:
        stop.touch()
        rc = proc.wait(timeout=60)
    assert rc == 0, proc.stderr.read() if proc.stderr else rc
    assert len(seen) == len(set(seen)), "an id repeated across pages"
    missing = set(base) - set(seen)
    assert not missing, f"ids that existed throughout were skipped: {sorted(missing)}"
    assert seen == sorted(seen, key=str.encode)
    # info agrees with the final state
    final = [json.loads(line)["id"] for line in vz("list-vectors", docs, "--all").stdout.splitlines()]
    info = vz("info", docs, "--json").json()
    assert info["vectorCount"] == len(final)
