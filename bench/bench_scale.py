"""Scale (issue 17): what a vz query, insert and store cost as the index grows from 10k to 5M vectors.

Usage::

    .venv/bin/python bench/bench_scale.py                          # 10k, 100k, 1M, 5M x 128 and 1M x 768
    .venv/bin/python bench/bench_scale.py --sizes 10000x128,100000x128 --no-write
    .venv/bin/python bench/bench_scale.py --sizes 1000000x128 --reuse   # keep the cached raw usearch build

For every size N x D, on the seeded clustered data of bench/datagen.py (cosine, vz's default
settings), one run measures, in this order:

1. **Ingest.** raw usearch ``Index.add`` of the array (a child process, vz's M and
   ef_construction from ``vzcli.limits.HNSW_BUILD``, all cores as vz uses), then the whole
   ``vz insert`` process of the same rows as NDJSON (parse and SQLite included, index built
   when it exits). Vectors/s of each and their ratio; peak RSS of both (``/usr/bin/time -v``);
   disk = the store directory after the insert, per vector and as a ratio to N x D x 4 bytes.
2. **Whole-process query.** A 1,000-vector index goes into the same store. ``vz query <big>
   --json``, ``vz query <small> --json`` and ``python -c "import numpy, usearch.index"`` (the
   import floor) run round-robin ``--runs`` times (each on the next of 15 query vectors);
   medians, min-max, and the ratios big/small and big/floor. Peak RSS of a big query process.
3. **Per-query cost** (a child process): raw usearch ``search`` on vz's own HNSW file at vz's
   effective ef, ``LocalBackend(resident=True).query`` and one HTTP client of ``vz serve``,
   interleaved query by query. CPU per query (for HTTP: client + server threads, from
   ``/proc/<pid>/task/*/schedstat``) and wall per query; ratios to raw usearch. recall@10 of vz
   (library and HTTP) against brute force over all N rows for ``--queries`` queries.
4. **A small index in a big store.** A 10-vector upsert into the 1k index of this store, into
   the big index, and into a 1k index alone in a store of its own, round-robin.

Goals (issue 17) are printed next to each figure as PASS / MISS. Every ratio compares figures
from the same run, so a loaded machine shifts both sides alike; the load average is recorded.

Caching (under ``bench/out/``, ``VZ_BENCH_OUT`` moves it): the arrays (``data-NxD-s0.npy``, written
block by block), their NDJSON files, the exact top-10 of the queries, and with ``--reuse`` the raw
usearch build and its timing (rebuilt by default, so that the ingest ratio comes from one run).
The vz store is always rebuilt with the installed vz (that is what is measured) and removed after
its size unless ``--keep-stores``. Results: ``bench/out/scale.json`` (merged by size across runs),
the ``scale`` section of bench/RESULTS.md and bench/scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.common import BENCH, OUT, PY, VZ, med  # noqa: E402
from bench.peers.runner import du, proc_cpu_ns  # noqa: E402

DEFAULT_SIZES = "10000x128,100000x128,1000000x128,5000000x128,1000000x768"
K = 10
SMALL = 1000  # the small index that shares the big one's store
SCALE = OUT / "scale"
TIME = "/usr/bin/time"
FLOOR = [PY, "-c", "import numpy, usearch.index"]
BIG, SMALL_NAME = "big", "small"

# Goals of issue 17: (figure key, description, test on the value)
GOALS: dict[str, tuple[str, Callable[[float, int], bool]]] = {
    "wp_big_over_small": ("whole-process query <= 1.2x the 1k query at 1M, <= 1.5x at 5M",
                          lambda v, n: v <= (1.2 if n <= 1_000_000 else 1.5)),
    "lib_over_raw": ("in-process per query <= 1.5x raw usearch", lambda v, n: v <= 1.5),
    "http_over_raw": ("HTTP per query <= 1.5x raw usearch", lambda v, n: v <= 1.5),
    "recall": ("recall@10 >= 0.98 (goal 0.99)", lambda v, n: v >= 0.98),
    "query_rss_mib": ("query process peak RSS <= 100 MiB at 1M", lambda v, n: v <= 100),
    "insert_rss_over_raw": ("insert peak RSS <= raw float32 size", lambda v, n: v <= 1.0),
    "disk_over_raw": ("disk <= 2.2x raw float32", lambda v, n: v <= 2.2),
    "ingest_over_raw": ("ingest >= 0.8x raw usearch", lambda v, n: v >= 0.8),
}


def vz_settings() -> tuple[int, int, int]:
    """vz's (M, ef_construction, ef_search) for a new index, read from the installed code."""
    from vzcli.limits import HNSW_BUILD

    m, efc, efs = HNSW_BUILD
    return int(m), int(efc), int(efs)


