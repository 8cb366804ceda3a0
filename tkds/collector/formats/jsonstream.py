"""Other tools' JSON exports, read in bounded memory: sniffing a file's head, streaming its items.

An export is one JSON array of items, an object holding that array under a key (tiktok-scraper's
`{"collector": [...]}`), or JSON Lines (one item, or one API response, per line). `Head` tokenizes
the first 64 KiB with ijson, which reads a value cut short, for the keys it names at each path: that
is what the sniffers look at. `items` then streams the file a chunk at a time and decodes one item
at a time with `json`'s C decoder, so memory holds one chunk and one item however large the file,
an item nested too deeply is a `RecursionError` (named "too_deep"), and numbers read as `json.loads`
reads them: a float id is refused as lossy, never trusted. (ijson's own item streaming is not used:
the path it keeps for every value grows with depth, and 64 KiB of "[" takes it 10 GB.)
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

import ijson

from tkds.collector.formats import FileReport, Sample, batched
from tkds.collector.formats.flat import flat_record
from tkds.collector.parse import CaptureError
from tkds.collector.records import Parsed, Refusal

HEAD_DEPTH = 8  # containers deep that sniffing looks
LONG_NUMBER = re.compile(r"[0-9]{1000,}")
CHUNK = 2**20  # characters read at a time
NUMBER_TAIL = re.compile(r"[0-9.eE+-]*\Z")  # what may follow a number cut by a chunk's end
MAX_ITEM = 64 * 2**20  # characters one item may take; an export's items take a few thousand
JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class Head:
    """The keys a file's head names, by ijson-style path: "item" for a top-level array's items, ""
    for top-level objects (one, or one per line), "collector.item" for items under "collector"."""

    def __init__(self, sample: Sample) -> None:
        self.opener = sample.text.lstrip()[:1]  # "[" for an array, "{" for an object or JSON Lines
        self._keys: dict[str, set[str]] = defaultdict(set)
        path: list[str] = []  # the open containers' path, one name each below the top level
        keys: list[str | None] = []  # per open container: its current key (None in an array)
        try:
            # ijson's C backend crashes on an int past Python's digit limit: no key is in one.
            text = LONG_NUMBER.sub("0", sample.text).encode()
            for event, value in ijson.basic_parse(text, multiple_values=True, use_float=True):
                if event == "map_key":
                    self._keys[".".join(path)].add(value)
                    keys[-1] = value
                elif event in ("start_map", "start_array"):
                    if keys:
                        path.append("item" if keys[-1] is None else keys[-1])
                    keys.append("" if event == "start_map" else None)
                    if len(keys) > HEAD_DEPTH:  # no export keeps its items deeper
                        break
                elif event in ("end_map", "end_array"):
                    keys.pop()
                    if keys:
                        path.pop()
        except ijson.JSONError:  # the head ends mid-value, or it is not JSON: what was read counts
            pass

    def keys(self, prefix: str) -> set[str]:
        return self._keys.get(prefix, set())


@lru_cache(maxsize=4)
def head(sample: Sample) -> Head:
    """The parsed head of `sample`, once for all the formats that sniff it."""
    return Head(sample)


def describe(prefix: str) -> str:
    """How a file holds its items, for the import report."""
    if prefix == "":
        return "one item per line (JSON Lines)"
    if prefix == "item":
        return "items in a JSON array"
    return f"items in the {prefix.removesuffix('.item')!r} array"


class _Stream:
    """A JSON text read a chunk at a time, decoded a value at a time."""

    decoder = json.JSONDecoder()

    def __init__(self, file: TextIO) -> None:
        self.file, self.text, self.at, self.ended = file, "", 0, False
        self.count = 0  # items read, for messages

    def _more(self) -> bool:
        """Read a chunk (or as much as is buffered, so a long value is re-read only log-many times)."""
        if self.ended:
            return False
        if self.at > CHUNK:  # drop what was read
            self.text, self.at = self.text[self.at :], 0
        chunk = self.file.read(max(CHUNK, len(self.text) - self.at))
        self.ended = not chunk
        self.text += chunk
        return bool(chunk)

    def fault(self, what: str) -> CaptureError:
        where = f"after item {self.count}" if self.count else "before the first item"
        return CaptureError("malformed", f"{where}: {what}")

    def peek(self) -> str:
        """The next character that is not white space, "" at the end."""
        while True:
            while self.at < len(self.text) and self.text[self.at] in " \t\r\n":
                self.at += 1
            if self.at < len(self.text) or not self._more():
                return self.text[self.at : self.at + 1]

    def expect(self, character: str) -> None:
        if self.peek() != character:
            raise self.fault(f"expected {character!r}, found {self.peek()[:1]!r}")
        self.at += 1

    def value(self) -> Any:
        """The next JSON value; one cut at the end of the buffer is read again with more text."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.at)
            except RecursionError:
                raise CaptureError("too_deep", f"item {self.count + 1}") from None
            except ValueError as error:  # JSONDecodeError, and ints past Python's digit limit
                if len(self.text) - self.at > MAX_ITEM:
                    raise CaptureError("too_big", f"item {self.count + 1} is over 64 MB") from None
                if not self._more():
                    raise self.fault(getattr(error, "msg", str(error))) from None
                continue
            # A number may go on in the next chunk ("7" of "7.5e+18"); anything else ended.
            cut = isinstance(value, int | float) and NUMBER_TAIL.match(self.text, end) is not None
            if not cut or not self._more():
                self.at = end
                return value

    def item(self) -> Any:
        value = self.value()
        self.count += 1
        return value

    def array(self) -> Iterator[Any]:
        self.expect("[")
        if self.peek() == "]":
            self.at += 1
            return
        while True:
            yield self.item()
            if self.peek() == "]":
                self.at += 1
                return
            self.expect(",")


