"""One tool, one child process: ingest, timed queries, filtered queries, disk size.

Run by bench/compare.py (never imported by it), with the interpreter that has the tool: the
project venv for the vz modes, the bench venv (bench/setup_peers.sh) for the peers::

    python bench/peers/runner.py SPEC.json

SPEC (JSON): tool, workdir, data (a .npy of N x D float32, ids are row numbers), ndjson (the same
rows as Vectorize NDJSON with ``{"n": i}`` metadata, for vz), queries (.npy), filters (list of
``[label, limit]``: rows with ``n < limit``), efs (search-breadth settings to sweep where the tool has
one), nq_cli (queries for whole-process modes), out (where to write the result JSON), build (``{"M",
"ef_construction"}``: vz's HNSW build settings, which every HNSW tool builds with) and defaults (true for
the ``*-defaults`` rows: the tool's own build settings instead).

Each sweep point is labelled with the ef the search really runs with (``ef_label``): HNSW libraries
search with ef = max(ef, number of results asked for), and vz asks usearch for k + 8.

The result holds, per sweep setting, every query's latency and returned row ids; the parent
computes recall against exact search and reads peak memory from the child's rusage.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 10


def du(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, like ``du``)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


VZ_FETCH = K + 8  # vz asks usearch for k + 8 results (vzcli/search.py): its ef is max(ef, k + 8)


def ef_label(asked: int, fetched: int = K) -> str:
    """The ef a search really runs with, and what was asked when that differs."""
    eff = max(asked, fetched)
    return f"ef={eff}" + (f" (asked {asked})" if eff != asked else "")


def proc_cpu_ns(pid: int) -> int:
    """CPU time of every live thread of process `pid` in ns (schedstat; /proc/<pid>/stat ticks as fallback)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as fh:
                total += int(fh.read().split()[0])
        return total
    except (OSError, ValueError):
        return int(_proc_stat_cpu(pid) * 1e9)


def _proc_stat_cpu(pid: int) -> float:
    """CPU seconds of process `pid` from /proc/<pid>/stat: clock ticks, but it keeps the time of
    threads that have exited (a background merge), which the per-thread schedstat loses."""
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU seconds so far of this process and the children it has waited for."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


CPU: list[list[float]] = []  # per timed() call: CPU seconds per query in every process doing the work


def timed(fn, qs, server_pid: int | None = None) -> tuple[list[float], list[list[int]]]:
    """Latency and returned ids per query; the CPU time per query goes to ``CPU[-1]``.

    CPU time is measured too because the machine is shared: wall medians of millisecond calls
    mostly measure preemption by other jobs, CPU time is what the call costs on an idle machine.
    It counts every thread of this process (fair to tools that search with worker threads), the
    child processes it waited for (a ``vz query`` process per query for vz-cli) and the threads of
    ``server_pid`` (``vz serve`` for vz-http).
    """
    lat, ids, cpu = [], [], []
    for q in qs:
        s = proc_cpu_ns(server_pid) if server_pid else 0  # read outside this process's own CPU window
        c = _own_cpu()
        t = time.perf_counter()
        r = fn(q)
        lat.append(time.perf_counter() - t)
        c = _own_cpu() - c
        cpu.append(c + ((proc_cpu_ns(server_pid) - s) / 1e9 if server_pid else 0.0))
        ids.append([int(x) for x in r][:K])
    CPU.append(cpu)
    return lat, ids


def build(spec: dict[str, Any]) -> tuple[int, int]:
    """(M, ef_construction) every HNSW tool builds with: vz's, from the spec."""
    b = spec.get("build") or {"M": 16, "ef_construction": 64}
    return int(b["M"]), int(b["ef_construction"])


# --- vz -----------------------------------------------------------------------------------------