def applies(key: str, n: int, dim: int) -> bool:
    """Whether the issue states goal `key` at this size (the query-RSS goal at 1M x 128, the
    whole-process ratio from 1M up; the others everywhere)."""
    if key == "query_rss_mib":
        return (n, dim) == (1_000_000, 128)
    if key == "wp_big_over_small":
        return n >= 1_000_000
    return key in GOALS


def verdict(key: str, value: float | None, n: int, dim: int) -> str:
    """PASS / MISS against the issue-17 goal of `key` at size n x dim ('' when there is none)."""
    if value is None or not applies(key, n, dim):
        return ""
    return "PASS" if GOALS[key][1](value, n) else "MISS"


# --- processes --------------------------------------------------------------------------------------

def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall, user+sys CPU and peak RSS (KiB) of one whole child process; failure raises.

    Peak RSS comes from ``/usr/bin/time``: a child forked by this (large) Python process would
    report at least this process's RSS at fork time as its ``ru_maxrss``.
    """
    e = dict(os.environ)
    e.pop("VZ_STORE", None)
    e.update(env or {})
    if not os.access(TIME, os.X_OK):
        wall, cpu = common.wall_cpu(cmd, env=e)
        return {"wall": wall, "cpu": cpu, "maxrss_kb": float("nan")}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t = time.perf_counter()
        r = subprocess.run([TIME, "-f", "%M %U %S", "-o", tf.name, *cmd], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=e)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode()[-1500:]}")
        rss, user, sys_ = tf.read().split()[-3:]
    return {"wall": wall, "cpu": float(user) + float(sys_), "maxrss_kb": float(rss)}


def catalog_row(store: Path, name: str) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        row = con.execute("SELECT * FROM indexes WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else {}
    finally:
        con.close()


def effective_ef(row: dict[str, Any], k: int = K) -> int:
    """The ef vz's HNSW search runs with: it asks usearch for k + 8 results, and usearch searches
    with ef = max(expansion_search, count) (vzcli/search.py). The one place to change if vz's
    rule changes; the per-query child checks it by comparing vz's results with raw usearch's."""
    return max(int(row.get("expansion_search") or vz_settings()[2]), k + 8)


# --- data -------------------------------------------------------------------------------------------

def exact_truth(n: int, dim: int, qs: np.ndarray, k: int = K) -> np.ndarray:
    """Exact cosine top-k row numbers of the queries over data(n, dim), cached."""
    p = SCALE / f"truth-{n}x{dim}-q{len(qs)}.npy"
    if p.exists():
        return np.load(p)
    best = chunked_topk(common.data(n, dim), qs, k)
    np.save(p, best)
    return best


def chunked_topk(data: np.ndarray, qs: np.ndarray, k: int, chunk: int = 262_144) -> np.ndarray:
    """``datagen.exact_topk`` (cosine) over `data` in row chunks: O(queries x chunk) memory, where
    one block over 5M rows would need a 200 x 5M float64 score matrix (8 GB)."""
    n = len(data)
    best_i = np.empty((len(qs), 0), dtype=np.int64)
    best_s = np.empty((len(qs), 0))
    for start in range(0, n, chunk):
        idx, sc = common.datagen.exact_topk(np.asarray(data[start:start + chunk]), qs, k, return_scores=True)
        best_i = np.concatenate([best_i, idx + start], axis=1)
        best_s = np.concatenate([best_s, sc], axis=1)
        order = np.lexsort((best_i, -best_s), axis=1)[:, :k]
        best_i = np.take_along_axis(best_i, order, axis=1)
        best_s = np.take_along_axis(best_s, order, axis=1)
    return best_i


def disk_needed(n: int, dim: int) -> int:
    """A generous estimate of the bytes one size needs: array, NDJSON (~12 bytes a value), store
    (~2.5x raw) and the raw usearch file (~1.3x raw)."""
    raw = n * dim * 4
    return int(raw * (1 + 3 + 2.5 + 1.3))


# --- 1. ingest --------------------------------------------------------------------------------------

def raw_build(n: int, dim: int, reuse: bool, dtype: str = "f16") -> dict[str, Any]:
    """Raw usearch ``add`` of data(n, dim) at vz's settings, in a child; cached with --reuse."""
    import usearch

    m, efc, _ = vz_settings()
    kind = "" if dtype == "f32" else f"-{dtype}"  # (f32 builds keep the name they had before vz stored f16)
    stem = SCALE / f"raw-{n}x{dim}-M{m}-efc{efc}{kind}-usearch{usearch.__version__}"
    meta = stem.with_suffix(".json")
    if reuse and meta.exists() and stem.with_suffix(".usearch").exists():
        res = json.loads(meta.read_text())
        res["cached"] = True
        return res
    common.data(n, dim)  # generated before the timing
    r = run_measured([PY, __file__, "_raw-build", str(n), str(dim), str(stem.with_suffix(".usearch")), dtype])
    res = json.loads(meta.read_text())
    res.update(maxrss_kb=r["maxrss_kb"], cached=False, when=time.strftime("%Y-%m-%d %H:%M"),
               load=os.getloadavg()[0])
    meta.write_text(json.dumps(res))
    return res