def items(path: Path, prefix: str) -> Iterator[Any]:
    """Each value at `prefix`, one at a time: "item" (a top-level array's), "" (each top-level
    value: JSON Lines), or "KEY.item" (the array under a top-level object's KEY).

    Malformed JSON part way is a `CaptureError` naming the item it followed; the items before it
    have been yielded.
    """
    with path.open(encoding="utf-8-sig", errors="replace") as file:
        stream = _Stream(file)
        if prefix == "item":
            yield from stream.array()
        elif prefix == "":
            while stream.peek():
                yield stream.item()
        else:
            wanted = prefix.removesuffix(".item")
            stream.expect("{")
            while stream.peek() not in ("}", ""):
                key = stream.value()
                stream.expect(":")
                if key == wanted:
                    yield from stream.array()
                else:
                    stream.value()  # another member ("headers", "json"): read past
                if stream.peek() != "}":
                    stream.expect(",")
            stream.expect("}")


def read_records(
    path: Path,
    prefix: str,
    report: FileReport,
    to_fields: Callable[[dict], dict[str, Any]],
    shape: str,
) -> Iterator[Parsed]:
    """Each item at `prefix` through `to_fields` (its values in `flat.FIELDS` names) and
    `flat_record`, in upsert-sized batches; `report.rows` counts the items read."""

    def parsed() -> Iterator[Parsed]:
        for item in items(path, prefix):
            report.rows += 1
            yield record(item, to_fields, shape, report.rows)

    return batched(parsed())


def record(item: Any, to_fields: Callable[[dict], dict[str, Any]], shape: str, number: int) -> Parsed:
    """One item as Parsed records; an item that is not a JSON object is refused, and counted."""
    if not isinstance(item, dict):
        kind = JSON_KINDS.get(type(item), "null")
        return Parsed(shape=shape, refused=[Refusal("not an item", f"item {number}: a JSON {kind}")])
    return flat_record(to_fields(item), item, shape)


class Columns:
    """A tool's column names (nested keys joined by `separator`: "authorMeta.name") -> `flat.FIELDS`.

    `pick` reads an item nested as the tool writes its JSON, or flattened as its CSV and some views
    write it; where two columns name one field, the first with a value wins. A field in
    `zero_unknown` that is 0 (a photo post's video width, a sound id "0" for no sound) is left out:
    0 there means unknown, not a value.
    """

    def __init__(self, columns: dict[str, str], separator: str, zero_unknown: frozenset[str] = frozenset()):
        self.names = columns
        self.paths = [(column, column.split(separator), name) for column, name in columns.items()]
        self.zero_unknown = zero_unknown

    def pick(self, item: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for column, path, name in self.paths:
            if name in record:
                continue
            value = item.get(column)
            if value is None and len(path) > 1:
                value = item.get(path[0])
                for key in path[1:]:
                    value = value.get(key) if isinstance(value, dict) else None
            if value is None or value == "" or (name in self.zero_unknown and value in (0, "0")):
                continue
            record[name] = value
        return record