def _vz_set_ef(store: Path, ef: int) -> None:
    # vz has no public knob for HNSW ef yet; the per-index setting lives in the catalog, so the
    # sweep writes it there (the planner reads it on every query).
    con = sqlite3.connect(store / "catalog.sqlite3")
    with con:
        con.execute("UPDATE indexes SET expansion_search = ?", (ef,))
    con.close()


def run_vz_lib(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    from vzcli.local import LocalBackend
    from vzcli.store import Store

    store = Path(spec["workdir"]) / "store"
    dim = data.shape[1]
    t, c = time.perf_counter(), _own_cpu()
    be = LocalBackend(Store(store))
    be.create_index("b", dimensions=dim, metric="cosine")
    be.create_metadata_index("b", "n", "number")
    with open(spec["ndjson"], "rb") as fh:
        be.insert("b", fh)
    ingest = time.perf_counter() - t
    ingest_cpu = _own_cpu() - c
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": []}
    qls = [q.astype(float).tolist() for q in qs]
    be.query("b", vector=qls[0], top_k=K)  # map the file once
    for ef in spec["efs"]:
        _vz_set_ef(store, ef)
        lat, ids = timed(lambda q: [m["id"] for m in be.query("b", vector=q, top_k=K)["matches"]], qls)
        res["sweep"].append({"setting": ef_label(ef, VZ_FETCH), "lat": lat, "ids": ids, "cpu": CPU[-1]})
    _vz_set_ef(store, 64)
    for label, lim in spec["filters"]:
        flt = {"n": {"$lt": lim}}
        lat, ids = timed(lambda q, f=flt: [m["id"] for m in be.query("b", vector=q, top_k=K, filter=f)["matches"]], qls)
        res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
    res["disk_bytes"] = du(store)
    return res


def _vz_default_label(store: Path) -> str:
    con = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        (ef,) = con.execute("SELECT expansion_search FROM indexes WHERE name = 'b'").fetchone()
    finally:
        con.close()
    return "default: " + ef_label(int(ef), VZ_FETCH)


def _vz(store: Path, *args: str) -> bytes:
    exe = str(Path(sys.executable).parent / "vz")
    r = subprocess.run([exe, "--store", str(store), *args], capture_output=True, check=True)
    return r.stdout


def run_vz_cli(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    store = Path(spec["workdir"]) / "store"
    dim = data.shape[1]
    _vz(store, "create", "b", "--dimensions", str(dim), "--metric", "cosine")
    _vz(store, "create-metadata-index", "b", "--property-name", "n", "--type", "number")
    t, c = time.perf_counter(), _own_cpu()
    _vz(store, "insert", "b", "--file", spec["ndjson"])
    ingest = time.perf_counter() - t
    ingest_cpu = _own_cpu() - c
    qdir = Path(spec["workdir"]) / "q"
    qdir.mkdir(exist_ok=True)
    files = []
    for i, q in enumerate(qs[: spec["nq_cli"]]):
        p = qdir / f"{i}.json"
        p.write_text(json.dumps(q.astype(float).tolist()))
        files.append(str(p))

    def q_cli(extra: list[str]):
        def f(path: str) -> list[str]:
            out = json.loads(_vz(store, "query", "b", "--vector-file", path, "--top-k", str(K), "--json", *extra))
            return [m["id"] for m in out["matches"]]
        return f

    q_cli([])(files[0])  # warm
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [], "nq": len(files)}
    lat, ids = timed(q_cli([]), files)  # CPU: the vz process of each query (RUSAGE_CHILDREN)
    res["sweep"].append({"setting": _vz_default_label(store), "lat": lat, "ids": ids, "cpu": CPU[-1]})
    for label, lim in spec["filters"]:
        lat, ids = timed(q_cli(["--filter", json.dumps({"n": {"$lt": lim}})]), files)
        res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
    res["disk_bytes"] = du(store)
    return res


def _wait_merged(catalog: Path, name: str, threshold: int) -> None:
    """Poll the catalog until the index's ANN file covers all but fewer than `threshold` rows
    (vz's merge threshold: a smaller delta stays searched exactly, by design)."""
    con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        while True:
            row = con.execute("SELECT id, ann_max_key FROM indexes WHERE name = ?", (name,)).fetchone()
            delta = con.execute("SELECT count(*) FROM vectors WHERE key > ? AND +index_id = ?",
                                (row[1], row[0])).fetchone()[0]
            if delta < threshold:
                return
            time.sleep(0.05)
    finally:
        con.close()


def run_vz_http(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    import http.client
    import socket

    store = Path(spec["workdir"]) / "store"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).parent / "vz")
    # one worker: a single client's queries, and all the server's CPU in this one process's threads
    # (with several workers the CPU would be in child processes the measurement does not see)
    srv = subprocess.Popen([exe, "serve", "--store", str(store), "--port", str(port), "--workers", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = "/client/v4/accounts/bench/vectorize/v2/indexes"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                conn.request("GET", base)
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise RuntimeError("vz serve did not start") from None
                time.sleep(0.1)

        def call(method: str, path: str, body: bytes, ctype: str = "application/json") -> dict[str, Any]:
            conn.request(method, base + path, body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
            out = json.loads(r.read())
            if r.status != 200 or not out.get("success"):
                raise RuntimeError(f"{method} {path}: {r.status} {out}")
            return out["result"]

        dim = data.shape[1]
        call("POST", "", json.dumps({"name": "b", "config": {"dimensions": dim, "metric": "cosine"}}).encode())
        call("POST", "/b/metadata_index/create", json.dumps({"propertyName": "n", "indexType": "number"}).encode())
        lines = Path(spec["ndjson"]).read_bytes().splitlines(keepends=True)
        t, c, srv_c = time.perf_counter(), _own_cpu(), _proc_stat_cpu(srv.pid)
        batch = 5000  # the REST API's per-request maximum
        for i in range(0, len(lines), batch):
            call("POST", "/b/insert", b"".join(lines[i:i + batch]), "application/x-ndjson")
        t_acked = time.perf_counter() - t
        # vz serve merges the ANN file in the background: ingest ends when the file holds every row
        _wait_merged(store / "catalog.sqlite3", "b", threshold=2000)
        ingest = time.perf_counter() - t
        ingest_cpu = _own_cpu() - c + _proc_stat_cpu(srv.pid) - srv_c  # the server's merge threads too
        conn.close()  # idle longer than uvicorn's keep-alive (5 s) while the merge ran: reconnect
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        del lines
        qls = [q.astype(float).tolist() for q in qs]

        def q_http(flt):
            def f(q):
                body: dict[str, Any] = {"vector": q, "topK": K}
                if flt is not None:
                    body["filter"] = flt
                return [m["id"] for m in call("POST", "/b/query", json.dumps(body).encode())["matches"]]
            return f

        q_http(None)(qls[0])
        res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [],
                               "note": f"inserted in {batch}-record requests (the API maximum); the last "
                                       f"request was answered after {t_acked:.1f} s, the background merge "
                                       f"done after {ingest:.1f} s (the ingest figure)"}
        lat, ids = timed(q_http(None), qls, srv.pid)  # CPU: this client and the server's threads
        res["sweep"].append({"setting": _vz_default_label(store), "lat": lat, "ids": ids, "cpu": CPU[-1]})
        for label, lim in spec["filters"]:
            lat, ids = timed(q_http({"n": {"$lt": lim}}), qls, srv.pid)
            res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
        res["disk_bytes"] = du(store)
        # the server's own peak memory, since the work happens there
        try:
            with open(f"/proc/{srv.pid}/status") as fh:
                for ln in fh:
                    if ln.startswith("VmHWM:"):
                        res["server_maxrss_kb"] = int(ln.split()[1])
        except OSError:
            pass
        return res
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()


# --- raw usearch ----------------------------------------------------------------------------------

def run_usearch(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    from usearch.index import Index

    path = Path(spec["workdir"]) / "index.usearch"
    t, c = time.perf_counter(), _own_cpu()
    m, efc = build(spec)
    idx = Index(ndim=data.shape[1], metric="cos", dtype="f32", connectivity=m, expansion_add=efc)
    idx.add(np.arange(len(data), dtype=np.uint64), data, threads=0)
    idx.save(str(path))
    ingest = time.perf_counter() - t
    ingest_cpu = _own_cpu() - c
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [],
                           "note": "no filter API: filtered rows are not measured"}
    view = Index.restore(str(path), view=True)
    for ef in spec["efs"]:
        view.expansion_search = ef
        lat, ids = timed(lambda q: view.search(q, K, threads=1).keys, qs)
        res["sweep"].append({"setting": ef_label(ef), "lat": lat, "ids": ids, "cpu": CPU[-1]})
    res["disk_bytes"] = du(path)
    return res


# --- chromadb -----------------------------------------------------------------------------------------

def run_chroma(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    import chromadb

    path = Path(spec["workdir"]) / "chroma"
    t, c = time.perf_counter(), _own_cpu()
    client = chromadb.PersistentClient(path=str(path))
    m, efc = build(spec)
    hnsw: dict[str, Any] = {"space": "cosine"}
    if not spec.get("defaults"):  # else chromadb's own: max_neighbors 16, ef_construction 100
        hnsw.update(max_neighbors=m, ef_construction=efc)
    col = client.create_collection("bench", configuration={"hnsw": hnsw})
    built = col.configuration["hnsw"]
    step = min(client.get_max_batch_size(), 5000)
    for i in range(0, len(data), step):
        part = data[i:i + step]
        col.add(ids=[str(j) for j in range(i, i + len(part))], embeddings=part,
                metadatas=[{"n": j} for j in range(i, i + len(part))])
    ingest = time.perf_counter() - t  # add() returns once the rows are in sqlite and the HNSW index
    ingest_cpu = _own_cpu() - c
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [],
                           "note": f"built with max_neighbors={built['max_neighbors']}, ef_construction="
                                   f"{built['ef_construction']}; ef_search applied by reopening the client "
                                   "(it is read only when the HNSW index is loaded)"}

    def with_ef(ef: int):
        # Local chromadb 1.x reads ef_search only when it loads a segment's HNSW index into its
        # in-process index pool; col.modify() updates the stored configuration but not the loaded
        # index, and get_collection() reuses the pooled one. Closing the client drops the Rust
        # bindings (and the pool), so the reopened client loads the index from disk with this ef.
        nonlocal client
        client.get_collection("bench").modify(configuration={"hnsw": {"ef_search": ef}})
        client.close()
        client = chromadb.PersistentClient(path=str(path))
        c = client.get_collection("bench")
        assert c.configuration["hnsw"]["ef_search"] == ef
        c.query(query_embeddings=qs[:1], n_results=K)  # loads the index (untimed)
        return c

    for ef in spec["efs"]:
        col = with_ef(ef)
        lat, ids = timed(lambda q, c=col: c.query(query_embeddings=q[None, :], n_results=K)["ids"][0], qs)
        res["sweep"].append({"setting": ef_label(ef), "lat": lat, "ids": ids, "cpu": CPU[-1]})
    col = with_ef(64)
    for label, lim in spec["filters"]:
        w = {"n": {"$lt": lim}}
        lat, ids = timed(lambda q, c=col, w=w: c.query(query_embeddings=q[None, :], n_results=K, where=w)["ids"][0], qs)
        res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
    client.close()
    res["disk_bytes"] = du(path)
    return res


# --- lancedb ---------------------------------------------------------------------------------------------

def run_lancedb(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    import lancedb
    import pyarrow as pa

    path = Path(spec["workdir"]) / "lance"
    n, dim = data.shape
    t, c = time.perf_counter(), _own_cpu()
    db = lancedb.connect(str(path))
    vec = pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1), type=pa.float32()), dim)
    tbl = db.create_table("bench", pa.table({"id": pa.array(np.arange(n)), "n": pa.array(np.arange(n)),
                                             "vector": vec}))
    t_rows = time.perf_counter() - t
    # LanceDB's ANN index (IVF + PQ by default); without it every query is a flat scan.
    m, efc = build(spec)
    hnsw = {} if spec.get("defaults") else {"m": m, "ef_construction": efc}  # else m=20, ef_construction=300
    tbl.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ", **hnsw)
    tbl.create_scalar_index("n")
    ingest = time.perf_counter() - t
    ingest_cpu = _own_cpu() - c
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [],
                           "note": f"IVF_HNSW_SQ index ({'its default m=20, ef_construction=300' if not hnsw else f'm={m}, ef_construction={efc}'}); "
                                   f"rows written in {t_rows:.1f} s, the rest is index build"}

    def search(q, nprobes=None, ef=None, refine=None, where=None):
        s = tbl.search(q, vector_column_name="vector").distance_type("cosine").limit(K).select(["id"])
        if nprobes:
            s = s.nprobes(nprobes)
        if ef:
            s = s.ef(ef)
        if refine:
            s = s.refine_factor(refine)
        if where:
            s = s.where(where, prefilter=True)
        return s.to_arrow()["id"].to_pylist()

    search(qs[0])
    for nprobes, ef in spec.get("lance_sweep", [[20, 64], [50, 64], [50, 128]]):
        lat, ids = timed(lambda q, a=nprobes, b=ef: search(q, nprobes=a, ef=b), qs)
        res["sweep"].append({"setting": f"nprobes={nprobes}, {ef_label(ef)}", "lat": lat, "ids": ids, "cpu": CPU[-1]})
    for label, lim in spec["filters"]:
        lat, ids = timed(lambda q, w=f"n < {lim}": search(q, nprobes=50, where=w), qs)
        res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
    res["disk_bytes"] = du(path)
    return res


