"""HTTP client of the delivery engine: POST to a vetted address, no redirects, capped reads.

Connections are pooled per (address, port, scheme, host name), so consecutive deliveries to one
receiver reuse their keep-alive connections. An attempt ends within ``attempt_limit()`` seconds
(``CONNECT_TIMEOUT`` + ``TIMEOUT``) whatever the receiver does: the socket timeouts bound each
wait, and a total deadline bounds their sum, so a receiver that drips its answer a byte at a time
is cut off (an answer whose headers were cut counts as none; one whose body was cut keeps its
status). At most ``MAX_RESPONSE_BODY`` bytes of the answer are read.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error

from better_webhooks import ssrf
from better_webhooks.conf import webhook_settings
from better_webhooks.exceptions import UnsafeURLError


def attempt_limit() -> float:
    """The longest one attempt can last, in seconds: ``CONNECT_TIMEOUT`` + ``TIMEOUT``."""
    return float(webhook_settings.CONNECT_TIMEOUT) + float(webhook_settings.TIMEOUT)


@dataclass
class Response:
    """What a receiver answered (or, with ``error`` set, why there is no answer)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    duration_ms: int = 0
    error: str = ""


# -- the total deadline -------------------------------------------------------------------------


class _Deadline:
    """The moment (``time.monotonic``) by which one attempt must be over."""

    __slots__ = ("at", "done", "expired", "tripwire")

    def __init__(self, at: float) -> None:
        self.at = at
        self.done = False
        self.expired = False
        # A duplicate of the attempt's socket descriptor, owned by the deadline.
        self.tripwire: socket.socket | None = None


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the receiver may have closed it already
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process that cuts off the attempts still running at their deadline.

    Socket timeouts bound each read, not their sum: a receiver that sends a byte now and then
    (in the headers or the body) would hold an attempt for as long as it likes. At the deadline
    the watchdog shuts down the attempt's connection, which makes the read or write blocked in
    the attempt's thread return at once. It shuts down a duplicate descriptor that it owns until
    the attempt ends, so it can never hit a descriptor number the process has meanwhile reused
    for another connection.
    """

    def __init__(self) -> None:
        self._reset()
        # A forked child (Celery's prefork pool) has no watchdog thread: it starts its own.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._finished = 0  # deadlines in the heap whose attempt is over
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def start(self, at: float) -> _Deadline:
        deadline = _Deadline(at)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webhooks-deadline", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()
        return deadline

    def watch(self, deadline: _Deadline, sock: socket.socket) -> None:
        """Cut ``sock`` off at ``deadline`` (at once when it has passed)."""
        try:
            tripwire = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._cond:
            previous, deadline.tripwire = deadline.tripwire, tripwire
            if deadline.expired:
                _shut(tripwire)
        if previous is not None:
            previous.close()

    def finish(self, deadline: _Deadline) -> bool:
        """Disarm ``deadline``; True when the attempt ended before it was cut off."""
        with self._cond:
            if not deadline.done:
                deadline.done = True
                self._finished += 1
                if self._finished > 256 and self._finished * 2 > len(self._heap):
                    self._heap = [entry for entry in self._heap if not entry[2].done]
                    heapq.heapify(self._heap)
                    self._finished = 0
            tripwire, deadline.tripwire = deadline.tripwire, None
        if tripwire is not None:
            tripwire.close()
        return not deadline.expired

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                heap = self._heap
                while heap and (heap[0][2].done or heap[0][0] <= now):
                    deadline = heapq.heappop(heap)[2]
                    if deadline.done:
                        self._finished -= 1
                        continue
                    deadline.expired = True
                    if deadline.tripwire is not None:
                        _shut(deadline.tripwire)
                self._cond.wait(heap[0][0] - now if heap else None)


_watchdog = _Watchdog()
# The deadline of the attempt running in this thread, for the connections it uses.
_current = threading.local()


def _watch(sock: socket.socket) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        _watchdog.watch(deadline, sock)


class _Watched:
    """Hands the socket of every request to the deadline of the attempt that makes it: a new
    socket as soon as it is connected (before any TLS handshake), a pooled one when reused."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        sock = self.sock  # type: ignore[attr-defined]
        if sock is not None:
            _watch(sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


# -- name resolution ----------------------------------------------------------------------------


class _Resolver:
    """Resolves host names in helper threads: ``getaddrinfo`` cannot be interrupted, and a slow
    DNS server must not stretch an attempt beyond its limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pool = None

    def resolve(self, url: str, timeout: float) -> ssrf.Target | None:
        """``ssrf.resolve(url)`` within ``timeout`` seconds; None when it took longer."""
        try:
            ipaddress.ip_address(urlsplit(url).hostname or "")
        except ValueError:
            pass
        else:
            return ssrf.resolve(url)  # an address: nothing to look up
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(32, thread_name_prefix="webhooks-dns")
            future = self._pool.submit(ssrf.resolve, url)
        try:
            return future.result(timeout=max(timeout, 0.0))
        except TimeoutError:
            future.cancel()
            return None


_resolver = _Resolver()


# -- the client ---------------------------------------------------------------------------------


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
                    pool = _HTTPSPool(
                        target.ip,
                        target.port,
                        server_hostname=target.host,
                        assert_hostname=target.host,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=webhook_settings.CA_BUNDLE,
                        **options,
                    )
                else:
                    pool = _HTTPPool(target.ip, target.port, **options)
                self._pools[key] = pool
        return pool

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body``; never raises for network, SSRF or HTTP problems (see ``error``), and
        returns within ``attempt_limit()`` seconds."""
        started = time.monotonic()
        limit = attempt_limit()
        deadline = _watchdog.start(started + limit)
        _current.deadline = deadline
        try:
            response = self._post(url, body, headers, deadline, started)
        finally:
            _current.deadline = None
            _watchdog.finish(deadline)
        if deadline.expired:
            # What failed after the cut (a reset, a short read) says nothing useful.
            response.error = (
                f"the attempt was cut off at its limit of {limit:g} s (CONNECT_TIMEOUT + TIMEOUT)"
            )
        return response

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], deadline: _Deadline, started: float
    ) -> Response:
        connect = float(webhook_settings.CONNECT_TIMEOUT)
        total = float(webhook_settings.TIMEOUT)
        cap = int(webhook_settings.MAX_RESPONSE_BODY)
        try:
            # Looking the name up is part of connecting.
            target = _resolver.resolve(url, connect)
        except UnsafeURLError as exc:
            return Response(error=str(exc), duration_ms=_ms(started))
        if target is None:
            host = urlsplit(url).hostname
            return Response(
                error=f"resolving {host} took longer than {connect:g} s (CONNECT_TIMEOUT)",
                duration_ms=_ms(started),
            )
        remaining = max(deadline.at - time.monotonic(), 0.001)
        timeout = urllib3.Timeout(connect=min(connect, remaining), read=min(total, remaining))
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
                timeout=timeout,
            )
        except (Urllib3Error, OSError) as exc:
            return Response(error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started))
        if deadline.expired:
            # Cut off before the headers ended: the end of input looked like their end, so the
            # status may stand on a truncated answer. It counts as no answer.
            response.close()
            return Response(duration_ms=_ms(started))
        try:
            data, complete = _read_capped(response, cap, deadline.at)
        except (Urllib3Error, OSError) as exc:
            response.close()
            return Response(
                status=response.status,
                headers=dict(response.headers),
                error=f"reading the response failed: {type(exc).__name__}: {exc}",
                duration_ms=_ms(started),
            )
        # Disarmed before the connection goes back to the pool, so no later request on it is cut.
        if _watchdog.finish(deadline) and complete:
            response.release_conn()
        else:
            # The rest is not read (or the connection was cut), so it cannot be reused.
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
