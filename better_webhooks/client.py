"""HTTP client of the delivery engine: POST to a vetted address, no redirects, capped reads.

Connections are pooled per (address, port, scheme, host name), so consecutive deliveries to one
receiver reuse their keep-alive connections. Each request is bounded by a connect timeout and a
total deadline, and at most ``MAX_RESPONSE_BODY`` bytes of the answer are read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from better_webhooks import ssrf
from better_webhooks.conf import webhook_settings
from better_webhooks.exceptions import UnsafeURLError


@dataclass
class Response:
    """What a receiver answered (or, with ``error`` set, why there is no answer)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    duration_ms: int = 0
    error: str = ""


class Client:
    """A thread-safe pooled client; one per worker process."""

    def __init__(self, maxsize: int = 10) -> None:
        self.maxsize = maxsize
        self._pools: dict[tuple[str, int, str, str], Any] = {}
        self._lock = threading.Lock()

    def _pool(self, target: ssrf.Target) -> Any:
        key = (target.ip, target.port, target.scheme, target.host)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                options: dict[str, Any] = {
                    "maxsize": self.maxsize,
                    "block": False,
                    "retries": False,
                }
                if target.scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        target.ip,
                        target.port,
                        server_hostname=target.host,
                        assert_hostname=target.host,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=webhook_settings.CA_BUNDLE,
                        **options,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(target.ip, target.port, **options)
                self._pools[key] = pool
        return pool

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body``; never raises for network, SSRF or HTTP problems (see ``error``)."""
        started = time.monotonic()
        connect = float(webhook_settings.CONNECT_TIMEOUT)
        total = float(webhook_settings.TIMEOUT)
        cap = int(webhook_settings.MAX_RESPONSE_BODY)
        try:
            target = ssrf.resolve(url)
        except UnsafeURLError as exc:
            return Response(error=str(exc), duration_ms=_ms(started))
        try:
            pool = self._pool(target)
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": target.host_header},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
                timeout=urllib3.Timeout(connect=connect, read=total),
            )
        except (Urllib3Error, OSError) as exc:
            return Response(error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started))
        try:
            data, complete = _read_capped(response, cap, started + total)
        except (Urllib3Error, OSError) as exc:
            response.close()
            return Response(
                status=response.status,
                headers=dict(response.headers),
                error=f"reading the response failed: {type(exc).__name__}: {exc}",
                duration_ms=_ms(started),
            )
        if complete:
            response.release_conn()
        else:
            # The rest is not read, so the connection cannot be reused.
            response.close()
        return Response(
            status=response.status,
            headers=dict(response.headers),
            body=data.decode("utf-8", errors="replace"),
            duration_ms=_ms(started),
        )

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _read_capped(response: Any, cap: int, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        if time.monotonic() > deadline:
            return b"".join(chunks), False
        chunk = response.read(min(16384, cap - size))
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    # Exactly at the cap: complete only when nothing follows.
    return b"".join(chunks), response.read(1) == b""


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