# --- qdrant local mode ----------------------------------------------------------------------------

def run_qdrant(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    import warnings

    from qdrant_client import QdrantClient, models

    warnings.simplefilter("ignore")
    path = Path(spec["workdir"]) / "qdrant"
    n, dim = data.shape
    t, c = time.perf_counter(), _own_cpu()
    client = QdrantClient(path=str(path))
    client.create_collection("bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    step = 1000
    for i in range(0, n, step):
        part = data[i:i + step]
        client.upsert("bench", points=models.Batch(ids=list(range(i, i + len(part))), vectors=part.tolist(),
                                                   payloads=[{"n": j} for j in range(i, i + len(part))]))
    ingest = time.perf_counter() - t
    ingest_cpu = _own_cpu() - c
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [],
                           "note": "local mode is exact (numpy brute force)"}

    def search(q, flt=None):
        r = client.query_points("bench", query=q.tolist(), limit=K, query_filter=flt)
        return [p.id for p in r.points]

    search(qs[0])
    # exact search: recall is 1 whatever the sample, and each query costs a full numpy scan
    nu = min(len(qs), 50)
    lat, ids = timed(search, qs[:nu])
    res["note"] += f"; unfiltered latency over the first {nu} queries"
    res["sweep"].append({"setting": "exact", "lat": lat, "ids": ids, "cpu": CPU[-1]})
    # A filtered query in local mode evaluates the payload filter point by point in Python
    # (~seconds each at 50k points), so only the first few queries are timed.
    nf = spec.get("nq_slow", 10)
    res["note"] += f"; filtered rows over the first {nf} queries only (seconds per query)"
    for label, lim in spec["filters"]:
        flt = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(lt=lim))])
        lat, ids = timed(lambda q, f=flt: search(q, f), qs[:nf])
        res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
    client.close()
    res["disk_bytes"] = du(path)
    return res


