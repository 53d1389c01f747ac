"""Helpers shared by the core test files: records, NDJSON, snapshots and a numpy reference search."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

ERR_CODE_PREFIX = "[code: "


def ndjson(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def rec(vid: str, values: Iterable[float], **extra: Any) -> dict[str, Any]:
    return {"id": vid, "values": [float(x) for x in values], **extra}


def error_code(stderr: str) -> int:
    """The `[code: N]` of the one `✘ [ERROR]` line on stderr."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("✘ [ERROR]")]
    assert len(lines) == 1, stderr
    assert lines[0].rstrip().endswith("]") and ERR_CODE_PREFIX in lines[0], stderr
    return int(lines[0].rsplit(ERR_CODE_PREFIX, 1)[1].rstrip("] \n"))


def fails(r: Any, exit_code: int, code: int) -> str:
    """Assert a failed command: its exit code and the Cloudflare code of its one error line. Returns stderr."""
    assert r.exit_code == exit_code, (r.exit_code, r.stdout, r.stderr)
    assert error_code(r.stderr) == code, r.stderr
    return r.stderr


def create(vz: Callable[..., Any], name: str, dims: int, metric: str = "cosine") -> dict[str, Any]:
    r = vz("create", name, "--dimensions", str(dims), "--metric", metric, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()


def write(vz: Callable[..., Any], name: str, records: Iterable[dict[str, Any]], *, upsert: bool = False) -> dict[str, Any]:
    r = vz("upsert" if upsert else "insert", name, "--file", "-", "--json", input=ndjson(records))
    assert r.exit_code == 0, r.stderr
    return r.json()


def snapshot(vz: Callable[..., Any], name: str) -> tuple[Any, Any, Any]:
    """Everything observable about an index's contents: info, every id, every record."""
    info = vz("info", name, "--json")
    assert info.exit_code == 0, info.stderr
    ids = vz("list-vectors", name, "--all")
    assert ids.exit_code == 0, ids.stderr
    id_list = [json.loads(line)["id"] for line in ids.stdout.splitlines()]
    records: Any = []
    if id_list:
        got = vz("get-vectors", name, "--ids", *id_list, "--json")
        assert got.exit_code == 0, got.stderr
        records = got.json()
    return info.json(), id_list, records


def ref_topk(metric: str, q: Iterable[float], ids: list[str], vecs: np.ndarray, k: int) -> list[tuple[str, float]]:
    """Exact top-k as Cloudflare scores it: cosine similarity (desc), L2 (asc), negative dot (asc).

    Ties break by id so that comparisons are deterministic; callers compare scores, and ids only
    where the scores are distinct.
    """
    qv = np.asarray(list(q), dtype=np.float32).astype(np.float64)
    m = vecs.astype(np.float32).astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(m, axis=1) * np.linalg.norm(qv)
        score = (m @ qv) / np.where(norms > 0, norms, 1.0)
        order = sorted(range(len(ids)), key=lambda i: (-score[i], ids[i]))
    elif metric == "euclidean":
        score = np.sqrt(((m - qv) ** 2).sum(axis=1))
        order = sorted(range(len(ids)), key=lambda i: (score[i], ids[i]))
    else:
        score = -(m @ qv)
        order = sorted(range(len(ids)), key=lambda i: (score[i], ids[i]))
    return [(ids[i], float(score[i])) for i in order[:k]]


def assert_same_ranking(matches: list[dict[str, Any]], expected: list[tuple[str, float]], *, tol: float = 1e-9) -> None:
    """Same length, same scores in order, and the same ids wherever the score is not tied."""
    assert len(matches) == len(expected), (matches, expected)
    for m, (_eid, escore) in zip(matches, expected, strict=True):
        assert abs(m["score"] - escore) <= tol * max(1.0, abs(escore)), (matches, expected)
    got_ids = [m["id"] for m in matches]
    # compare as multisets per distinct score, so ties may come in any order
    def groups(pairs: list[tuple[str, float]]) -> dict[float, set[str]]:
        out: dict[float, set[str]] = {}
        for vid, s in pairs:
            out.setdefault(round(s, 9), set()).add(vid)
        return out
    got_g = groups(list(zip(got_ids, [e[1] for e in expected], strict=True)))
    exp_g = groups(expected)
    # the last score group may be cut by k, so only its membership size must agree
    last = round(expected[-1][1], 9) if expected else None
    for s, members in exp_g.items():
        if s == last:
            assert len(got_g.get(s, set())) == len(members)
        else:
            assert got_g.get(s) == members, (matches, expected)


def assert_ann_close(fast: list[dict[str, Any]], exact: list[dict[str, Any]], metric: str,
                     min_recall: float = 0.8) -> None:
    """An HNSW answer against the exact one: same length, every score exact and no better than the
    exact answer at its rank, and at least `min_recall` of the exact ids (HNSW may miss a node)."""
    assert len(fast) == len(exact), (fast, exact)
    by_id = {m["id"]: m["score"] for m in exact}
    for i, m in enumerate(fast):
        if m["id"] in by_id:
            assert m["score"] == by_id[m["id"]], (fast, exact)
        if metric == "cosine":
            assert m["score"] <= exact[i]["score"], (fast, exact)
        else:
            assert m["score"] >= exact[i]["score"], (fast, exact)
    if exact:
        recall = len({m["id"] for m in fast} & set(by_id)) / len(exact)
        assert recall >= min_recall, (recall, fast, exact)


def catalog_rows(store: Any) -> Any:
    """Every row of every catalog table, read-only; None when the store does not exist yet."""
    import sqlite3
    from pathlib import Path

    path = Path(store) / "catalog.sqlite3"
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("indexes", "vectors", "metadata_indexes", "mvals", "dead_keys", "mutations")]
    finally:
        db.close()


class SearchCalls:
    """Counts calls of `search.search` (the general query path) while installed."""

    def __init__(self, monkeypatch: Any) -> None:
        from vzcli import search

        self.n = 0
        real = search.search

        def counted(*a: Any, **kw: Any) -> Any:
            self.n += 1
            return real(*a, **kw)

        monkeypatch.setattr(search, "search", counted)
