"""The signed settings and a statement sent in one libpq pipeline, under a psycopg cursor."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import psycopg
from psycopg import generators, pq

# What this path uses of psycopg beyond its public API, with the same meaning in every psycopg 3
# release since 3.1; if a release drops one, statements take psycopg's Pipeline instead.
_CURSOR_PARTS = ("_start_query", "_convert_query", "_check_results")
_GENERATOR_PARTS = ("send", "fetch_many")
# How a cursor takes the results of a statement it sent: named so since psycopg 3.2; 3.1 has it
# only for pipelines (where it also checks them, which is harmless once checked).
_SET_RESULTS = next(
    (
        name
        for name in ("_set_results", "_set_results_from_pipeline")
        if hasattr(psycopg.Cursor, name)
    ),
    None,
)
_OFF = pq.PipelineStatus.OFF
_OK = pq.ConnStatus.OK


def _parts_present() -> bool:
    return (
        _SET_RESULTS is not None
        and all(hasattr(psycopg.Cursor, part) for part in _CURSOR_PARTS)
        and all(hasattr(generators, part) for part in _GENERATOR_PARTS)
    )


#: Whether the direct path can run here: psycopg has the parts it uses, libpq has pipelines.
SUPPORTED = _parts_present() and psycopg.Pipeline.is_supported()


def execute(cursor: Any, settings: bytes, proof: str, query: Any, params: Any) -> None:
    """Run ``settings`` (one ``$1``, bound to ``proof``) then ``query`` in one round trip.

    psycopg's own ``Pipeline`` polls the socket after each statement queued and again at its
    exit, which costs more than the statement of settings itself; here both go out before one
    Sync and the results are read once. After the Sync, in autocommit the two ran as one implicit
    transaction, and in a transaction the settings joined it, as with a pipeline.
    """
    conn = cursor.connection
    with conn.lock:
        conn.wait(_execute_gen(cursor, settings, proof.encode(), query, params))


def _execute_gen(
    cursor: Any, settings: bytes, proof: bytes, query: Any, params: Any
) -> Generator[Any, Any, None]:
    # What Cursor.execute() does before sending: reset the cursor, BEGIN when not in autocommit.
    yield from cursor._start_query(query)
    pgq = cursor._convert_query(query, params)
    cursor._query = pgq
    pgconn = cursor.connection.pgconn
    pgconn.enter_pipeline_mode()
    try:
        pgconn.send_query_params(settings, [proof])
        if isinstance(cursor, psycopg.ClientCursor):
            # Its parameters are merged into the query text; what it keeps of them is not sent.
            pgconn.send_query_params(pgq.query, None, result_format=cursor.format)
        else:
            pgconn.send_query_params(
                pgq.query,
                pgq.params,
                param_formats=pgq.formats,
                param_types=pgq.types,
                result_format=cursor.format,
            )
        pgconn.pipeline_sync()
        yield from generators.send(pgconn)
        # Each statement's results end with an empty one; the Sync's is a result of its own.
        entered = yield from generators.fetch_many(pgconn)
        results = yield from generators.fetch_many(pgconn)
        yield from generators.fetch_many(pgconn)
    finally:
        _leave(pgconn)
    # A refused proof aborts the statement: its error is the one to raise.
    cursor._check_results(entered)
    cursor._check_results(results)
    getattr(cursor, _SET_RESULTS)(results)  # type: ignore[arg-type]
    cursor._last_query = query


def _leave(pgconn: Any) -> None:
    """Leave pipeline mode; a connection that cannot (lost, or left with results unread by an
    interruption) is closed, so that no later statement reads this one's results."""
    if pgconn.status != _OK or pgconn.pipeline_status == _OFF:
        return
    try:
        pgconn.exit_pipeline_mode()
    except psycopg.Error:
        pgconn.finish()
