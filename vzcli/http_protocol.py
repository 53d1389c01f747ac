"""uvicorn's httptools protocol with a deadline for request headers (`vz serve --read-timeout`).

uvicorn bounds the idle time between requests on a keep-alive connection (5 s) but not the time a
client takes to send a request's headers: a connection that sends nothing, or half a request line,
is held forever (slowloris). Here a timer runs from the moment the connection opens, and from the
first byte of each further request, until the headers are complete; when it fires the connection
is closed. The body has its own deadline, in the app (vzcli.http_body.read_body), because a body
may have to wait for a free slot (--max-bodies) before it is read.
"""

from __future__ import annotations

from typing import Any


def protocol_class(header_timeout: float) -> type:
    """A subclass of uvicorn's HttpToolsProtocol that closes a connection whose request headers
    take longer than `header_timeout` seconds."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class VzHttpProtocol(HttpToolsProtocol):
        _headers_timer: Any = None

        def _arm(self) -> None:
            self._disarm()
            self._headers_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def _headers_late(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    return VzHttpProtocol