# --- sqlite-vec ---------------------------------------------------------------------------------------

def run_sqlite_vec(spec: dict[str, Any], data: np.ndarray, qs: np.ndarray) -> dict[str, Any]:
    import sqlite_vec

    path = Path(spec["workdir"]) / "vec.db"
    n, dim = data.shape
    t, c = time.perf_counter(), _own_cpu()
    db = sqlite3.connect(path)
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.enable_load_extension(False)
    db.execute(f"CREATE VIRTUAL TABLE items USING vec0(embedding float[{dim}] distance_metric=cosine, n integer)")
    with db:
        db.executemany("INSERT INTO items(rowid, embedding, n) VALUES (?, ?, ?)",
                       ((i, data[i].tobytes(), i) for i in range(n)))
    ingest = time.perf_counter() - t
    ingest_cpu = _own_cpu() - c
    res: dict[str, Any] = {"ingest_s": ingest, "ingest_cpu_s": ingest_cpu, "sweep": [], "filtered": [],
                           "note": "brute force only (vec0 has no ANN index)"}
    sql = "SELECT rowid FROM items WHERE embedding MATCH ? AND k = ? {} ORDER BY distance"

    def search(q, lim=None):
        if lim is None:
            return [r[0] for r in db.execute(sql.format(""), (q.tobytes(), K))]
        return [r[0] for r in db.execute(sql.format("AND n < ?"), (q.tobytes(), K, lim))]

    search(qs[0])
    # exact search: recall is 1 whatever the sample, and each query costs a full numpy scan
    nu = min(len(qs), 50)
    lat, ids = timed(search, qs[:nu])
    res["note"] += f"; unfiltered latency over the first {nu} queries"
    res["sweep"].append({"setting": "exact", "lat": lat, "ids": ids, "cpu": CPU[-1]})
    for label, lim in spec["filters"]:
        lat, ids = timed(lambda q, m=lim: search(q, m), qs)
        res["filtered"].append({"label": label, "lat": lat, "ids": ids, "cpu": CPU[-1]})
    db.close()
    res["disk_bytes"] = du(path)
    return res


