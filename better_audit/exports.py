"""``audit.export()`` and ``audit.export_response()``: JSON or CSV, streamed with flat memory.

Rows are read through a server-side cursor (``QuerySet.iterator(chunk_size=...)``) and written
chunk by chunk, so exporting millions of entries holds one chunk in memory. Structured columns are
rendered by PostgreSQL (``jsonb::text``) and spliced in as they are, never parsed in Python.

Shapes (field names are the model's, in the order of ``FIELDS``):

- JSON ``array``: ``[{entry}, {entry}, ..., {"_chain_head": {...}}]``;
- JSON ``ndjson``: one entry per line, then a last line ``{"_chain_head": {...}}``;
- CSV: a header row of ``FIELDS`` and one row per entry, nothing else; ``before_data``,
  ``after_data``, ``diff``, ``metadata``, ``compliance`` and ``redacted_fields`` cells hold JSON,
  ``notify`` is ``true``/``false``, NULL is an empty cell. A cell that a spreadsheet would read
  as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a
  leading ``'``, as OWASP advises against CSV injection: the trail records what clients sent, and
  auditors open exports in spreadsheets. ``neutralize_formulas=False`` writes cells as stored,
  for programs that read the file.

``naming="camel"`` writes the entries as the console protocol shows them: camelCase keys and CSV
header (``tableName``, ``recordId``, ...), times in UTC to the millisecond (``...T12:00:00.000Z``),
empty columns left out of JSON entries, CSV lines ending in ``\n``, and the chain head only in the
response header, so that a JSON export is an array of entries and nothing else.

The chain head (``integrity.chain_head()``) proves the export was taken from an unbroken trail. In
JSON it is the trailing record, the only one whose single key is ``_chain_head``, so the seed's
array-of-entries shape still parses. CSV keeps it out of the body, where any extra row would be read
as an entry: a response carries it in the ``X-Audit-Chain-Head`` header (compact JSON), writing
to a file returns it in the ``ExportSummary`` (and the command prints it on stderr).
``chain_head=False`` leaves it out everywhere.

When the export opens its own transaction it runs at REPEATABLE READ, so the entries and the chain
head come from one snapshot. A CSV response is the exception: its header is sent before the body,
so its chain head is read in a snapshot of its own, just before the entries are streamed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol, cast, overload

from django.db import connections, transaction
from django.db.models import F, Func, TextField
from django.db.models.functions import Cast
from django.http import StreamingHttpResponse

from better_audit.queries import AuditQuery
from better_audit.sql import COLUMNS
from better_core.durations import iso_millis
from better_tenant.shortcuts import captured_scope, current_tenant_id

# The model's fields in the order of every audit INSERT.
FIELDS = COLUMNS
_JSONB = ("before_data", "after_data", "diff", "metadata")
_ARRAYS = ("compliance", "redacted_fields")
FORMATS = ("json", "csv")
NAMINGS = ("columns", "camel")
JSON_STYLES = ("array", "ndjson")
CHAIN_HEAD_KEY = "_chain_head"
CHAIN_HEAD_HEADER = "X-Audit-Chain-Head"


def camel(name: str) -> str:
    """``table_name`` -> ``tableName``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


CONTENT_TYPES = {
    ("json", "array"): "application/json",
    ("json", "ndjson"): "application/x-ndjson",
    ("csv", None): "text/csv; charset=utf-8",
}
DEFAULT_CHUNK_SIZE = 2000


@dataclass(frozen=True)
class ExportSummary:
    """What ``export(output=...)`` wrote: the number of entries and the chain head (or None)."""

    rows: int
    chain_head: dict[str, Any] | None


class TextSink(Protocol):
    """Anything with a ``write(str)``: a text stream, or an adapter onto one."""

    def write(self, text: str, /) -> int: ...


# A path, a binary or text stream, or a text sink.
Output = str | os.PathLike[str] | IO[Any] | TextSink


