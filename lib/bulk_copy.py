"""Bulk inserts by COPY (PostgreSQL; batched INSERT elsewhere), with the audit log's 'insert' changes.

What lib.audit.insert_rows writes, much faster: the rows and their whole-row changes in two COPY
statements per batch. `BackgroundInserts` runs them on a second thread while the caller prepares the next
batch (the import). Undo treats these rows like any other insert.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection

from lib.audit import WHOLE_ROW, _columns, _jsonable, encode_value, insert_rows

COPY_CHUNK_ROWS = 2000
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
# no timestamps: the columns' default (the transaction's start, UTC) costs the server less than parsing text
_CHANGE_COLUMNS = "run_id, table_name, row_id, action, field, old_value, new_value, changed_by"

CopyProgress = Callable[[int, int], None]


def _copy_escape(text_value: str) -> str:
    return text_value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_scalar(value: Any) -> str:
    """COPY text of a value that is not a str (None is the NULL marker)."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime | date):
        return value.isoformat()
    text_value = str(value)
    return _copy_escape(text_value) if _COPY_SPECIAL.search(text_value) else text_value


def _json_scalar(value: Any) -> str:
    """What json.dumps(_jsonable(value), ensure_ascii=False) gives."""
    return json.dumps(_jsonable(value), ensure_ascii=False)


def _in_quotes(text_value: str) -> str:
    return '"' + text_value + '"'


_NONE_TYPE = type(None)
# exact classes only (a bool is not an int here); Decimal and ISO dates hold nothing to escape
_COPY_TEXT: dict[type, Callable[[Any], str]] = {
    str: str, _NONE_TYPE: lambda _value: "\\N", int: int.__repr__, Decimal: Decimal.__str__,
    date: date.isoformat, datetime: datetime.isoformat,
}
_JSON_TEXT: dict[type, Callable[[Any], str]] = {
    str: encode_basestring, _NONE_TYPE: lambda _value: "null", int: int.__repr__,
    Decimal: lambda value: _in_quotes(str(value)), date: lambda value: _in_quotes(value.isoformat()),
    datetime: lambda value: _in_quotes(value.isoformat()),
}


def _convert(values: list | tuple, table: dict[type, Callable[[Any], str]],
             other: Callable[[Any], str]) -> tuple[list[str], set[type]]:
    """Each value through the converter for its class, a whole column at a time when it holds one class."""
    kinds = set(map(type, values))
    if len(kinds) == 1:
        return list(map(table.get(next(iter(kinds)), other), values)), kinds
    return [table.get(v.__class__, other)(v) for v in values], kinds


def _copy_column(values: list | tuple) -> list[str]:
    """COPY text of one column; the escape pass runs only when some text needs it (rarely)."""
    out, kinds = _convert(values, _COPY_TEXT, _copy_scalar)
    if str in kinds:
        texts = values if len(kinds) == 1 else [v for v in values if v.__class__ is str]
        if _COPY_SPECIAL.search("\x1f".join(texts)):
            out = [_copy_escape(v) if v.__class__ is str else t for v, t in zip(values, out, strict=True)]
    return out


def _json_column(values: list | tuple) -> list[str]:
    """JSON text of one column's values, COPY-escaped (JSON already escapes control characters)."""
    out, _kinds = _convert(values, _JSON_TEXT, _json_scalar)
    if "\\" in "".join(out):
        out = [v.replace("\\", "\\\\") for v in out]
    return out


def _column_texts(values: list | tuple) -> tuple[list[str], list[str]]:
    """A column's COPY text and its COPY-escaped JSON text, sharing the work where the two agree
    (the same text for numbers, quoted for decimals and dates; dates repeat, so each is formatted once)."""
    kinds = set(map(type, values))
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    if kind is int:
        texts = list(map(int.__repr__, values))
        return texts, texts
    if kind is Decimal:
        texts = list(map(Decimal.__str__, values))
        return texts, list(map(_in_quotes, texts))
    if kind is date:
        iso = {day: day.isoformat() for day in set(values)}
        quoted = {day: _in_quotes(text_value) for day, text_value in iso.items()}
        return list(map(iso.__getitem__, values)), list(map(quoted.__getitem__, values))
    if kind is _NONE_TYPE:
        return ["\\N"] * len(values), ["null"] * len(values)
    if kind is str:
        distinct = set(values)
        if len(distinct) * 2 > len(values):
            return _copy_column(values), _json_column(values)
        unique = list(distinct)  # products, SKUs, intervals, statuses repeat: each is encoded once
        copy_text = dict(zip(unique, _copy_column(unique), strict=True))
        json_text = dict(zip(unique, _json_column(unique), strict=True))
        return list(map(copy_text.__getitem__, values)), list(map(json_text.__getitem__, values))
    return _copy_column(values), _json_column(values)


