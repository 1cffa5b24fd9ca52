"""A trace written as the run goes, so that a killed run still leaves one behind.

While a run is traced with a save path, its trace file is a stream of JSON lines: a
header (format, version, `"stream": true`, meta), then records in the order they
happened, each on its own line and flushed to the operating system as it is written:

    {"sources": [...]}       sources first used by the records that follow
    {"structures": [...]}    graph structures first used by the records that follow
    {"pass": {...}}          a finished pass (version-2 pass record)
    {"events": [...]}        events recorded since the last record, in order: written with
                             each pass (those up to it: a routine event numbered after it,
                             still being completed, waits for the next record), all of them
                             at once for an event that is not routine (a diagnostic's cause
                             after the last pass survives a kill too), and the rest at the end

When the run ends, the whole trace replaces the stream (`traceio.save`). A run killed
before that (SIGKILL, power loss) leaves the stream: `load` reads every complete line,
and says in `meta["incomplete"]` that the run was cut short.

The pass records in the stream are those of the whole trace, written with the same
encoder: saving a streamed trace (`assembled`) copies them from the file instead of
encoding every pass again (most of a long run's save), and encodes only what the run's end
changes (meta, events, diagnostics). Passes are records, never edited once finished: the
one a stream wrote is the one saved.

A writer that `holds` (`gradscope trace`: the run's trace keeps only a sample of its passes
and routine events in memory, `keep.RunningKeep(held=True)`) saves every pass and event
it wrote instead: the events read back from the stream (those still held encoded anew),
the diagnostics' event numbers turned into the file's.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from array import array
from pathlib import Path
from typing import IO, Any, Callable

from ..model import FORMAT, Event, Pass, Repeat, Trace
from . import v2, v2_read
from .decode import Malformed, free_form, malformed
from .jsonio import dumps
from .keep import HELD_KEY, ROUTINE_EVENTS

STREAM_KEY = "stream"
log = logging.getLogger("gradscope")


class StreamWriter:
    """Appends each finished pass of `trace` to `path`. Never raises into the run: a
    stream that cannot be written (disk full, folder deleted) stops, and the trace is
    still saved whole at the end."""

    def __init__(self, trace: Trace, path: str | Path, holds: bool = False) -> None:
        self.trace = trace
        self.path = Path(path)
        self.holds = holds  # save every pass and event written, not only those `trace` holds
        self._encoder = v2.Encoder()
        self._file: IO[str] | None = None
        self._sources = self._structures = 0
        self._queue: list[Event] = []  # events recorded, not yet written
        self._events_written = 0
        self._last_pass = -1  # the index of the last pass written
        self._event_lines = array("q")  # offset, length and number of events of each events line
        # id() of each event written that is still alive -> (its place among all, the event, weakly)
        self._numbers: dict[int, tuple[int, weakref.ref]] = {}
        self._failed = False
        self._lock = threading.Lock()  # (passes and events may come from the user's threads)
        self._size = 0  # characters (ASCII: bytes) written so far
        # per pass written: its index, id() of its object, its line's offset and length
        self._written = array("q")

    def write_pass(self, p: Pass, repeat: Repeat | None = None) -> None:
        """Append a finished pass, and the events recorded up to it. (A tracer's pass listener.)"""
        self._append(p, repeat=repeat)

    def write_event(self, event: Event) -> None:
        """(A tracer's event listener.) Append the events so far, unless this one is routine
        (an optimizer step): those wait for the next record."""
        with self._lock:
            self._queue.append(event)
        if event.kind not in ROUTINE_EVENTS:
            self._append(None, everything=True)

    def _due(self, everything: bool) -> list[Event]:
        """The queued events to write now, in order: up to the first routine one numbered
        after the last pass written (capture may still add to it), or all."""
        queue, upto = self._queue, len(self._queue)
        if not queue:
            return []
        if not everything:
            upto = next((k for k, e in enumerate(queue) if e.kind in ROUTINE_EVENTS and e.pass_index is not None
                         and e.pass_index > self._last_pass), upto)
        due, self._queue = (queue, []) if upto == len(queue) else (queue[:upto], queue[upto:])
        numbers = self._numbers
        for e in due:
            if self.holds:  # (only a writer that holds saves events from its numbers)
                numbers[id(e)] = (self._events_written, weakref.ref(e))
            self._events_written += 1
            if self.holds and not self._events_written % 1024:  # events let go from memory: forget them
                for key in [key for key, (_, ref) in numbers.items() if ref() is None]:
                    del numbers[key]
        return due

    def _append(self, p: Pass | None, everything: bool = False, repeat: Repeat | None = None) -> None:
        if self._failed:
            return
        try:
            with self._lock:
                if self._file is None:
                    self._file = open(self.path, "w", encoding="utf-8")
                    self._write({"format": FORMAT, "version": v2.VERSION, STREAM_KEY: True,
                                 "meta": self.trace.meta})
                text = ""
                if p is not None:
                    text = self._encoder.pass_text(p, repeat) + "\n"
                    self._last_pass = max(self._last_pass, p.index)
                due = self._due(everything)
                events = self._encoder.events_text(due) if due else ""
                self._write_new_tables()
                if p is not None:
                    self._written.extend((p.index, id(p), self._size, len(text) - 1))
                if events:
                    self._event_lines.extend((self._size + len(text), len(events), len(due)))
                    text += events + "\n"
                self._file.write(text)
                self._size += len(text)
                self._file.flush()
        except Exception:  # never let the stream stop the user's run
            log.debug("gradscope: writing the trace stream failed", exc_info=True)
            self._failed = True
            self.close()

    def _write_new_tables(self) -> None:
        enc = self._encoder
        if len(enc.sources) > self._sources:
            self._write({"sources": enc.sources[self._sources:]}, flush=False)
            self._sources = len(enc.sources)
        if len(enc.structures) > self._structures:
            self._write({"structures": enc.structures[self._structures:]}, flush=False)
            self._structures = len(enc.structures)

    def _write(self, record: dict, flush: bool = True) -> None:
        assert self._file is not None
        text = dumps(record) + "\n"
        self._file.write(text)
        self._size += len(text)
        if flush:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None and self._queue:
            self._append(None, everything=True)  # (the events after the last pass)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                self._failed = True
            self._file = None
            if not self._failed:  # its passes can be copied when the trace is saved
                self._encoder.forget_objects()
                trace = self.trace
                _finished[id(trace)] = (weakref.ref(trace), self)
                weakref.finalize(trace, _finished.pop, id(trace), None)
                self.trace = Trace()  # (held weakly from now on: the stream outlives no trace)

    def pass_lines(self, trace: Trace) -> list[str] | None:
        """The stream's record of each of `trace`'s passes (the JSON of each, as written;
        of a writer that `holds`, of every pass it wrote), or None when the stream does not
        hold them all as they are (a pass it never wrote, a file changed since)."""
        found = self._read(trace)
        return found[0] if found is not None else None

    def _read(self, trace: Trace) -> tuple[list[str], str] | None:
        """`pass_lines`, and the stream's text."""
        written = self._written
        where = {written[k]: (written[k + 1], written[k + 2], written[k + 3]) for k in range(0, len(written), 4)}
        places = []
        for p in trace.passes:
            found = where.get(p.index)
            if found is None or found[0] != id(p):
                return None
            places.append(found[1:])
        if self.holds:
            places = [(written[k + 2], written[k + 3]) for k in range(0, len(written), 4)]
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if len(data) != self._size or not data.isascii():
            return None
        text = data.decode("ascii")
        start = len('{"pass":')
        if not all(text.startswith('{"pass":', offset) for offset, _ in places):
            return None
        return [text[offset + start:offset + length - 1] for offset, length in places], text

    def events_json(self, trace: Trace, text: str) -> str | None:
        """Every event the stream wrote, in order, as one JSON array: those `trace` still
        holds encoded anew (capture may have completed one since: a step's "leaf-update"
        written early with an event that is not routine), the others copied from the
        stream's text as written (parsing them back costs more than the rest of a save);
        None when the stream lacks one `trace` holds (it stopped early)."""
        fresh: dict[int, dict] = {}
        for e in trace.events:
            number = self._number(e)
            if number is None:
                return None
            fresh[number] = self._encoder.event_record(e)
        parts: list[str] = []
        lines, first, head = self._event_lines, 0, len('{"events":[')
        for k in range(0, len(lines), 3):
            line = text[lines[k]:lines[k] + lines[k + 1]]
            count = lines[k + 2]
            if not line.startswith('{"events":[') or not line.endswith("]}"):
                return None
            if any(n in fresh for n in range(first, first + count)):
                records = json.loads(line)["events"]
                parts.extend(dumps(fresh.get(first + n, record)) for n, record in enumerate(records))
            elif count:
                parts.append(line[head:-2])
            first += count
        if first != self._events_written:
            return None
        return "[" + ",".join(parts) + "]"

    def _number(self, e: Event) -> int | None:
        found = self._numbers.get(id(e))
        return found[0] if found is not None and found[1]() is e else None

    def event_number(self, trace: Trace, index: int | None) -> int | None:
        """The place among all the stream's events of `trace.events[index]`."""
        if index is None or not 0 <= index < len(trace.events):
            return None
        return self._number(trace.events[index])


# streams closed whole, by id() of their trace (while the trace lives): `assembled` reads them
_finished: dict[int, tuple[weakref.ref, StreamWriter]] = {}


def assembled(trace: Trace, header: dict) -> str | None:
    """`trace` as one version-2 document (`v2.to_dict`'s, as JSON text) made from the
    stream it was written to: its pass records copied from there, the rest encoded. None
    when there is no such stream, or it does not hold every pass of the trace."""
    found = _finished.get(id(trace))
    if found is None or found[0]() is not trace:
        return None
    writer = found[1]
    read = writer._read(trace)
    if read is None:
        return None
    passes, text = read
    enc = writer._encoder
    meta = trace.meta
    if writer.holds:
        events = writer.events_json(trace, text)
        if events is None:
            return None
        diagnostics = []
        for d in trace.diagnostics:
            record = enc.diagnostic_record(d)
            if d.event_index is not None:
                record["event_index"] = writer.event_number(trace, d.event_index)
                if record["event_index"] is None:
                    return None
            diagnostics.append(record)
        meta = {k: v for k, v in meta.items() if k != HELD_KEY}
    else:
        events = dumps([enc.event_record(e) for e in trace.events])
        diagnostics = [enc.diagnostic_record(d) for d in trace.diagnostics]
    del text
    head = dumps({**header, "meta": meta, "sources": enc.sources, "structures": enc.structures})
    return (f'{head[:-1]},"passes":[{",".join(passes)}],"events":{events},'
            f'"diagnostics":{dumps(diagnostics)}}}')



def read_stream(text: str, diagnose: Callable[[Trace], list] | None = None) -> Trace:
    """The trace in a stream: every complete record, and a note that the run was cut short;
    its diagnostics found by `diagnose` (the stream holds none)."""
    lines = text.split("\n")
    complete = lines[:-1] if not text.endswith("\n") else lines  # the last line may be half-written
    header = json.loads(lines[0])
    if header.get("version") != v2.VERSION:
        raise malformed(Malformed("", f"a stream of version {header.get('version')!r}, this gradscope reads {v2.VERSION}"))
    dec = v2_read.Decoder()
    trace = Trace()
    try:
        trace.meta = free_form(header.get("meta", {}), "meta")
        for number, line in enumerate(complete[1:], start=2):
            if line.strip():
                _read_record(dec, trace, _parse(line, number), f"line {number}")
    except Malformed as exc:
        raise malformed(exc) from None
    except RecursionError:
        raise malformed(Malformed("", "nested too deeply")) from None
    trace.meta["incomplete"] = (f"the run stopped before gradscope finished its trace (killed?): "
                                f"{len(trace.passes)} passes were saved as they happened")
    if diagnose is not None:
        trace.diagnostics = diagnose(trace)
    return trace


def _parse(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise Malformed(f"line {number}", "not a JSON record") from None


def _read_record(dec: v2_read.Decoder, trace: Trace, record: Any, where: str) -> None:
    if not isinstance(record, dict) or len(record) != 1:
        raise Malformed(where, "expected one record")
    ((kind, body),) = record.items()
    if kind == "sources":
        dec.add_sources(body, where)
    elif kind == "structures":
        dec.add_structures(body, where)
    elif kind == "pass":
        trace.passes.append(dec.pass_(body, where))
    elif kind == "events":
        trace.events.extend(dec.event(e, f"{where}[{k}]") for k, e in enumerate(v2_read.as_list(body, where)))
    else:
        raise Malformed(where, f"unknown record {kind!r}")
