"""What keeps web pages out of `vz serve`: the Host and Origin checks, and CORS for listed origins.

A server on 127.0.0.1 is reachable from every page the user's browser opens (reference:
local-server-security.md). Two attacks need no browser bug:

- DNS rebinding: the attacker's name resolves to 127.0.0.1, so its page reads our answers as
  same-origin. The request still says `Host: evil.example:PORT`, so only listed hosts are served:
  loopback IP literals, `localhost` and `*.localhost` (names that cannot be rebound), the `--host`
  the server was started with, and the names given with `--allow-host`. An empty or missing Host is
  refused (Ollama's bypass was `Host: :11434`).
- Requests a page may send without a CORS preflight (`text/plain` or no body) act before the page
  is refused the answer. Browsers send `Origin` on those, so any request carrying an Origin that is
  not listed with `--cors-origin` is refused, and so is `Sec-Fetch-Site: cross-site|same-site`
  without a listed Origin. Command-line clients (wrangler, the SDKs, the dev-binding shim in
  workerd) send neither.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from vzcli.errors import UsageError

HOST_REFUSED = 7010
ORIGIN_REFUSED = 7011
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")
_ORIGIN = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?")
WILDCARDS = ("0.0.0.0", "::", "")
ALLOW_HEADERS = "authorization, content-type, x-auth-key, x-auth-email"
ALLOW_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"


def host_name(value: str) -> str | None:
    """The name or address in a Host header value (`name`, `name:port`, `[v6]`, `[v6]:port`),
    lower-cased and without a trailing dot; None when the value is not a valid Host."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        name, rest = v[1:end], v[end + 1:]
        if end < 0 or not _is_ip(name) or ":" not in name:
            return None
    else:
        name, sep, rest = v.partition(":")
        rest = sep + rest
    if rest and not (rest[0] == ":" and rest[1:].isdigit() and len(rest) <= 6):
        return None
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    if not name or not (_NAME.fullmatch(name) or _is_ip(name)):
        return None
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def normalise_origin(value: str) -> str | None:
    """`scheme://host[:port]` lower-cased without a trailing slash, or None if it is not one."""
    v = value.strip().lower().rstrip("/")
    return v if _ORIGIN.fullmatch(v) else None


@dataclass
class Guard:
    """The allow-lists. `bind` is the --host the server listens on."""

    bind: str = "127.0.0.1"
    allow_hosts: Iterable[str] = ()
    cors_origins: Iterable[str] = ()
    hosts: set[str] = field(init=False)
    origins: set[str] = field(init=False)
    any_ip: bool = field(init=False)

    def __post_init__(self) -> None:
        self.hosts = set()
        for i, h in enumerate([self.bind, *self.allow_hosts]):
            if i == 0 and h.strip().strip("[]") in WILDCARDS:
                continue
            name = host_name(h if not (":" in h and not h.startswith("[") and h.count(":") > 1) else f"[{h}]")
            if name is None:
                raise UsageError(f"--allow-host {h!r} is not a host name or address; give a name like "
                                 "myhost.lan or an address like 192.168.1.5")
            self.hosts.add(name)
        # bound to every interface: any IP literal is a way to reach it, and none can be rebound
        self.any_ip = self.bind.strip().strip("[]") in WILDCARDS
        self.origins = set()
        for o in self.cors_origins:
            norm = normalise_origin(o)
            if norm is None:
                raise UsageError(f"--cors-origin {o!r} is not an origin; give scheme://host[:port], like "
                                 "http://localhost:5173")
            self.origins.add(norm)

    def host_allowed(self, values: list[str]) -> bool:
        if len(values) != 1:
            return False  # none, or two Host headers: refuse rather than guess which one counts
        name = host_name(values[0])
        if name is None:
            return False
        return name in self.hosts or _loopback(name) or (self.any_ip and _is_ip(name))

    def host_refusal(self, values: list[str]) -> str:
        if not values or not values[0].strip():
            return "a request needs a Host header naming this server (localhost or 127.0.0.1)"
        if len(values) > 1:
            return "a request must carry exactly one Host header"
        name = host_name(values[0]) or values[0]
        return (f"Host {values[0]!r} is not allowed: vz serve answers only requests addressed to localhost, "
                "127.0.0.1, [::1] or its --host (a defence against DNS rebinding); to serve this name start it "
                f"with --allow-host {name}")

    def origin_allowed(self, origin: str | None, fetch_site: str | None) -> bool:
        """A request from a listed origin, or one that no browser page sent."""
        if origin is not None:
            return normalise_origin(origin) in self.origins
        return fetch_site not in ("cross-site", "same-site")

    @staticmethod
    def origin_refusal(origin: str | None) -> str:
        if origin is None:
            return ("cross-site requests from web pages are refused (Sec-Fetch-Site); allow a page's origin "
                    "with --cors-origin")
        return (f"Origin {origin!r} is not allowed: requests from web pages are refused unless their origin "
                f"is listed with --cors-origin (start vz serve with --cors-origin {origin} to allow it)")

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers for a response to a listed origin; none for anything else."""
        if origin is None or normalise_origin(origin) not in self.origins:
            return {}
        return {"access-control-allow-origin": origin, "vary": "Origin"}

    def preflight_headers(self, origin: str, request_headers: str | None) -> dict[str, str]:
        return {**self.cors_headers(origin), "access-control-allow-methods": ALLOW_METHODS,
                "access-control-allow-headers": request_headers or ALLOW_HEADERS,
                "access-control-max-age": "600",
                "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