def _raw_build_child(n: int, dim: int, out: str, dtype: str) -> None:
    from usearch.index import Index

    m, efc, efs = vz_settings()
    data = np.load(common.OUT / f"data-{n}x{dim}-s0.npy")  # in memory, like an embedding array
    idx = Index(ndim=dim, metric="cos", dtype=dtype, connectivity=m, expansion_add=efc, expansion_search=efs)
    c, t = time.process_time(), time.perf_counter()
    idx.add(np.arange(n, dtype=np.uint64), data, threads=0)  # threads=0: all cores, as vz's merge
    add_s, add_cpu = time.perf_counter() - t, time.process_time() - c  # CPU of every thread
    idx.save(out)
    Path(out).with_suffix(".json").write_text(json.dumps({"add_s": add_s, "rate": n / add_s, "add_cpu": add_cpu,
                                                          "M": m, "efc": efc, "dtype": dtype,
                                                          "file_bytes": os.path.getsize(out)}))


def vz_insert(store: Path, n: int, dim: int) -> dict[str, Any]:
    shutil.rmtree(store, ignore_errors=True)
    nd = common.ndjson(n, dim)
    with open(nd, "rb") as fh:  # into the page cache first, as the raw build's array is in memory
        while fh.read(1 << 24):
            pass
    common.vz(store, "create", BIG, "--dimensions", str(dim), "--metric", "cosine")
    r = run_measured([VZ, "--store", str(store), "insert", BIG, "--file", str(nd)])
    row = catalog_row(store, BIG)
    return {"wall": r["wall"], "rate": n / r["wall"], "cpu": r["cpu"], "maxrss_kb": r["maxrss_kb"],
            "disk_bytes": du(store), "ann_nodes": row.get("ann_nodes"), "ann_file": row.get("ann_file")}


# --- 2. whole-process query -------------------------------------------------------------------------

def query_files(dim: int, count: int = 15) -> list[str]:
    d = SCALE / f"q-{dim}"
    d.mkdir(parents=True, exist_ok=True)
    qs = common.queries(count, dim, seed=7)
    out = []
    for i, q in enumerate(qs):
        p = d / f"{i}.json"
        if not p.exists():
            p.write_text(json.dumps(q.astype(float).tolist()))
        out.append(str(p))
    return out


def add_small(store: Path, dim: int) -> None:
    nd = SCALE / f"small-{dim}.ndjson"
    if not nd.exists():
        common.datagen.write_ndjson(nd, common.datagen.clustered(SMALL, dim, seed=5))
    common.vz(store, "create", SMALL_NAME, "--dimensions", str(dim), "--metric", "cosine")
    common.vz(store, "insert", SMALL_NAME, "--file", str(nd))


def whole_process(store: Path, dim: int, runs: int) -> dict[str, Any]:
    """Interleaved whole-process queries: wall medians (the goal's measure) and the processes' CPU
    medians, which a loaded machine disturbs far less (printed next to the wall ratios)."""
    files = query_files(dim)
    it = {"big": 0, "small": 0}
    cpu: dict[str, list[float]] = {"big": [], "small": [], "floor": []}

    def timed(key: str, cmd: Callable[[], list[str]]) -> Callable[[], float]:
        def f() -> float:
            w, c = common.wall_cpu(cmd())
            cpu[key].append(c)
            return w
        return f

    def q(name: str, key: str) -> Callable[[], list[str]]:
        def cmd() -> list[str]:
            it[key] += 1
            return [VZ, "--store", str(store), "query", name, "--vector-file", files[it[key] % len(files)],
                    "--top-k", str(K), "--json"]
        return cmd

    times = common.interleaved({"big": timed("big", q(BIG, "big")), "small": timed("small", q(SMALL_NAME, "small")),
                                "floor": timed("floor", lambda: FLOOR)}, runs)
    rss = max(run_measured(q(BIG, "big")())["maxrss_kb"] for _ in range(3))
    out: dict[str, Any] = {k: {"median": med(v), "min": min(v), "max": max(v), "cpu": med(cpu[k][-runs:])}
                           for k, v in times.items()}
    out["big_over_small"] = out["big"]["median"] / out["small"]["median"]
    out["big_over_floor"] = out["big"]["median"] / out["floor"]["median"]
    out["big_over_small_cpu"] = out["big"]["cpu"] / out["small"]["cpu"]
    out["big_over_floor_cpu"] = out["big"]["cpu"] / out["floor"]["cpu"]
    out["query_maxrss_kb"] = rss
    out["runs"] = runs
    return out


