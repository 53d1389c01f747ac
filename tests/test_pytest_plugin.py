"""The pytest plugin (vzcli/pytest_plugin.py), run by pytester as users run it: registered through
its entry point, `vz_store`, `vz_server` (environment, isolation, reset, one server per session,
stopped at the end), and no cost for runs that use neither."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ENV_KEYS = ["CLOUDFLARE_API_BASE_URL", "CLOUDFLARE_BASE_URL", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN",
            "CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL"]


def test_entry_point_registers_the_plugin_as_vzcli(pytester):
    eps = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in eps if ep.name == "vzcli"] == ["vzcli.pytest_plugin"]
    pytester.makepyfile("""
        def test_registered(pytestconfig):
            assert pytestconfig.pluginmanager.get_plugin("vzcli").__name__ == "vzcli.pytest_plugin"
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_run_without_the_fixtures_starts_nothing_and_imports_nothing(pytester):
    pytester.makepyfile("""
        import sys

        def test_plain():
            assert sorted(m for m in sys.modules if m.startswith("vzcli")) == ["vzcli", "vzcli.pytest_plugin"]
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--basetemp", str(pytester.path / "bt"))
    result.assert_outcomes(passed=1)
    assert not list((pytester.path / "bt").glob("vz-server*"))


def test_vz_starts_without_the_plugin():
    code = "import sys, vzcli.cli; print(json.dumps(['pytest' in sys.modules, 'vzcli.pytest_plugin' in sys.modules]))"
    p = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(p.stdout) == [False, False]


def test_vz_store(pytester):
    pytester.makepyfile("""
        import os

        def test_store(vz_store):
            assert os.environ["VZ_STORE"] == str(vz_store.path)
            assert not vz_store.path.exists() and vz_store.backend.list_indexes() == []
            vz_store.backend.create_index("docs", dimensions=3, metric="cosine")
            assert [i["name"] for i in vz_store.backend.list_indexes()] == ["docs"]
            assert (vz_store.path / "catalog.sqlite3").exists()

        def test_another_store(vz_store):
            assert vz_store.backend.list_indexes() == []
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


SERVER_TESTS = """
    import json, os, pathlib, urllib.error, urllib.request
    import pytest
    from cloudflare import Cloudflare

    STATE = pathlib.Path(__file__).parent / "state.json"

    def test_env_points_at_the_server(vz_server):
        assert vz_server.base_url.startswith("http://127.0.0.1:") and vz_server.base_url.endswith("/client/v4")
        assert {k: os.environ.get(k) for k in %(keys)r} == {
            "CLOUDFLARE_API_BASE_URL": vz_server.base_url, "CLOUDFLARE_BASE_URL": vz_server.base_url,
            "CLOUDFLARE_ACCOUNT_ID": vz_server.account_id, "CLOUDFLARE_API_TOKEN": vz_server.api_token,
            "CLOUDFLARE_API_KEY": None, "CLOUDFLARE_EMAIL": None}
        cf = Cloudflare()  # everything from the environment
        cf.vectorize.indexes.create(account_id=os.environ["CLOUDFLARE_ACCOUNT_ID"], name="docs",
                                    config={"dimensions": 3, "metric": "cosine"})
        assert [i["name"] for i in vz_server.backend.list_indexes()] == ["docs"]
        STATE.write_text(json.dumps({"pid": vz_server.pid}))

    def test_each_test_starts_with_no_indexes_on_the_same_server(vz_server):
        assert vz_server.backend.list_indexes() == []
        assert json.loads(STATE.read_text())["pid"] == vz_server.pid

    def test_reset(vz_server):
        for name in ("a-1", "a-2", "b-1"):
            vz_server.backend.create_index(name, dimensions=2, metric="euclidean")
        assert vz_server.reset(prefix="a-") == ["a-1", "a-2"]
        assert [i["name"] for i in vz_server.backend.list_indexes()] == ["b-1"]
        assert vz_server.reset() == ["b-1"]
        assert vz_server.reset() == []

    def test_the_server_requires_the_token(vz_server):
        url = f"{vz_server.base_url}/accounts/{vz_server.account_id}/vectorize/v2/indexes"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url)
        assert e.value.code == 401
"""


def test_vz_server(pytester, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "outer-token")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "real-key")
    monkeypatch.delenv("CLOUDFLARE_BASE_URL", raising=False)
    before = {k: os.environ.get(k) for k in ENV_KEYS}
    pytester.makepyfile(SERVER_TESTS % {"keys": ENV_KEYS})
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    assert {k: os.environ.get(k) for k in ENV_KEYS} == before  # restored after each test
    pid = json.loads((pytester.path / "state.json").read_text())["pid"]
    with pytest.raises(ProcessLookupError):  # stopped at the end of the session
        os.kill(pid, 0)


def test_vz_server_reports_a_server_that_does_not_start(pytester):
    pytester.makepyfile("""
        import sys
        import pytest
        import vzcli.pytest_plugin as plugin

        def test_start(tmp_path, monkeypatch):
            fake = tmp_path / "fake-python"
            fake.write_text("#!/bin/sh\\necho 'vz: cannot serve' >&2\\nexit 3\\n")
            fake.chmod(0o755)
            monkeypatch.setattr(sys, "executable", str(fake))
            with pytest.raises(plugin.VzServeError) as e:
                plugin.start_server(tmp_path / "store", token="t", log_path=tmp_path / "log")
            assert str(e.value) == (
                "vz serve exited (3) before listening; its stderr:\\nvz: cannot serve\\n")
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_fixtures_are_documented(pytester):
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    out = result.stdout.str()
    for name in ("vz_store", "vz_server", "vz_server_session"):
        assert f"\n{name} " in out or f"\n{name} [" in out, out
    assert "emptied of indexes" in out


def test_docs_show_the_fixtures():
    root = Path(__file__).parent.parent
    text = (root / "docs" / "testing.md").read_text(encoding="utf-8")
    for word in ("vz_store", "vz_server", "vz_server.reset()", "CLOUDFLARE_BASE_URL", "vz dev-binding",
                 "--vitest", "verbose: false", ".rejects", "/vz/reset"):
        assert word in text, word
