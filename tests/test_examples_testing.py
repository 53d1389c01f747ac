"""The two testing recipes run as users run them (docs/testing.md): examples/pytest with the
`vz_server` fixture and the `cloudflare` SDK, and examples/vitest-workers with Cloudflare's vitest
integration, both the current `@cloudflare/vitest-plugin` and the older
`@cloudflare/vitest-pool-workers` 0.23. Offline: scripts/test.sh installs the npm packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTEST_EXAMPLE = ROOT / "examples" / "pytest"
VITEST_EXAMPLE = ROOT / "examples" / "vitest-workers"
BINDINGS = ["VECTORIZE=example-search", "VECTORIZE_MUTATIONS=example-mutations"]
VENV_BIN = str(Path(sys.executable).parent)  # where `vz` is


@pytest.mark.interop
def test_pytest_example_passes():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "VZ_"))}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=PYTEST_EXAMPLE,
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1].startswith("6 passed in "), p.stdout


def test_vitest_example_shim_is_what_vz_dev_binding_writes(vz, tmp_path):
    r = vz("dev-binding", *BINDINGS, "--vitest", "--out", tmp_path / "shim")
    assert r.exit_code == 0, r.stderr
    committed = VITEST_EXAMPLE / "vz-vectorize"
    names = sorted(p.name for p in (tmp_path / "shim").iterdir())
    assert sorted(p.name for p in committed.iterdir()) == names
    for name in names:
        assert (committed / name).read_text() == (tmp_path / "shim" / name).read_text(), (
            f"examples/vitest-workers/vz-vectorize/{name} is stale: in examples/vitest-workers run "
            f"vz dev-binding {' '.join(BINDINGS)} --vitest --out vz-vectorize")


def node22_dir() -> str:
    """The directory of a Node >= 22, as scripts/node22.sh finds it, without installing anything."""
    cached = ROOT / ".cache" / "node22" / "node_modules" / ".bin"
    node = shutil.which("node")
    if node:
        major = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True,
                               text=True).stdout.strip()
        if major.isdigit() and int(major) >= 22:
            return str(Path(node).parent)
    assert (cached / "node").exists(), "Node >= 22 is needed: run scripts/test.sh (it runs scripts/node22.sh)"
    return str(cached)


def run_vitest(project: Path, tmp_path: Path) -> str:
    vitest = project / "node_modules" / ".bin" / "vitest"
    assert vitest.exists(), f"{project}/node_modules is missing: run scripts/test.sh (npm ci there)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "VZ_"))}
    env.update(PATH=os.pathsep.join([node22_dir(), VENV_BIN, os.environ["PATH"]]), NO_COLOR="1", CI="1",
               WRANGLER_SEND_METRICS="false", WRANGLER_LOG_PATH=str(tmp_path / "wrangler-logs"),
               CLOUDFLARE_CF_FETCH_ENABLED="false", HOME=str(tmp_path / "home"))
    p = subprocess.run([str(vitest), "run"], cwd=project, capture_output=True, text=True, env=env, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"Test Files\s+2 passed \(2\)", out) and re.search(r"Tests\s+8 passed \(8\)", out), out
    # The globalSetup stopped vz serve, which removed its temporary store.
    store = re.search(r"ephemeral store (\S+),", out)
    assert store and not Path(store.group(1)).exists(), out
    assert "vz serve: stopped" in out
    return out


@pytest.mark.interop
def test_vitest_example_passes_with_vitest_plugin(tmp_path):
    run_vitest(VITEST_EXAMPLE, tmp_path)


@pytest.mark.interop
def test_vitest_example_passes_with_vitest_pool_workers_0_23(tmp_path):
    """The same Worker and tests with the older package: its own package.json, lock and config
    (only the import differs), its own node_modules, so neither install sees the other's vitest."""
    legacy = VITEST_EXAMPLE / "pool-workers-0.23"
    project = tmp_path / "project"
    project.mkdir()
    for name in ("src", "test", "vz-vectorize"):
        shutil.copytree(VITEST_EXAMPLE / name, project / name)
    shutil.copy(VITEST_EXAMPLE / "wrangler.test.jsonc", project)
    for name in ("package.json", "vitest.config.mjs"):
        shutil.copy(legacy / name, project)
    (project / "node_modules").symlink_to(legacy / "node_modules")
    out = run_vitest(project, tmp_path)
    assert "v4.1.12" in out and "vitest-pool-workers has been renamed" in out
