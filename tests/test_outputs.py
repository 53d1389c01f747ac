"""Options that write a file (`export --output`, `dev-binding --out`) write through what the user named:
a symlink's target, a FIFO's reader, a device, a file keeping its mode and owner; never a half file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from vzcli import outfile

VZ = str(Path(sys.executable).with_name("vz"))
RECS = "".join(json.dumps({"id": f"v{i}", "values": [i, 1.5, -2.0]}) + "\n" for i in range(50))


@pytest.fixture
def idx(vz: Any) -> str:
    assert vz("create", "idx", "--dimensions", "3", "--metric", "cosine").exit_code == 0
    assert vz("insert", "idx", "--file", "-", input=RECS).exit_code == 0
    return "idx"


@pytest.fixture
def dump(vz: Any, idx: str) -> bytes:
    """What `vz export idx` prints: every output kind must receive exactly this."""
    r = vz("export", idx)
    assert r.exit_code == 0 and r.stdout.count("\n") == 50
    return r.stdout.encode()


def _export(vz: Any, path: Path | str) -> None:
    r = vz("export", "idx", "-o", str(path))
    assert (r.exit_code, r.stdout) == (0, ""), r.stderr
    assert r.stderr == f"Exported 50 vectors from 'idx' to {path}\n"


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_symlink_target_is_written_and_the_link_kept(vz: Any, dump: bytes, tmp_path: Path) -> None:
    real = tmp_path / "data" / "real.ndjson"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "link.ndjson"
    link.symlink_to(real)
    _export(vz, link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == dump
    assert _leftovers(tmp_path) == [] and _leftovers(real.parent) == []


def test_dangling_symlink_creates_its_target(vz: Any, dump: bytes, tmp_path: Path) -> None:
    link = tmp_path / "link.ndjson"
    link.symlink_to("new.ndjson")
    _export(vz, link)
    assert link.is_symlink() and (tmp_path / "new.ndjson").read_bytes() == dump


def test_fifo_reader_receives_everything(vz: Any, dump: bytes, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:  # blocks until the export opens the FIFO for writing
            got.append(f.read())  # until the export closes it

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    _export(vz, fifo)
    t.join(timeout=60)
    assert not t.is_alive()
    assert got == [dump]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_character_device_stays_a_device(vz: Any, idx: str, tmp_path: Path) -> None:
    """A copy of /dev/null (same major/minor), so a regression cannot replace the machine's own."""
    null = tmp_path / "null"
    dev = os.stat("/dev/null").st_rdev
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, dev)
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD (root); covered where the tests run as root")
    _export(vz, null)
    st = null.lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == dev
    assert _leftovers(tmp_path) == []


