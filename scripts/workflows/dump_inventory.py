"""What a dump holds, read from its text: rows per table, views, triggers, routines, events.

db-restore-drill runs it over the decompressed dump while the same bytes restore (a second
decompressor beside the restore's own), so the nightly dump on the instance never pays for a
Python pass over the raw stream: the counts come from the very file that was uploaded, verified by
its SHA-256, and are exactly those the dump agent used to record at dump time.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from scripts.agent import quickport_dump as qd

_QUOTED = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.DOTALL)
_IDENT = rb"`((?:[^`]|``)+)`"
_INSERT = re.compile(rb"INSERT INTO " + _IDENT + rb" VALUES ?")
_CREATE_TABLE = re.compile(rb"CREATE TABLE " + _IDENT + rb" \(")
# Views, triggers, routines and events as mariadb-dump/mysqldump write them (one header line each).
_OBJECTS = (
    ("views", re.compile(rb"^/\*!50001 VIEW " + _IDENT)),
    ("triggers", re.compile(rb"^/\*!50003 CREATE\*/ .*?/\*!50003 TRIGGER (?:" + _IDENT + rb"|([^\s`]+))")),
    ("routines", re.compile(rb"^CREATE (?:DEFINER=.*? )?(?:FUNCTION|PROCEDURE) " + _IDENT)),
    ("events", re.compile(rb"^/\*!50106 CREATE\*/ .*?/\*!50106 EVENT " + _IDENT)),
)


class DumpInspector:
    """Counts rows per table, and names the views, triggers, routines and events, from the dump text
    as it streams past. The counts describe exactly what the file holds, that is what the dump read
    inside its own consistent snapshot (--single-transaction).

    Works on blocks of whole lines. The dumper escapes newlines inside strings, so a real newline is
    always outside a string: an INSERT ends at ";\\n", and rows are separated by "),(" (MySQL, one
    line per statement) or "),\\n(" (MariaDB 10.11+, one line per row) once quoted strings are removed.
    """

    def __init__(self) -> None:
        self.tables: Dict[str, int] = {}
        self.objects: Dict[str, List[str]] = {kind: [] for kind, _ in _OBJECTS}
        self.last_line = b""
        self._pieces: List[bytes] = []
        self._insert_table: Optional[str] = None
        self._separator_pending = False

    @staticmethod
    def _name(raw: bytes) -> str:
        return raw.replace(b"``", b"`").decode("utf-8", "replace")

    def _rows(self, buf: bytes, start: int, stop: int) -> int:
        """Row separators in buf[start:stop], searched in place (no copy of the megabytes flowing past)."""
        # "),\n(" holds a real newline, so it is never inside a string: counting it needs no parsing.
        rows = buf.count(b"),\n(", start, stop)
        if buf.find(b"),(", start, stop) >= 0:  # one-line rows, or a string that looks like a separator
            segment = buf[start:stop]
            if b"'" in segment:
                segment = _QUOTED.sub(b"''", segment)
            rows += segment.count(b"),(")
        if self._separator_pending and buf.startswith(b"(", start, stop):
            rows += 1
        self._separator_pending = buf.endswith(b"),\n", start, stop)
        return rows

    def _header_line(self, line: bytes) -> None:
        if line.startswith(b"CREATE TABLE `"):
            m = _CREATE_TABLE.match(line)
            if m:
                self.tables.setdefault(self._name(m.group(1)), 0)
        elif line.startswith((b"/*!5", b"CREATE ")):
            for kind, pattern in _OBJECTS:
                m = pattern.match(line)
                if m:
                    name = self._name(next(g for g in m.groups() if g is not None))
                    if name not in self.objects[kind]:
                        self.objects[kind].append(name)
                    break

    def _block(self, buf: bytes, pos: int, end: int) -> None:
        """The whole lines buf[pos:end] (buf[end - 1] is a newline)."""
        while pos < end:
            if self._insert_table is not None:
                statement_end = buf.find(b";\n", pos, end)
                stop = end if statement_end < 0 else statement_end + 2
                self.tables[self._insert_table] += self._rows(buf, pos, stop)
                if statement_end >= 0:
                    self._insert_table = None
                    self._separator_pending = False
                    self.last_line = b";"
                pos = stop
                continue
            if buf.startswith(b"INSERT INTO `", pos, end):
                m = _INSERT.match(buf, pos, end)
                if m:  # the first row; the rest are counted by their separators
                    self._insert_table = name = self._name(m.group(1))
                    self.tables[name] = self.tables.get(name, 0) + 1
                    self._separator_pending = False
                    pos = m.end()
                    continue
            nl = buf.find(b"\n", pos, end)
            line = buf[pos:nl]
            self._header_line(line)
            if line.strip():
                self.last_line = line
            pos = nl + 1

    def feed(self, chunk: bytes) -> None:
        start = 0
        if self._pieces:  # finish the line carried over from the previous chunk
            nl = chunk.find(b"\n")
            if nl < 0:
                self._pieces.append(chunk)
                return
            self._pieces.append(chunk[:nl + 1])
            line = b"".join(self._pieces)
            self._pieces = []
            self._block(line, 0, len(line))
            start = nl + 1
        last_nl = chunk.rfind(b"\n", start)
        if last_nl >= 0:
            self._block(chunk, start, last_nl + 1)
            start = last_nl + 1
        if start < len(chunk):
            self._pieces.append(chunk[start:])

    def finish(self) -> None:
        if self._pieces:
            line = b"".join(self._pieces) + b"\n"
            self._block(line, 0, len(line))
            self._pieces = []

    @property
    def completed(self) -> bool:
        return self._insert_table is None and self.last_line.startswith(qd.DUMP_TRAILER)