TOOLS = {"vz-lib": run_vz_lib, "vz-cli": run_vz_cli, "vz-http": run_vz_http, "usearch": run_usearch,
         "chromadb": run_chroma, "lancedb": run_lancedb, "qdrant-local": run_qdrant, "sqlite-vec": run_sqlite_vec,
         "chromadb-defaults": run_chroma, "lancedb-defaults": run_lancedb}

VERSION_OF = {"vz-lib": "vzcli", "vz-cli": "vzcli", "vz-http": "vzcli", "usearch": "usearch",
              "chromadb": "chromadb", "lancedb": "lancedb", "qdrant-local": "qdrant-client",
              "sqlite-vec": "sqlite-vec", "chromadb-defaults": "chromadb", "lancedb-defaults": "lancedb"}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from importlib.metadata import version

    data = np.load(spec["data"])
    qs = np.load(spec["queries"])
    if spec["tool"].startswith("vz-"):
        # vz ingests the NDJSON file: read it once first, so that its timing, like the peers'
        # (whose input is the array above, already in memory), does not depend on the page cache
        with open(spec["ndjson"], "rb") as fh:
            while fh.read(1 << 24):
                pass
    Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)
    spec.setdefault("defaults", spec["tool"].endswith("-defaults"))
    res = TOOLS[spec["tool"]](spec, data, qs)
    # Peak RSS of this process since exec: VmHWM is per address space, unlike the parent's
    # ru_maxrss of the child, which on Linux keeps the parent's RSS at fork time as a floor.
    with open("/proc/self/status") as fh:
        for ln in fh:
            if ln.startswith("VmHWM:"):
                res["vmhwm_kb"] = int(ln.split()[1])
    res["version"] = version(VERSION_OF[spec["tool"]])
    res["python"] = sys.version.split()[0]
    Path(spec["out"]).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
