"""Peak RSS of `vz serve` while it takes N concurrent large insert bodies (issue 18).

    .venv/bin/python bench/bench_server_memory.py                       # 4 x 95 MB, this checkout
    .venv/bin/python bench/bench_server_memory.py --vz-path /other/checkout   # another vz's code

Starts `vz serve` over a fresh store, creates a 768-d index, sends `--clients` insert requests of
`--mb` MB of NDJSON each (at most 5000 records) at the same moment, waits for every answer, and
reports the server's peak resident set (VmHWM from /proc) before and after. Linux only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

LISTENING = re.compile(r"listening on http://([^:\s]+):(\d+)")
ACCT = "0123456789abcdef0123456789abcdef"


def body(mb: float, dims: int, first: int) -> bytes:
    """About `mb` MB of NDJSON in at most 5000 lines: long decimal values make the lines heavy."""
    n = 5000
    per_line = int(mb * 1e6 / n)
    digits = max(3, min(17, per_line // dims - 5))
    value = "0." + "1" * digits
    vec = ",".join(value for _ in range(dims))
    pad = max(0, per_line - len(vec) - 60)
    lines = [f'{{"id":"v{first + i}","values":[{vec}],"metadata":{{"p":"{"x" * pad}"}}}}' for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--mb", type=float, default=95.0)
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--multipart", action="store_true", help="send multipart/form-data (wrangler's form) "
                                                                   "instead of raw NDJSON")
    ap.add_argument("--vz-path", help="run the vz package found in this directory (PYTHONPATH)")
    ap.add_argument("--serve-args", default="", help="extra `vz serve` arguments, e.g. '--max-bodies 2'")
    a = ap.parse_args()

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if a.vz_path:
        env["PYTHONPATH"] = a.vz_path
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "vzcli", "serve", "--port", "0", "--store", f"{tmp}/s",
                                 *a.serve_args.split()], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            m = None
            for line in proc.stderr:
                m = LISTENING.search(line)
                if m:
                    break
            if m is None:
                raise SystemExit("vz serve did not start")
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            host, port = m.group(1), int(m.group(2))
            base = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"

            def request(method: str, path: str, data: bytes, ctype: str) -> tuple[int, bytes]:
                c = http.client.HTTPConnection(host, port, timeout=600)
                c.request(method, path, body=data, headers={"Content-Type": ctype, "Host": f"127.0.0.1:{port}"})
                r = c.getresponse()
                out = r.read()
                c.close()
                return r.status, out

            status, out = request("POST", base, json.dumps({"name": "m", "config": {
                "dimensions": a.dims, "metric": "cosine"}}).encode(), "application/json")
            assert status == 200, out
            bodies = [body(a.mb, a.dims, i * 5000) for i in range(a.clients)]
            ctype = "application/x-ndjson"
            if a.multipart:
                ctype = "multipart/form-data; boundary=vzbench"
                bodies = [b'--vzbench\r\nContent-Disposition: form-data; name="vectors"; filename="v.ndjson"\r\n'
                          b"Content-Type: application/x-ndjson\r\n\r\n" + b + b"\r\n--vzbench--\r\n" for b in bodies]
            size = len(bodies[0]) / 1e6
            before = peak_rss_mib(proc.pid)
            results: list[int] = []
            start = threading.Barrier(a.clients)

            def client(b: bytes) -> None:
                start.wait()
                results.append(request("POST", f"{base}/m/insert", b, ctype)[0])

            threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            after = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    kind = "multipart" if a.multipart else "NDJSON"
    print(f"{a.clients} concurrent {kind} bodies of {size:.1f} MB ({a.dims}-d, 5000 records each); answers {sorted(results)}")
    print(f"vz serve peak RSS: {before:.0f} MiB before the bodies, {after:.0f} MiB after")


if __name__ == "__main__":
    main()