@overload
def export(
    format: str = ...,
    json_style: str = ...,
    query: AuditQuery | None = ...,
    output: None = ...,
    *,
    chain_head: bool = ...,
    chunk_size: int = ...,
    naming: str = ...,
    max_rows: int | None = ...,
    neutralize_formulas: bool = ...,
) -> str: ...


@overload
def export(
    format: str,
    json_style: str,
    query: AuditQuery | None,
    output: Output,
    *,
    chain_head: bool = ...,
    chunk_size: int = ...,
    naming: str = ...,
    max_rows: int | None = ...,
    neutralize_formulas: bool = ...,
) -> ExportSummary: ...


@overload
def export(
    format: str = ...,
    json_style: str = ...,
    query: AuditQuery | None = ...,
    *,
    output: Output,
    chain_head: bool = ...,
    chunk_size: int = ...,
    naming: str = ...,
    max_rows: int | None = ...,
    neutralize_formulas: bool = ...,
) -> ExportSummary: ...


def export(
    format: str = "json",
    json_style: str = "array",
    query: AuditQuery | None = None,
    output: Output | None = None,
    *,
    chain_head: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    naming: str = "columns",
    max_rows: int | None = None,
    neutralize_formulas: bool = True,
) -> str | ExportSummary:
    """Export the entries of ``query`` (default: all, oldest first) as JSON or CSV; the first
    ``max_rows`` of them when given.

    Returns the text when ``output`` is None; otherwise writes to ``output`` (a path, or a text or
    binary stream) and returns an ``ExportSummary``. See the module docstring for the shapes.
    """
    style = _validate(format, json_style, naming, max_rows)
    q = (query or AuditQuery()).ordered("asc")
    plan = _Plan(
        format, style, q, chain_head, chunk_size, None, naming, max_rows, neutralize_formulas
    )
    if output is None:
        buffer = io.StringIO()
        # A CSV string has nowhere to carry the head, so it is not computed.
        _write(buffer, replace(plan, chain_head=chain_head and format != "csv"))
        return buffer.getvalue()
    if isinstance(output, (str, os.PathLike)):
        with open(output, "w", encoding="utf-8", newline="") as stream:
            return _write(stream, plan)
    if isinstance(output, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(output, "mode", ""):
        # A binary stream, by its class or its mode.
        binary = cast(IO[bytes], output)
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="", write_through=True)
        try:
            return _write(text, plan)
        finally:
            text.detach()
    return _write(output, plan)


def export_response(
    format: str = "json",
    query: AuditQuery | None = None,
    filename: str | None = None,
    *,
    json_style: str = "array",
    chain_head: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    naming: str = "columns",
    max_rows: int | None = None,
    neutralize_formulas: bool = True,
) -> StreamingHttpResponse:
    """A download of the export, streamed: the right content type and an attachment filename.

    The body is produced while the response is sent, in the tenant scope that was current when
    this was called (a view's scope ends before streaming starts, so it is re-entered).
    """
    style = _validate(format, json_style, naming, max_rows)
    q = (query or AuditQuery()).ordered("asc")
    enter = captured_scope()
    extension = "csv" if format == "csv" else ("ndjson" if style == "ndjson" else "json")
    name = _safe_filename(filename or "audit-export", extension)
    header_head = None
    if chain_head and (format == "csv" or naming == "camel"):
        with snapshot(q.queryset.db), enter(q.queryset.db):
            header_head = _chain_head()
    # In the console's shape the head travels in the header alone.
    in_body = chain_head and naming != "camel"
    plan = _Plan(
        format, style, q, in_body, chunk_size, header_head, naming, max_rows, neutralize_formulas
    )

    def body() -> Iterator[bytes]:
        # Snapshot first: REPEATABLE READ must be set before the scope's first statement.
        with snapshot(q.queryset.db), enter(q.queryset.db):
            yield from _write_chunks(_ChunkSink(), plan)

    response = StreamingHttpResponse(body(), content_type=CONTENT_TYPES[(format, style)])
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    if header_head is not None:
        response[CHAIN_HEAD_HEADER] = json.dumps(header_head, separators=(",", ":"), default=str)
    return response


