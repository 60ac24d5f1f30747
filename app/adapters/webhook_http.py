"""One webhook POST: to an address that passed the SSRF check, bounded in time, no redirects.

The connection goes to the address ``check_url`` resolved and approved (not to a second lookup
of the name, which could answer differently: DNS rebinding); TLS still verifies the certificate
against the host name (SNI). Redirects are never followed (``http.client`` does not). At most
64 KiB of the response body is read and 1 KiB kept.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.adapters.outbound_urls import CheckedUrl

READ_AT_MOST = 64 * 1024
KEEP = 1024
USER_AGENT = "oms-webhooks/1"


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None  # None: no HTTP answer (connection refused, timeout, TLS …)
    error: str | None
    body: str  # at most KEEP bytes of the response, decoded leniently
    seconds: float


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(target: CheckedUrl, headers: dict[str, str], body: bytes, timeout: float) -> HttpResult:
    """POST ``body`` to ``target``; every failure is a result, never an exception."""
    started = time.monotonic()
    parts = urlsplit(target.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = cls(target.addresses[0], target.host, target.port, timeout)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={**headers, "User-Agent": USER_AGENT, "Content-Length": str(len(body))},
        )
        response = connection.getresponse()
        kept = _read_bounded(response, started, timeout)
        return HttpResult(response.status, None, kept, time.monotonic() - started)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = (
            "timeout" if isinstance(exc, TimeoutError | socket.timeout) else f"{type(exc).__name__}: {exc}"
        )
        return HttpResult(None, error[:KEEP], "", time.monotonic() - started)
    finally:
        connection.close()


def _read_bounded(response: http.client.HTTPResponse, started: float, timeout: float) -> str:
    """Up to READ_AT_MOST bytes, stopping at the deadline; KEEP of them decoded."""
    chunks: list[bytes] = []
    total = 0
    while total < READ_AT_MOST and time.monotonic() - started < timeout:
        chunk = response.read1(min(16 * 1024, READ_AT_MOST - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)[:KEEP].decode("utf-8", errors="replace")
