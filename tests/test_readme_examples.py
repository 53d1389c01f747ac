"""The README's examples run as written, in order, on a fresh store.

Convention (keep it when editing README.md):
- Every line of a fenced ```bash block that starts with `vz ` is an example. They run in the order
  they appear, each through `bash -c` exactly as written (comments, quotes and pipes included), in
  one temporary directory with no VZ_* variables set, so the store is a fresh ./.vz. Each must
  exit 0 and print no error. Lines that do not start with `vz ` (pip, wrangler, shell loops) are
  prose for the reader and not run here.
- Left out, and listed in SKIP below with the reason: lines that need Cloudflare (`--remote`) or
  that keep a server running (`vz serve`).
- A ```python block that uses the `cloudflare` SDK is run after the bash lines, against `vz serve`
  on that same store (its base URL swapped for the test server's).
- To leave a whole block out, put `<!-- readme-examples: skip -->` on the line before its fence.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers_server import start_server, stop_server

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SKIP_MARK = "<!-- readme-examples: skip -->"
SKIP = {
    "--remote": "talks to Cloudflare's API",
    "vz serve": "keeps a server running (the SDK block below runs against one)",
}
README_SERVER = "http://127.0.0.1:8788"


def blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if m.group(1) == lang and before.strip() != SKIP_MARK:
            out.append(m.group(2))
    return out


def vz_lines() -> list[str]:
    return [line for block in blocks("bash") for line in block.splitlines()
            if line.startswith("vz ") and not any(s in line for s in SKIP)]


def test_the_convention_finds_the_examples() -> None:
    lines = vz_lines()
    assert [ln.split()[1] for ln in lines[:4]] == ["--help", "demo", "export", "create"], lines
    assert any(ln.startswith("vz dev-binding ") for ln in lines)
    skipped = [line for block in blocks("bash") for line in block.splitlines()
               if line.startswith("vz ") and any(s in line for s in SKIP)]
    assert skipped and all("--remote" in ln or ln.startswith("vz serve") for ln in skipped), skipped
    assert any("from cloudflare import" in b for b in blocks("python"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VZ_", "CLOUDFLARE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this checkout's vz
    return env


def test_readme_examples_run_in_order_on_a_fresh_store(tmp_path: Path) -> None:
    env = _env()
    for line in vz_lines():
        r = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and "✘" not in r.stderr, f"README line failed: {line}\n{r.stdout}\n{r.stderr}"
    # the Quick start's filtered query found its books
    q = subprocess.run(["vz", "query", "docs", "--vector-id", "doc-001", "--top-k", "3", "--return-metadata", "all",
                        "--filter", '{"category": "books"}', "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and '"count": 3' in q.stdout, q.stderr

    sdk = [b for b in blocks("python") if "from cloudflare import" in b]
    base_url, proc = start_server(tmp_path / ".vz", token="local", env=env)
    try:
        for src in sdk:
            assert README_SERVER in src
            namespace: dict[str, object] = {}
            exec(compile(src.replace(README_SERVER, base_url), "README.md", "exec"), namespace)  # noqa: S102
    finally:
        stop_server(proc)

