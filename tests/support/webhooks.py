"""Webhook test helpers: an event schema, a local HTTP receiver and a worker run until idle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

USER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "plan": {"enum": ["free", "pro"]},
    },
    "required": ["id", "email"],
    "additionalProperties": False,
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server: answers with ``respond(request) -> (status, headers, body)``."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    respond: Callable[[Received], tuple[int, dict[str, str], bytes]] = lambda r: (200, {}, b"ok")

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.respond = lambda request: (status, headers or {}, body)

    def script(self, *statuses: int) -> None:
        """Answer these statuses in turn, then 200."""
        queue = list(statuses)
        self.respond = lambda request: (queue.pop(0) if queue else 200, {}, b"")


def _handler(receiver_ref: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as separate writes; Nagle would hold the body back.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            receiver = receiver_ref[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            request = Received(self.path, dict(self.headers.items()), body)
            receiver.requests.append(request)
            status, headers, answer = receiver.respond(request)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def start_receiver(port: int = 0) -> Receiver:
    """A receiver listening on 127.0.0.1 (``port`` 0: any free port), serving in a thread."""
    ref: list[Receiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(ref))
    server.daemon_threads = True
    receiver = Receiver(server)
    ref.append(receiver)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return receiver


def run_worker_until_idle(**kwargs: Any) -> Any:
    """Run a worker in this thread until nothing is due (short waits between retries)."""
    from better_webhooks import db
    from better_webhooks.models import WebhookDelivery
    from better_webhooks.worker import Worker

    worker = Worker(interval=0.01, **kwargs)
    try:
        for _ in range(200):
            if worker.run_once() == 0:
                with db.system_scope():
                    waiting = WebhookDelivery.objects.filter(
                        status__in=["pending", "delivering"]
                    ).exists()
                if not waiting:
                    break
                time.sleep(0.02)
    finally:
        worker.close()
    return worker


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running local receiver (import it into a test module or conftest to use it)."""
    server = start_receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()