def test_dev_stdout_writes_the_inherited_descriptor(idx: str, dump: bytes, store: Path, tmp_path: Path) -> None:
    env = {**os.environ, "VZ_STORE": str(store)}
    r = subprocess.run([VZ, "export", "idx", "-o", "/dev/stdout"], capture_output=True, env=env, timeout=120)
    assert (r.returncode, r.stdout) == (0, dump), r.stderr
    # stdout appended to a file (`>> log`): appended, not truncated nor replaced
    log = tmp_path / "log"
    log.write_bytes(b"before\n")
    log.chmod(0o600)
    with open(log, "ab") as f:
        r = subprocess.run([VZ, "export", "idx", "-o", "/dev/stdout"], stdout=f, stderr=subprocess.PIPE,
                           env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert log.read_bytes() == b"before\n" + dump
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_existing_file_keeps_its_mode(vz: Any, dump: bytes, tmp_path: Path, mode: int) -> None:
    out = tmp_path / "secret.ndjson"
    out.write_text("old\n")
    out.chmod(mode)
    _export(vz, out)
    assert out.read_bytes() == dump
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert _leftovers(tmp_path) == []


def test_existing_file_keeps_its_owner(vz: Any, dump: bytes, tmp_path: Path) -> None:
    out = tmp_path / "theirs.ndjson"
    out.write_text("old\n")
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another owner")
    os.chown(out, 4321, 8765)
    _export(vz, out)
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (4321, 8765) and out.read_bytes() == dump


def test_new_file_honours_the_umask(vz: Any, dump: bytes, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        _export(vz, tmp_path / "new.ndjson")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.ndjson").stat().st_mode) == 0o640


def test_error_mid_write_leaves_the_old_file(vz: Any, idx: str, tmp_path: Path, monkeypatch: Any) -> None:
    from vzcli.local import LocalBackend

    real_export = LocalBackend.export

    def broken(self: Any, *a: Any, **k: Any) -> Any:
        for i, rec in enumerate(real_export(self, *a, **k)):
            if i == 20:
                raise OSError(5, "Input/output error")
            yield rec

    monkeypatch.setattr(LocalBackend, "export", broken)
    out = tmp_path / "keep.ndjson"
    out.write_text("keep me\n")
    r = vz("export", "idx", "-o", str(out))
    assert (r.exit_code, r.stderr) == (1, "✘ [ERROR] Input/output error\n")
    assert out.read_text() == "keep me\n"
    assert _leftovers(tmp_path) == []


def test_sigkill_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """A process killed (SIGKILL) while it writes: the target still holds its old content, whole."""
    out = tmp_path / "keep.ndjson"
    out.write_text("keep me\n")
    code = ("import os, signal, sys\nfrom vzcli.outfile import output\n"
            "with output(sys.argv[1]) as f:\n"
            "    f.write(b'x' * 5_000_000); f.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, timeout=60)
    assert r.returncode == -9, r.stderr
    assert out.read_text() == "keep me\n"
    # the killed writer's temporary file is beside it, under a hidden name
    left = _leftovers(tmp_path)
    assert len(left) == 1 and left[0].startswith(".keep.ndjson.") and (tmp_path / left[0]).stat().st_size == 5_000_000


def test_directory_is_a_usage_error(vz: Any, idx: str, tmp_path: Path) -> None:
    r = vz("export", "idx", "-o", str(tmp_path))
    assert r.exit_code == 2
    assert r.stderr == f"✘ [ERROR] Cannot write {tmp_path}: it is a directory; give a file name [code: 40000]\n"


def test_write_text_follows_symlinks_and_keeps_mode(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    outfile.write_text(link, "new ✓")
    assert link.is_symlink() and real.read_text() == "new ✓" and stat.S_IMODE(real.stat().st_mode) == 0o600


def test_dev_binding_writes_through_symlinks_and_keeps_modes(vz: Any, tmp_path: Path) -> None:
    out = tmp_path / "shim"
    assert vz("dev-binding", "docs", "--out", str(out), "--json").exit_code == 0
    # the user keeps the config elsewhere and links it in, and restricts the shim's mode
    kept = tmp_path / "configs" / "wrangler.jsonc"
    kept.parent.mkdir()
    (out / "wrangler.jsonc").rename(kept)
    (out / "wrangler.jsonc").symlink_to(kept)
    (out / "shim.js").chmod(0o600)
    r = vz("dev-binding", "docs", "OTHER=other", "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    assert (out / "wrangler.jsonc").is_symlink()
    assert '"other"' in kept.read_text()
    assert stat.S_IMODE((out / "shim.js").stat().st_mode) == 0o600
    assert _leftovers(out) == []


def test_dev_binding_never_opens_a_fifo_it_did_not_write(vz: Any, tmp_path: Path) -> None:
    out = tmp_path / "shim"
    out.mkdir()
    os.mkfifo(out / "shim.js")
    r = vz("dev-binding", "docs", "--out", str(out))
    assert r.exit_code == 1
    assert "was not written by vz dev-binding" in r.stderr
    assert stat.S_ISFIFO((out / "shim.js").lstat().st_mode)