# --- 3. per-query cost (child) ----------------------------------------------------------------------

def per_query(store: Path, n: int, dim: int, nq: int, passes: int, ef: int | None) -> dict[str, Any]:
    out = SCALE / f"perq-{n}x{dim}.json"
    qp = SCALE / f"perq-q-{nq}x{dim}.npy"
    np.save(qp, common.queries(nq, dim))
    cmd = [PY, __file__, "_per-query", str(store), str(qp), str(out), str(passes), str(ef or 0)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"per-query child failed: {r.stderr[-2000:]}")
    return json.loads(out.read_text())


def start_server(store: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`vz serve` on a free port of 127.0.0.1, answering; returns (process, port)."""
    import http.client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # one worker: the CPU of a query is then all in this process (its threads), which is what is measured
    srv = subprocess.Popen([VZ, "serve", "--store", str(store), "--port", str(port), "--workers", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/client/v4/accounts/bench/vectorize/v2/indexes")
            c.getresponse().read()
            c.close()
            return srv, port
        except OSError:
            if time.monotonic() > deadline or srv.poll() is not None:
                srv.kill()
                raise RuntimeError("vz serve did not start") from None
            time.sleep(0.1)


def _per_query_child(store_s: str, qpath: str, out: str, passes: int, ef_override: int) -> None:
    import http.client

    from usearch.index import Index

    from vzcli.local import LocalBackend
    from vzcli.store import Store

    store = Path(store_s)
    qs = np.load(qpath)
    qls = [q.astype(float).tolist() for q in qs]
    row = catalog_row(store, BIG)
    ef = ef_override or effective_ef(row)
    be = LocalBackend(Store(store), resident=True)
    raw = None
    if row.get("ann_file"):
        raw = Index.restore(str(Store(store).index_dir(BIG) / row["ann_file"]), view=False)  # loaded, as vz's resident copy is (like with like)
        raw.expansion_search = ef
    srv, port = start_server(store)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    path = f"/client/v4/accounts/bench/vectorize/v2/indexes/{BIG}/query"

    def lib(i: int) -> list[int]:
        return [_row_number(m["id"]) for m in be.query(BIG, vector=qls[i], top_k=K)["matches"]]

    def http_q(i: int) -> list[int]:
        conn.request("POST", path, body=json.dumps({"vector": qls[i], "topK": K}).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            raise RuntimeError(f"HTTP query: {r.status} {body}")
        return [_row_number(m["id"]) for m in body["result"]["matches"]]

    def raw_q(i: int) -> list[int]:  # asks for what vz asks usearch for at top-k K with no deletes
        assert raw is not None
        return [int(x) for x in raw.search(qs[i], 2 * K, threads=1).keys[:K]]

    modes: dict[str, Callable[[int], list[int]]] = {"raw": raw_q, "lib": lib, "http": http_q}
    if raw is None:
        del modes["raw"]
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    ids: dict[str, list[list[int]]] = {m: [] for m in modes}
    try:
        for i in range(min(20, len(qs))):  # warm: map the file, fault in what a query touches
            for f in modes.values():
                f(i)
        for p in range(passes):
            for i in range(len(qs)):
                order = list(modes.items())  # rotated per query: whoever runs second finds the nodes cached
                for m, f in order[i % len(order):] + order[:i % len(order)]:
                    s0 = proc_cpu_ns(srv.pid) if m == "http" else 0
                    c = time.process_time()
                    t = time.perf_counter()
                    got = f(i)
                    wall[m].append(time.perf_counter() - t)
                    c = time.process_time() - c
                    if m == "http":
                        c += (proc_cpu_ns(srv.pid) - s0) / 1e9
                    cpu[m].append(c)
                    if p == 0:
                        ids[m].append(got)
    finally:
        conn.close()
        srv.terminate()
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
    res: dict[str, Any] = {"ef": ef, "nq": len(qs), "passes": passes, "ids": ids,
                           "wall": {m: med(v) for m, v in wall.items()},
                           "wall_range": {m: [min(v), max(v)] for m, v in wall.items()},
                           "cpu": {m: med(v) for m, v in cpu.items()}}
    if raw is not None:
        # raw usearch answers with vz's row keys: translate them to ids (outside the timing), then
        # check that it searches like vz (same ef): the share of identical top-10 lists
        try:
            ids["raw"] = _keys_to_ids(store, ids["raw"])
            res["same_as_raw"] = float(np.mean([a == b for a, b in zip(ids["lib"], ids["raw"], strict=True)]))
        except (sqlite3.Error, ValueError, KeyError) as e:
            del ids["raw"]
            res["same_as_raw_error"] = f"cannot map usearch keys to ids: {e}"
    Path(out).write_text(json.dumps(res))


def _keys_to_ids(store: Path, rows: list[list[int]]) -> list[list[int]]:
    """Ids (as ints) of vz row keys, read from the store's `vectors` table."""
    keys = sorted({k for r in rows for k in r})
    con = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        got = dict(con.execute("SELECT key, id FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                               (json.dumps(keys),)).fetchall())
    finally:
        con.close()
    return [[_row_number(got[k]) for k in r] for r in rows]


def _row_number(vid: str) -> int:
    """The data row an id names; -1 for the records the upsert runs add (`u0`...), in no truth set
    (a kept store queried again with --requery holds them)."""
    return int(vid) if vid.isdigit() else -1


# --- 4. small index in a big store ------------------------------------------------------------------

def small_upserts(store: Path, dim: int, runs: int) -> dict[str, Any]:
    ten = SCALE / f"ten-{dim}.ndjson"
    if not ten.exists():
        common.datagen.write_ndjson(ten, common.datagen.clustered(10, dim, seed=9),
                                    ids=[f"u{i}" for i in range(10)])
    alone = SCALE / f"alone-{dim}"  # rebuilt: made by the vz under test
    shutil.rmtree(alone, ignore_errors=True)
    add_small(alone, dim)

    def up(st: Path, name: str) -> Callable[[], float]:
        return lambda: common.wall([VZ, "--store", str(st), "upsert", name, "--file", str(ten)])

    t = common.interleaved({"small_in_big_store": up(store, SMALL_NAME), "big": up(store, BIG),
                            "small_alone": up(alone, SMALL_NAME)}, runs, warmup=1)
    out: dict[str, Any] = {k: {"median": med(v), "min": min(v), "max": max(v)} for k, v in t.items()}
    out["small_over_alone"] = out["small_in_big_store"]["median"] / out["small_alone"]["median"]
    out["small_over_big"] = out["small_in_big_store"]["median"] / out["big"]["median"]
    return out


# --- one size ---------------------------------------------------------------------------------------

def measure(n: int, dim: int, a: argparse.Namespace) -> dict[str, Any]:
    SCALE.mkdir(parents=True, exist_ok=True)
    size = f"{n}x{dim}"
    store = SCALE / f"store-{size}"
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {size}: {msg}", flush=True)  # noqa: E731
    t0 = time.perf_counter()
    log("data (cached after the first run)")
    common.ndjson(n, dim)
    qs = common.queries(a.queries, dim)
    truth = exact_truth(n, dim, qs)
    m, efc, efs = vz_settings()
    res: dict[str, Any] = {"n": n, "dim": dim, "M": m, "ef_construction": efc, "ef_search_default": efs,
                           "raw_bytes": n * dim * 4, "load_start": os.getloadavg()[0]}
    if a.requery:  # the kept store as it is now (e.g. after `vz optimize`); its insert figures as saved
        summary = OUT / ("scale-scratch.json" if a.no_write else f"{a.section}.json")  # where main saved it
        prev = json.loads(summary.read_text()).get(size) if summary.exists() else None
        if prev is None or not (store / "catalog.sqlite3").exists():
            raise SystemExit(f"--requery {size}: needs its kept store ({store}) and its saved row in {summary}")
        res.update({k: prev[k] for k in ("raw_build", "insert", "ingest_over_raw", "ingest_over_raw_cpu",
                                         "insert_rss_over_raw", "disk_per_vector", "disk_over_raw") if k in prev})
        res["requeried_after"] = prev.get("requeried_after") or prev.get("commit")  # the insert's commit
    else:
        if a.no_raw_build:  # no ingest ratio for this size; raw usearch still searches vz's own file below
            res["raw_build"] = {"skipped": True}
        else:
            log(f"raw usearch add (M={m}, ef_construction={efc}, {a.raw_dtype}){' (cached if present)' if a.reuse else ''}")
            res["raw_build"] = raw_build(n, dim, a.reuse, a.raw_dtype)
        log("vz insert")
        res["insert"] = vz_insert(store, n, dim)
        if not a.no_raw_build:
            res["ingest_over_raw"] = res["insert"]["rate"] / res["raw_build"]["rate"]
        if res["raw_build"].get("add_cpu"):  # CPU per vector: what each costs on an idle machine
            res["ingest_over_raw_cpu"] = res["raw_build"]["add_cpu"] / res["insert"]["cpu"]
        res["insert_rss_over_raw"] = res["insert"]["maxrss_kb"] * 1024 / res["raw_bytes"]
        res["disk_per_vector"] = res["insert"]["disk_bytes"] / n
        res["disk_over_raw"] = res["insert"]["disk_bytes"] / res["raw_bytes"]
        add_small(store, dim)
    log(f"whole-process queries ({a.runs} interleaved runs)")
    res["whole_process"] = wp = whole_process(store, dim, a.runs)
    res["wp_big_over_small"], res["wp_big_over_floor"] = wp["big_over_small"], wp["big_over_floor"]
    res["query_rss_mib"] = wp["query_maxrss_kb"] / 1024
    log(f"per-query cost, {a.queries} queries x {a.passes} passes (raw usearch, library, HTTP)")
    pq = per_query(store, n, dim, a.queries, a.passes, a.ef)
    ids = pq.pop("ids")
    res["per_query"] = pq
    res["recall"] = common.recall_at_k(ids["lib"], truth)
    res["recall_http"] = common.recall_at_k(ids["http"], truth)
    if "raw" in ids:
        res["recall_raw"] = common.recall_at_k(ids["raw"], truth)
    if "raw" in pq["cpu"]:
        res["lib_over_raw"] = pq["cpu"]["lib"] / pq["cpu"]["raw"]
        res["http_over_raw"] = pq["cpu"]["http"] / pq["cpu"]["raw"]
        res["lib_over_raw_wall"] = pq["wall"]["lib"] / pq["wall"]["raw"]
        res["http_over_raw_wall"] = pq["wall"]["http"] / pq["wall"]["raw"]
    log("10-vector upserts: small index in the big store, the big index, a small index alone")
    res["small_upsert"] = small_upserts(store, dim, a.upsert_runs)
    res["load_end"] = os.getloadavg()[0]
    res["seconds"] = time.perf_counter() - t0
    if not a.keep_stores and not a.requery:
        shutil.rmtree(store, ignore_errors=True)
    return res


# --- report -----------------------------------------------------------------------------------------

def fmt(key: str, v: float | None, r: dict[str, Any], spec: str = ".2f", suffix: str = "x") -> str:
    if v is None:
        return "-"
    vd = verdict(key, v, r["n"], r["dim"])
    return f"{v:{spec}}{suffix}" + (f" {vd}" if vd else "")


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms" if x < 0.1 else f"{x * 1000:.0f} ms"


def _cpu_note(x: float | None) -> str:
    return "" if x is None else f" (CPU {x:.2f}x)"


def report(results: dict[str, dict[str, Any]]) -> str:
    head = ["N x D", "ingest vec/s (raw usearch)", "ingest / raw", "insert peak RSS / raw f32",
            "disk B/vector (/ raw f32)", "whole-process query (1k; floor)", "/ 1k query", "/ floor",
            "query peak RSS", "lib per query / raw (CPU)", "HTTP per query / raw (CPU)", "recall@10",
            "10-vector upsert: 1k in this store / 1k alone / big"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size, r in results.items():
        wp, pq, up = r["whole_process"], r["per_query"], r["small_upsert"]
        raw = r["raw_build"]
        cached = " cached" if raw.get("cached") else ""
        lib = (f"{ms(pq['cpu']['lib'])} / {ms(pq['cpu']['raw'])} = {fmt('lib_over_raw', r.get('lib_over_raw'), r)}"
               if "raw" in pq["cpu"] else ms(pq["cpu"]["lib"]))
        http = (f"{ms(pq['cpu']['http'])} = {fmt('http_over_raw', r.get('http_over_raw'), r)}"
                if "raw" in pq["cpu"] else ms(pq["cpu"]["http"]))
        rows.append(" | ".join([
            f"| {size}",
            f"{r['insert']['rate']:,.0f} ({raw['rate']:,.0f}{cached})" if "rate" in raw
            else f"{r['insert']['rate']:,.0f} (raw not built)",
            fmt("ingest_over_raw", r.get("ingest_over_raw"), r) + _cpu_note(r.get("ingest_over_raw_cpu")),
            f"{r['insert']['maxrss_kb'] / 1024:,.0f} MiB = {fmt('insert_rss_over_raw', r['insert_rss_over_raw'], r)}",
            f"{r['disk_per_vector']:,.0f} ({fmt('disk_over_raw', r['disk_over_raw'], r)})",
            f"{ms(wp['big']['median'])} ({ms(wp['small']['median'])}; {ms(wp['floor']['median'])})",
            fmt("wp_big_over_small", r["wp_big_over_small"], r) + _cpu_note(wp.get("big_over_small_cpu")),
            f"{r['wp_big_over_floor']:.2f}x" + _cpu_note(wp.get("big_over_floor_cpu")),
            fmt("query_rss_mib", r["query_rss_mib"], r, ".0f", " MiB"),
            lib, http,
            fmt("recall", r["recall"], r, ".3f", "") + f" (HTTP {r['recall_http']:.3f}, ef {pq['ef']})",
            f"{ms(up['small_in_big_store']['median'])} / {ms(up['small_alone']['median'])} / "
            f"{ms(up['big']['median'])}",
        ]) + " |")
    return "\n".join(rows)


def details(results: dict[str, dict[str, Any]]) -> str:
    out = []
    for size, r in results.items():
        wp, pq, up = r["whole_process"], r["per_query"], r["small_upsert"]
        rng = lambda d: f"{ms(d['median'])} ({ms(d['min'])}-{ms(d['max'])})"  # noqa: E731
        same = f"; vz's top-10 equals raw usearch's for {pq['same_as_raw']:.0%} of queries" if "same_as_raw" in pq else ""
        out.append(
            f"- {size}: raw usearch add {r['raw_build'].get('add_s', float('nan')):.1f} s ({r['raw_build'].get('add_cpu', float('nan')):.0f} s CPU, peak RSS "
            f"{r['raw_build'].get('maxrss_kb', float('nan')) / 1024:,.0f} MiB); vz insert {r['insert']['wall']:.1f} s "
            f"({r['insert']['cpu']:.0f} s CPU), ANN nodes {r['insert']['ann_nodes']}. Whole-process query "
            f"median (min-max) of {wp['runs']}: big {rng(wp['big'])}, 1k {rng(wp['small'])}, floor {rng(wp['floor'])}. "
            f"Per query, wall median: raw {ms(pq['wall'].get('raw', float('nan')))}, lib {ms(pq['wall']['lib'])}, "
            f"HTTP {ms(pq['wall']['http'])} (ef {pq['ef']}{same}; raw usearch recall@10 {r.get('recall_raw', float('nan')):.3f}). 10-vector upsert median (min-max): "
            f"1k in this store {rng(up['small_in_big_store'])}, 1k alone {rng(up['small_alone'])}, "
            f"big {rng(up['big'])} (1k here / 1k alone {up['small_over_alone']:.2f}x). Load average "
            f"{r['load_start']:.1f} -> {r['load_end']:.1f}; {r['seconds'] / 60:.1f} min"
            + (f"; vz {r['commit']}, {r['when']}" if r.get("commit") else "")
            + (f"; queries re-measured (--requery) on the kept store, insert figures from {r['requeried_after']}"
               if "requeried_after" in r else "") + ".")
    return "\n".join(out)


def goal_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for size, r in results.items():
        for key, (desc, _) in GOALS.items():
            v = r.get(key)
            if v is not None and applies(key, r["n"], r["dim"]):
                lines.append(f"- {size}: {desc}: {v:.3f} -> **{verdict(key, v, r['n'], r['dim'])}**")
    return lines


def chart(results: dict[str, dict[str, Any]], png: Path) -> str:
    """Draw `png` with the bench venv's matplotlib (bench/peers/scale_chart.py); a note on failure."""
    from bench.compare import PEER_PY

    src = OUT / "scale-chart.json"
    src.write_text(json.dumps(results))
    if not Path(PEER_PY).exists():  # the results are saved already: a missing chart must not lose them
        return f"(chart not drawn: {PEER_PY} missing; run bench/setup_peers.sh or set VZ_BENCH_PEER_PYTHON)"
    r = subprocess.run([PEER_PY, str(BENCH / "peers" / "scale_chart.py"), str(src), str(png)],
                       capture_output=True, text=True)
    return f"![cost against N]({png.name})" if r.returncode == 0 else f"(chart not drawn: {r.stderr.strip()[-300:]})"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_raw-build":
        _raw_build_child(int(argv[1]), int(argv[2]), argv[3], argv[4])
        return 0
    if argv and argv[0] == "_per-query":
        _per_query_child(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=common.sizes, default=DEFAULT_SIZES, help="comma-separated NxD (default %(default)s)")
    ap.add_argument("--runs", type=int, default=15, help="interleaved whole-process query runs (default %(default)s)")
    ap.add_argument("--upsert-runs", type=int, default=9, help="interleaved 10-vector upserts (default %(default)s)")
    ap.add_argument("--queries", type=int, default=200, help="queries for recall and per-query cost (default %(default)s)")
    ap.add_argument("--passes", type=int, default=3, help="passes over the queries for per-query cost (default %(default)s)")
    ap.add_argument("--ef", type=int, default=0, help="ef for raw usearch (default: vz's effective ef from the catalog)")
    ap.add_argument("--reuse", action="store_true", help="reuse the cached raw usearch build and its timing")
    ap.add_argument("--render", action="store_true", help="measure nothing: rewrite the section and chart from "
                    "bench/out/SECTION.json (the sizes measured so far)")
    ap.add_argument("--no-raw-build", action="store_true", help="skip the raw usearch build (no ingest ratio; "
                    "saves its time at 5M)")
    ap.add_argument("--raw-dtype", choices=("f16", "f32"), default="f16",
                    help="scalar type of the raw usearch build (default %(default)s, what vz's files store)")
    ap.add_argument("--requery", action="store_true", help="no build: measure the queries again on each size's "
                    "kept store (e.g. after `vz optimize`), keeping its saved insert figures")
    ap.add_argument("--keep-stores", action="store_true", help="keep each size's vz store under bench/out/scale/")
    ap.add_argument("--quick", action="store_true", help="10000x128, 5 runs, 50 queries, --no-write")
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md, scale.png and scale.json alone")
    ap.add_argument("--section", default="scale", help="RESULTS.md section; also names bench/out/SECTION.json and "
                    "bench/SECTION.png (default %(default)s)")
    ap.add_argument("--title", default="S. Scale (issue 17): cost against N", help="heading of that section")
    a = ap.parse_args(argv)
    if a.render:
        a.sizes, a.no_write = [], False
    if a.quick:
        a.sizes, a.runs, a.upsert_runs, a.queries, a.no_write = [(10000, 128)], 5, 3, 50, True
    if min(a.runs, a.upsert_runs, a.queries, a.passes) < 1:
        ap.error("--runs, --upsert-runs, --queries and --passes must be at least 1")
    SCALE.mkdir(parents=True, exist_ok=True)
    started = common.machine()
    print(f"machine: {started}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    summary = OUT / f"{a.section}.json"
    for n, dim in a.sizes:
        need, free = disk_needed(n, dim), shutil.disk_usage(SCALE).free
        if need > free:
            print(f"skipping {n}x{dim}: needs about {need / 1e9:.0f} GB of disk, {free / 1e9:.0f} GB free", flush=True)
            continue
        r = results[f"{n}x{dim}"] = measure(n, dim, a)
        r["commit"], r["when"] = common.git_head(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(report({f"{n}x{dim}": r}), flush=True)
        if not a.no_write:  # saved per size: an interrupted run keeps what it measured
            merged = json.loads(summary.read_text()) if summary.exists() else {}
            merged[f"{n}x{dim}"] = r
            merged = dict(sorted(merged.items(), key=lambda kv: (kv[1]["dim"], kv[1]["n"])))
            summary.write_text(json.dumps(merged, indent=1))
    shown = results
    if not a.no_write:  # the table shows every size measured so far (each row says its commit and date)
        shown = json.loads(summary.read_text()) if summary.exists() else {}
    text = f"""## {a.title}

Command: `.venv/bin/python bench/bench_scale.py {" ".join(argv)}` (machine: {started}).{
    " Rendered from the sizes' saved results; each row's commit, date and load are under Details." if a.render else ""}

Clustered data (bench/datagen.py), cosine, vz's default settings (M={vz_settings()[0]},
ef_construction={vz_settings()[1]}, ANN files in f16); raw usearch built with the same M and
ef_construction, in {a.raw_dtype}, on all cores.
Ratios come from one run; goals are judged on wall time as the issue states them, with the CPU
ratio beside (less disturbed by other jobs on a shared machine). Whole-process query: median of
{a.runs} interleaved runs of the big index, a 1k index in the same store and the import floor
`python -c "import numpy, usearch.index"`. Ingest CPU ratio: raw usearch `add` CPU / `vz insert` CPU.
Per query: CPU medians over {a.queries} queries x {a.passes} passes, interleaved query by query
(HTTP = client + server threads); raw usearch searches vz's own file at vz's effective ef.
recall@10 against brute force over all N rows ({a.queries} queries). Peak RSS from `/usr/bin/time`.

{report(shown)}

Details:
{details(shown)}

Goals:
{chr(10).join(goal_lines(shown))}
"""
    if not a.no_write:
        from bench.results import update_section

        text += "\n" + chart(shown, BENCH / f"{a.section}.png") + "\n"
        update_section(a.section, text)
    else:
        (OUT / "scale-scratch.json").write_text(json.dumps(results, indent=1))
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