# --- writing --------------------------------------------------------------------------------------


class _ChunkSink:
    """A text sink whose content is taken out as bytes after each chunk of rows."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def take(self) -> bytes:
        data = "".join(self._parts).encode()
        self._parts.clear()
        return data


@dataclass(frozen=True)
class _Plan:
    """What to export and how: the validated arguments of ``export()``."""

    format: str
    style: str | None
    query: AuditQuery
    chain_head: bool
    chunk_size: int
    # The chain head when it was taken already (for a CSV response's header), else None.
    head: dict[str, Any] | None = None
    naming: str = "columns"
    max_rows: int | None = None
    neutralize_formulas: bool = True


def _write(stream: Any, plan: _Plan) -> ExportSummary:
    *_, summary = _run(stream, plan)
    assert summary is not None  # the last item _run yields is the summary
    return summary


def _write_chunks(sink: _ChunkSink, plan: _Plan) -> Iterator[bytes]:
    for _ in _run(sink, plan):
        data = sink.take()
        if data:
            yield data


def _run(stream: Any, plan: _Plan) -> Iterator[ExportSummary | None]:
    """Write the export to ``stream``, yielding after each chunk; the last yield is the summary."""
    head = plan.head
    qs = plan.query.queryset
    using = qs.db
    rows = 0
    with snapshot(using):
        camel = plan.naming == "camel"
        if plan.format == "csv":
            writer = _LineWriter(stream) if camel else csv.writer(stream, lineterminator="\r\n")
            writer.writerow(CAMEL_FIELDS if camel else FIELDS)
            for chunk in _chunks(qs, plan.chunk_size, plan.max_rows):
                writer.writerows(_csv_row(row, camel, plan.neutralize_formulas) for row in chunk)
                rows += len(chunk)
                yield None
            if plan.chain_head and head is None:
                head = _chain_head()
        else:
            array = plan.style == "array"
            if array:
                stream.write("[")
            separator = "\n" if array else ""
            for chunk in _chunks(qs, plan.chunk_size, plan.max_rows):
                if array:
                    stream.write(separator + ",\n".join(_json_row(row, camel) for row in chunk))
                    separator = ",\n"
                else:
                    stream.write("".join(_json_row(row, camel) + "\n" for row in chunk))
                rows += len(chunk)
                yield None
            if plan.chain_head:
                head = _chain_head() if head is None else head
                trailer = json.dumps({CHAIN_HEAD_KEY: head}, separators=(",", ":"), default=str)
                stream.write((separator if array else "") + trailer + ("" if array else "\n"))
            if array:
                stream.write("\n]\n" if rows or plan.chain_head else "]\n")
    yield ExportSummary(rows=rows, chain_head=head if plan.chain_head else None)


def _chunks(
    qs: Any, chunk_size: int, max_rows: int | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    annotations = {f"x_{name}": Cast(F(name), TextField()) for name in _JSONB}
    annotations.update(
        {f"x_{name}": Cast(Func(F(name), function="to_jsonb"), TextField()) for name in _ARRAYS}
    )
    columns = [f"x_{name}" if name in _JSONB or name in _ARRAYS else name for name in FIELDS]
    rows = qs.annotate(**annotations).values_list(*columns).iterator(chunk_size=chunk_size)
    chunk: list[tuple[Any, ...]] = []
    for count, row in enumerate(rows):
        if max_rows is not None and count >= max_rows:
            break
        chunk.append(row)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_STRUCTURED = frozenset(FIELDS.index(name) for name in (*_JSONB, *_ARRAYS))
_TIMESTAMP = FIELDS.index("timestamp")
_DIFF = FIELDS.index("diff")
_dumps = json.JSONEncoder(ensure_ascii=False).encode
_KEYS = [_dumps(name) + ":" for name in FIELDS]
CAMEL_FIELDS = tuple(camel(name) for name in FIELDS)
_CAMEL_KEYS = [_dumps(name) + ":" for name in CAMEL_FIELDS]


def _json_row(row: tuple[Any, ...], camel: bool = False) -> str:
    keys = _CAMEL_KEYS if camel else _KEYS
    parts = []
    for index, value in enumerate(row):
        if value is None:
            if camel:
                continue
            text = "null"
        elif index in _STRUCTURED:
            text = _camel_diff(value) if camel and index == _DIFF else value
        elif index == _TIMESTAMP:
            text = '"' + (iso_millis(value) if camel else value.isoformat()) + '"'
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = _dumps(str(value))
        parts.append(keys[index] + text)
    return "{" + ",".join(parts) + "}"


class _LineWriter:
    """CSV with lines ending in ``\n``, as the console writes it. The csv module quotes only the
    characters of its line terminator, so a carriage return inside a cell would go out bare and
    end a row in a spreadsheet: here a cell holding a comma, a quote, CR or LF is quoted."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def writerow(self, cells: Sequence[str]) -> None:
        self.stream.write(",".join(map(_quoted, cells)) + "\n")

    def writerows(self, rows: Iterable[Sequence[str]]) -> None:
        self.stream.write("".join(",".join(map(_quoted, cells)) + "\n" for cells in rows))