@dataclass(slots=True)
class EncodedRows:
    """Rows as COPY text, each line still without its id: what `BulkInserter.write_encoded` sends."""

    count: int
    table_lines: list[str]  # "\t<columns>\n", after the id
    change_lines: list[str]  # "\tinsert\t*\t\\N\t<JSON>\t<user>\n", after "<run_id>\t<table>\t<id>"


class _Encoder:
    """COPY text of rows for one table, run and user (`BulkInserter` splices the ids in)."""

    def __init__(self, table_name: str, columns: list[str], *, run_id: int | None, user: str):
        self.columns = columns
        self.key_order = tuple(columns)
        self.table_line = "\t%s" * len(columns) + "\n"
        self.change_head = ("\\N" if run_id is None else str(int(run_id))) + f"\t{table_name}\t"
        self.change_end = f"\t{_copy_column([user])[0]}\n"
        json_keys = ", ".join(f"{encode_basestring(c)}: %s" for c in columns)  # column names are known: no '%'
        self.change_rest = ("\tinsert\t" + WHOLE_ROW + "\t\\N\t{" + json_keys + "}"
                            + self.change_end.replace("%", "%%"))

    def encode(self, rows: list[dict]) -> EncodedRows:
        """Both COPY texts of the rows: the table's lines and their whole-row 'insert' changes."""
        key_order = self.key_order
        columns = list(zip(*map(itemgetter(*key_order), rows), strict=True)) if len(key_order) > 1 else [
            [r[key_order[0]] for r in rows]]
        texts = [_column_texts(values) for values in columns]
        table_lines = list(map(self.table_line.__mod__, zip(*(t for t, _j in texts), strict=True)))
        if all(map(key_order.__eq__, map(tuple, rows))):
            change_lines = list(map(self.change_rest.__mod__, zip(*(j for _t, j in texts), strict=True)))
        else:  # a row lists its keys in another order: encode it as it is, like insert_rows
            change_lines = [f"\tinsert\t{WHOLE_ROW}\t\\N\t" + _copy_column([encode_value(r)])[0] + self.change_end
                            for r in rows]
        return EncodedRows(len(rows), table_lines, change_lines)


def _with_ids(ids: list[int], lines: list[str], head: str = "") -> str:
    return "".join(map(str.__add__, map(head.__add__, map(str, ids)), lines))


class _CopySource:
    """A file-like object for cursor.copy_expert that formats the next chunk only when asked for it,
    so the server inserts one chunk while Python formats the next."""

    def __init__(self, chunks: Iterator[str]):
        self._chunks = chunks

    def read(self, size: int = -1) -> str:
        return next(self._chunks, "")


def copy_insert_rows(conn: Connection, table_name: str, rows: list[dict], *, run_id: int | None, user: str,
                     on_progress: CopyProgress | None = None, batch: int = 5000) -> list[int]:
    """insert_rows by PostgreSQL COPY: the same rows and the same whole-row 'insert' changes, streamed in
    two COPY statements (multi-row INSERT spends most of its time parsing SQL). On SQLite: insert_rows.

    Every row must have the keys of the first. `on_progress(done, total)` counts rows written to the table
    and rows written to `changes`, so `total` is twice the number of rows. Returns the ids in input order.
    """
    total = 2 * len(rows)
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        if on_progress:
            on_progress(done, total)

    inserter = BulkInserter(conn, table_name, run_id=run_id, user=user)
    if inserter.postgresql:
        return inserter.write(rows, progress)
    ids: list[int] = []
    for start in range(0, len(rows), batch):
        ids.extend(inserter.write(rows[start : start + batch], progress))
    return ids


