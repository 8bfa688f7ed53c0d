"""What the client sends to PostgreSQL, read from libpq's own protocol trace."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def wire() -> Iterator[list[str]]:
    """The frontend messages libpq sends meanwhile, as its protocol trace prints them."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    messages: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            yield messages
        finally:
            pgconn.untrace()
            trace.seek(0)
            # Lines are "<time>\tF|B\t<length>\t<message>\t..."; keep what the client sent.
            for line in trace.read().splitlines():
                fields = line.split("\t")
                if len(fields) > 3 and fields[1] == "F":
                    messages.append(fields[3] + " " + " ".join(fields[4:]))


def queries(messages: list[str]) -> list[str]:
    """The simple-query messages among ``messages``: one round trip each."""
    return [message for message in messages if message.startswith("Query")]