def _quoted(cell: str) -> str:
    if any(c in cell for c in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


# What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(cell: str) -> str:
    """``cell`` as a spreadsheet shows it verbatim: a leading ``'`` before a formula's start."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _csv_row(row: tuple[Any, ...], camel: bool = False, formulas: bool = True) -> list[str]:
    """One entry's cells; with ``formulas`` true (the default), none starts a formula."""
    cells = []
    for index, value in enumerate(row):
        if value is None:
            cells.append("")
        elif index == _TIMESTAMP:
            cells.append(iso_millis(value) if camel else value.isoformat())
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif camel and index in _STRUCTURED:
            # Compact, as JSON.stringify writes a cell (PostgreSQL's jsonb text has spaces).
            cells.append(_compact(_camel_diff(value) if index == _DIFF else value))
        else:
            cells.append(str(value))
    return [neutralize(cell) for cell in cells] if formulas else cells


def _compact(text: str) -> str:
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def _camel_diff(text: str) -> str:
    """The diff's JSON with its keys camelCased (``changedFields``), as the console shows it: its
    keys are the suite's own, unlike the row snapshots' column names, which stay as they are."""
    diff = json.loads(text)
    if isinstance(diff, dict):
        diff = {camel(str(key)): value for key, value in diff.items()}
    return _dumps(diff)


# --- transaction, scope and chain head ------------------------------------------------------------


@contextlib.contextmanager
def snapshot(using: str = "default") -> Iterator[None]:
    """A REPEATABLE READ transaction, unless one is open already (then that one is used).

    Enter it before ``run_as_system()`` or ``run_as()`` so that the isolation level is set before
    their first statement.
    """
    connection = connections[using]
    if connection.in_atomic_block:
        # The caller's transaction: the server-side cursor lives in it.
        yield
        return
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _chain_head() -> dict[str, Any]:
    from better_audit import integrity

    return integrity.chain_head(tenant_id=current_tenant_id())


def _validate(
    format: str, json_style: str, naming: str = "columns", max_rows: int | None = None
) -> str | None:
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise ValueError(f"max_rows must be a whole number of at least 1; got {max_rows!r}.")
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {', '.join(NAMINGS)}; got {naming!r}.")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if format == "csv":
        return None
    if json_style not in JSON_STYLES:
        raise ValueError(f"json_style must be one of {', '.join(JSON_STYLES)}; got {json_style!r}.")
    return json_style


def _safe_filename(name: str, extension: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip(".-") or "audit"
    if not cleaned.lower().endswith("." + extension):
        cleaned += "." + extension
    return cleaned