class BulkInserter:
    """Inserts chunks of rows, each with its whole-row 'insert' change, inside the caller's transaction:
    on PostgreSQL by two COPY statements per chunk (ids drawn from the table's sequence first), on SQLite
    by insert_rows. `write` returns the chunk's ids in input order."""

    def __init__(self, conn: Connection, table_name: str, *, run_id: int | None, user: str):
        _columns(table_name, {})
        self.conn, self.table_name, self.run_id, self.user = conn, table_name, run_id, user
        self.postgresql = conn.dialect.name == "postgresql"
        self._sequence: str | None = None

    def _check(self, rows: list[dict]) -> list[str]:
        columns = list(rows[0])
        _columns(self.table_name, dict.fromkeys(columns))
        keys = rows[0].keys()
        if not all(map(keys.__eq__, map(dict.keys, rows))):
            raise ValueError(f"{self.table_name}: every row must have the columns {', '.join(columns)}")
        return columns

    def encoder(self, rows: list[dict]) -> _Encoder:
        return _Encoder(self.table_name, self._check(rows), run_id=self.run_id, user=self.user)

    def write(self, rows: list[dict], progress: Callable[[int], None] | None = None) -> list[int]:
        """Insert rows; the COPY text is formatted a chunk at a time while the server inserts the last one."""
        if not rows:
            return []
        if not self.postgresql:
            self._check(rows)
            ids = insert_rows(self.conn, self.table_name, rows, run_id=self.run_id, user=self.user, batch=len(rows))
            if progress:
                progress(2 * len(rows))
            return ids
        encoder = self.encoder(rows)
        ids = self._ids(len(rows))
        change_text: list[str] = []

        def table_text() -> Iterator[str]:  # the changes' text is made alongside, for the second COPY
            for start in range(0, len(rows), COPY_CHUNK_ROWS):
                chunk_ids = ids[start : start + COPY_CHUNK_ROWS]
                encoded = encoder.encode(rows[start : start + COPY_CHUNK_ROWS])
                change_text.append(_with_ids(chunk_ids, encoded.change_lines, encoder.change_head))
                yield _with_ids(chunk_ids, encoded.table_lines)
                if progress:
                    progress(len(chunk_ids))

        def changes_text() -> Iterator[str]:
            for text_value in change_text:
                yield text_value
                if progress:
                    progress(text_value.count("\n"))

        self._copy(encoder.columns, table_text(), changes_text())
        return ids

    def write_encoded(self, encoded: EncodedRows, encoder: _Encoder) -> list[int]:
        """Insert rows encoded beforehand (`encoder(rows).encode(rows)`, on any thread): PostgreSQL only."""
        if not encoded.count:
            return []
        ids = self._ids(encoded.count)
        self._copy(encoder.columns, iter([_with_ids(ids, encoded.table_lines)]),
                   iter([_with_ids(ids, encoded.change_lines, encoder.change_head)]))
        return ids

    def _ids(self, count: int) -> list[int]:
        cursor = self.conn.connection.dbapi_connection.cursor()
        try:
            if self._sequence is None:
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", (self.table_name,))
                self._sequence = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (self._sequence, count))
            return [row_id for row_id, in cursor]
        finally:
            cursor.close()

    def _copy(self, columns: list[str], table_text: Iterator[str], change_text: Iterator[str]) -> None:
        cursor = self.conn.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(f"COPY {self.table_name} (id, {', '.join(columns)}) FROM STDIN", _CopySource(table_text))
            cursor.copy_expert(f"COPY changes ({_CHANGE_COLUMNS}) FROM STDIN", _CopySource(change_text))
        finally:
            cursor.close()


BACKGROUND_BATCH_ROWS = 10_000  # larger COPY statements cost the server less each, but the last one is waited for
FIRST_BATCH_ROWS = 500  # small first batches, doubling: the server gets to work early


class BackgroundInserts:
    """A BulkInserter whose COPY statements run on a second thread (PostgreSQL), so the server inserts one
    batch while this thread validates and encodes the next; inline on SQLite, whose connections belong to
    one thread.

    Use as a context manager around the loop that calls `put(rows)`; nothing else may use the connection
    inside it. A failed write is raised from the next `put` or on leaving; on leaving with an exception the
    thread stops and the caller's transaction rolls everything back.
    """

    def __init__(self, conn: Connection, table_name: str, *, run_id: int | None, user: str,
                 batch: int | None = None, depth: int = 2):
        self._inserter = BulkInserter(conn, table_name, run_id=run_id, user=user)
        self._batch_size = batch or BACKGROUND_BATCH_ROWS
        self._batch = min(FIRST_BATCH_ROWS, self._batch_size)
        self._pending: list[dict] = []
        self.ids: list[int] = []
        self.written = 0
        self._queue: queue.Queue[tuple[EncodedRows, _Encoder] | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> BackgroundInserts:
        if self._inserter.postgresql:
            self._thread = threading.Thread(target=self._work, name="bulk-insert", daemon=True)
            self._thread.start()
        return self

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.ids.extend(self._inserter.write_encoded(*item))
                    self.written += item[0].count
                except BaseException as exc:  # noqa: BLE001 - handed to the producing thread
                    self._error = exc

    def put(self, rows: list[dict]) -> None:
        """Queue rows, written once `batch` have gathered (inline on SQLite); raises an earlier failure."""
        self._pending.extend(rows)
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        rows, self._pending = self._pending, []
        self._batch = min(2 * self._batch, self._batch_size)
        if not rows:
            return
        if self._thread is None:
            self.ids.extend(self._inserter.write(rows))
            self.written += len(rows)
            return
        encoder = self._inserter.encoder(rows)
        item = (encoder.encode(rows), encoder)
        while True:
            self._raise_failure()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:  # the writer always gets its stop sign, even when the last flush raised
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
        if exc_type is None:
            self._raise_failure()


