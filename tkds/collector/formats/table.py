"""Any CSV, TSV or Parquet table of TikTok metadata, and the table layer the tools' CSV exports share.

A table's columns are matched to tkds's fields (`flat.FIELDS`) by name, ignoring case and punctuation
(`vid_nlike`, `diggCount`, `authorMeta/fans` and `authorMeta.fans` all match), or as `--map` says; the
chosen mapping is reported, and a table where no column holds a video id is refused with the fix.
Rows stream one at a time through `flat.flat_record`, so the honest-value rules hold for every row,
and a bad row (wrong field count, bytes that are not text, an invalid or lossy id) is counted by its
reason while the rest imports. CSV cells stay exact text: an id written as `7.5068e+18` is seen as
written, never parsed to a float first.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from tkds import ids
from tkds.collector.formats import FileReport, Format, ImportOptions, Sample, batched, sample
from tkds.collector.formats.flat import FIELDS, flat_record
from tkds.collector.parse import CaptureError
from tkds.collector.records import Parsed, Refusal
from tkds.errors import TkdsError

PARQUET_MAGIC = b"PAR1"
DELIMITERS = (",", "\t", ";", "|")
MAX_FIELD = 16 * 2**20  # a caption is a few KB; an unclosed quote stops here instead of eating the file
PARQUET_ROWS = 2048  # rows fetched at a time from a Parquet file
SHOWN_COLUMNS = 30  # columns named in a refusal

# Common column names (normalised: lower case, letters and digits only) and the field each holds.
# Taken from the tools' documented output: TikTok's own item keys, tiktok-scraper's and Apify's
# flattened exports, pyktok's CSV, the Research API's fields, and published research tables.
_NAMES = {
    "video_id": "id video_id vid_id videoid aweme_id item_id itemid",
    "video_url": "url video_url vid_url webVideoUrl web_video_url share_url tiktok_url post_url link",
    "description": "desc text description vid_desc vid_caption caption video_description title",
    "create_time": "create_time createTime createTimeISO vid_postTime post_time posted_at "
    "upload_date video_timestamp created_at publish_time",
    "duration": "duration vid_duration video_duration videoMeta/duration video_length duration_s",
    "width": "width videoMeta/width video_width",
    "height": "height videoMeta/height video_height",
    "plays": "plays playCount play_count views view_count vid_nview stats/playCount video_playcount",
    "likes": "likes like_count diggCount digg_count vid_nlike stats/diggCount video_diggcount",
    "comments": "comments comment_count commentCount vid_ncomment stats/commentCount video_commentcount",
    "shares": "shares share_count shareCount vid_nshare stats/shareCount video_sharecount",
    "collects": "collects collect_count collectCount saves save_count vid_nsave stats/collectCount "
    "favorites_count video_collectcount",
    "hashtags": "hashtags vid_hashtags hashtag_names tags challenges",
    "is_ad": "is_ad isAd video_is_ad",
    "location": "location locationCreated video_locationcreated region_code",
    "play_url": "play_url video/playAddr play_addr videoUrlNoWaterMark",
    "download_url": "download_url video/downloadAddr download_addr",
    "images": "images image_urls",
    "kind": "kind",
    "author_id": "author_id authorId authorMeta/id author/id user_id creator_id",
    "username": "username user_name uniqueId unique_id author authorMeta/name author/uniqueId "
    "author_username author_unique_id creator",
    "nickname": "nickname nickName authorMeta/nickName author/nickname author_name author_nickname "
    "user_nickname display_name",
    "sec_uid": "sec_uid secUid authorMeta/secUid author/secUid",
    "verified": "verified authorMeta/verified author/verified author_verified user_verified",
    "private": "private privateAccount authorMeta/privateAccount author/privateAccount",
    "signature": "signature authorMeta/signature author/signature user_signature bio",
    "followers": "followers follower_count followerCount fans user_nfollower user_followers "
    "authorMeta/fans authorStats/followerCount author_followercount",
    "following": "following following_count followingCount user_nfollowing authorMeta/following "
    "authorStats/followingCount author_followingcount",
    "hearts": "hearts heart_count heartCount user_total_likes total_likes authorMeta/heart "
    "authorStats/heartCount author_heartcount",
    "author_videos": "author_videos video_count videoCount user_nvideo authorMeta/video "
    "authorStats/videoCount author_videocount",
    "music_id": "music_id musicId musicMeta/musicId music/id sound_id",
    "music_url": "music_url sound_url",
    "music_title": "music_title musicName musicMeta/musicName music/title sound_title sound_name",
    "music_author": "music_author musicAuthor music_authorName musicMeta/musicAuthor music/authorName",
    "music_original": "music_original musicOriginal music_originality musicMeta/musicOriginal music/original",
    "music_duration": "music_duration musicMeta/duration music/duration",
    "music_play_url": "music_play_url musicMeta/playUrl music/playUrl",
    "scraped_at": "scraped_at scrapedAt scrape_time scrapeTime vid_scrapeTime collected_at crawled_at "
    "fetched_at observed_at",
}


def normal(column: str) -> str:
    """A column name as the alias table knows it: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", column.lower())


ALIASES: dict[str, str] = {normal(name): target for target, names in _NAMES.items() for name in names.split()}
ID_FIELDS = ("video_id", "video_url")
COMMENT_IDS = {"cid", "commentid"}
# Flattened lists: Apify writes hashtags/0/name, hashtags/1/name, …; json2csv's flattening writes
# hashtags.0.name. Every such column feeds the one field, in index order.
LIST_COLUMN = re.compile(r"(hashtags|challenges|images)([0-9]+)(name|title|url)?")
LIST_FIELDS = {"hashtags": "hashtags", "challenges": "hashtags", "images": "images"}
JSON_LIST_FIELDS = ("hashtags", "images")  # cells that may hold a JSON array, as json2csv writes them


@dataclass(frozen=True)
class TableKind:
    """One kind of table: the generic one, or a tool's CSV export recognised by its header.

    `aliases` replace the common names for this tool; `constants` gives fields the file implies (a
    scrape time in its name); `finish` adjusts each record (a flag read as a kind); `notes` are said
    about every file of this kind.
    """

    name: str
    title: str
    claims: Callable[[list[str]], bool]
    aliases: Mapping[str, str] = field(default_factory=dict)
    constants: Callable[[Path], dict[str, Any]] | None = None
    finish: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
    notes: tuple[str, ...] = ()

    def field_for(self, column: str) -> str | None:
        """The field a column holds for this kind; an alias of "" means the tool's column is not one."""
        key = normal(column)
        return (self.aliases[key] or None) if key in self.aliases else ALIASES.get(key)


# --- reading rows


MAX_HEADER = 8192  # characters in a header line: a few hundred columns


def _delimiter(text: str) -> tuple[str, list[str]] | None:
    """The delimiter that splits a table's header row into the most columns; a one-column header (a
    list of video ids or URLs) is read with ","."""
    best: tuple[str, list[str]] | None = None
    for delimiter in DELIMITERS:
        try:
            header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        except csv.Error:
            continue
        if header and any(cell.strip() for cell in header) and (best is None or len(header) > len(best[1])):
            best = delimiter, [cell.strip() for cell in header]
    return best


def header_of(head: Sample) -> list[str] | None:
    """A CSV or TSV head's column names, or None: what the tool formats sniff by. A header line is
    short and holds no markup or JSON, which tells a table from a page fragment with an id in it."""
    if (
        head.head.startswith(PARQUET_MAGIC)
        or not head.is_text
        or head.text.lstrip()[:1] in ("{", "[", "<", "")
    ):
        return None
    first_line = head.text.lstrip("\ufeff").split("\n", 1)[0]
    if len(first_line) > MAX_HEADER or any(mark in first_line for mark in "<>{}"):
        return None
    found = _delimiter(head.text.lstrip("\ufeff"))
    return found[1] if found else None


def _encoding(head: bytes) -> str:
    """UTF-8, unless the head has bytes that are not UTF-8 and no character that is: then cp1252, what
    spreadsheet programs write. A UTF-8 file with a few bad rows stays UTF-8, and those rows are counted."""
    text = head.decode("utf-8", errors="replace")
    undecodable = text.count("\ufffd")
    if undecodable and not any(ord(char) > 127 and char != "\ufffd" for char in text):
        return "cp1252"
    return "utf-8"


class _Lines:
    """A CSV file's lines as text, each decoded on its own, so that one bad byte costs one row.

    `fault` names what was wrong with the lines read since the last row: not text in the file's
    encoding, or a line longer than MAX_FIELD (skipped, in bounded memory).
    """

    def __init__(self, handle: io.BufferedReader, encoding: str) -> None:
        self.handle, self.encoding = handle, encoding
        self.fault: str | None = None

    def __iter__(self) -> Iterator[str]:
        first = True
        while raw := self.handle.readline(MAX_FIELD):
            if len(raw) == MAX_FIELD and not raw.endswith(b"\n"):
                while (rest := self.handle.readline(MAX_FIELD)) and not rest.endswith(b"\n"):
                    pass
                self.fault = f"a line longer than {MAX_FIELD // 2**20} MiB"
                yield "\n"
                continue
            if first:
                raw, first = raw.removeprefix(b"\xef\xbb\xbf"), False
            try:
                yield raw.decode(self.encoding)
            except UnicodeDecodeError:
                self.fault = f"bytes that are not {self.encoding} text"
                yield raw.decode(self.encoding, errors="replace")


@dataclass
class _Table:
    """An open table: its columns, its rows (a dict, or the Refusal of a bad row), and `close`."""

    columns: list[str]
    rows: Iterator[dict | Refusal]
    close: Callable[[], None]


def _csv_rows(path: Path, report: FileReport) -> _Table:
    head = sample(path)
    found = _delimiter(head.text.lstrip("\ufeff"))
    if found is None:
        raise CaptureError("bad_table", "no header row")
    delimiter, _ = found
    encoding = _encoding(head.head)
    if encoding != "utf-8":
        report.notes.append(f"read as {encoding}: it is not UTF-8")
    if delimiter != ",":
        report.notes.append(f"delimiter {delimiter!r}")
    handle = path.open("rb")
    lines = _Lines(handle, encoding)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        columns = [cell.strip() for cell in next(reader)]
    except (csv.Error, StopIteration) as error:
        handle.close()
        raise CaptureError("bad_table", f"its header row cannot be read ({error})") from None
    lines.fault = None
    return _Table(columns, _csv_records(lines, reader, columns), handle.close)


def _csv_records(lines: _Lines, reader: Any, columns: list[str]) -> Iterator[dict | Refusal]:
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            lines.fault = None
            yield Refusal("malformed row", f"line {reader.line_num}: {error}")
            continue
        if lines.fault:
            fault, lines.fault = lines.fault, None
            reason = "undecodable row" if "text" in fault else "malformed row"
            yield Refusal(reason, f"line {reader.line_num}: {fault}")
        elif not cells or cells == [""]:
            continue  # a blank line
        elif len(cells) != len(columns):
            detail = f"line {reader.line_num}: {len(cells)} fields where the header has {len(columns)}"
            yield Refusal("malformed row", detail)
        else:
            yield dict(zip(columns, cells, strict=True))


def _plain(value: Any) -> Any:
    """A Parquet cell as JSON-safe Python: times as ISO text, durations as seconds, lists kept."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _parquet_rows(path: Path) -> _Table:
    connection = duckdb.connect()
    try:
        result = connection.execute("SELECT * FROM read_parquet(?)", [str(path)])
    except duckdb.Error as error:
        connection.close()
        raise CaptureError(
            "bad_table", f"not a readable Parquet file ({str(error).splitlines()[0]})"
        ) from None
    columns = [description[0] for description in result.description]

    def records() -> Iterator[dict | Refusal]:
        while True:
            try:
                chunk = result.fetchmany(PARQUET_ROWS)
            except duckdb.Error as error:
                raise CaptureError("bad_table", str(error).splitlines()[0]) from None
            if not chunk:
                return
            for values in chunk:
                yield {column: _plain(value) for column, value in zip(columns, values, strict=True)}

    return _Table(columns, records(), connection.close)


def _rows(path: Path, report: FileReport) -> _Table:
    with path.open("rb") as handle:
        magic = handle.read(len(PARQUET_MAGIC))
    if magic == PARQUET_MAGIC:
        report.notes.append("Parquet")
        return _parquet_rows(path)
    return _csv_rows(path, report)


# --- mapping columns to fields


@dataclass
class ColumnMap:
    """Which column feeds which field; list columns (hashtags/0/name, …) feed one field in order."""

    columns: dict[str, str]
    lists: dict[str, list[str]]
    unmapped: list[str]

    def fields(self) -> set[str]:
        return set(self.columns.values()) | set(self.lists)


def choose_mapping(columns: list[str], kind: TableKind, user: Mapping[str, str] | None) -> ColumnMap:
    """`--map` first, then the kind's and the common names; each field from its first column."""
    user = user or {}
    chosen: dict[str, str] = {column: user[column] for column in columns if column in user}
    taken = set(chosen.values())
    lists: dict[str, list[tuple[int, str]]] = {}
    unmapped = []
    for column in columns:
        if column in chosen:
            continue
        target = kind.field_for(column)
        if target is not None and target not in taken:
            chosen[column] = target
            taken.add(target)
        elif (match := LIST_COLUMN.fullmatch(normal(column))) and LIST_FIELDS[match[1]] not in taken:
            lists.setdefault(LIST_FIELDS[match[1]], []).append((int(match[2]), column))
        else:
            unmapped.append(column)
    ordered = {target: [column for _, column in sorted(entries)] for target, entries in lists.items()}
    return ColumnMap(chosen, ordered, unmapped)


def _mapping_note(mapping: ColumnMap) -> str:
    pairs = [f"{column}→{target}" for column, target in mapping.columns.items()]
    for target, members in mapping.lists.items():
        shown = members[0] if len(members) == 1 else f"{members[0]}…{members[-1]}"
        pairs.append(f"{shown}→{target}")
    return "columns: " + ", ".join(pairs)


def _cell(target: str, value: Any) -> Any:
    """A cell as flat_record takes it: a JSON array in a list field's cell is read as the list."""
    if target in JSON_LIST_FIELDS and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested past Python's limit: kept as text
            return value
    return value


def _record(row: dict, mapping: ColumnMap, constants: dict[str, Any]) -> dict[str, Any]:
    record = dict(constants)
    for column, target in mapping.columns.items():
        value = row[column]
        if value is not None and value != "":
            record[target] = _cell(target, value)
    for target, members in mapping.lists.items():
        values = [row[column] for column in members if row[column] not in (None, "")]
        if values:
            record[target] = values
    return record


def _refuse_without_id(columns: list[str]) -> CaptureError:
    shown = ", ".join(columns[:SHOWN_COLUMNS]) + (", …" if len(columns) > SHOWN_COLUMNS else "")
    return CaptureError(
        "no_id_column",
        f"its columns are {ids.preview(shown, 200)}; name the id column with "
        "--map COLUMN=video_id (or COLUMN=video_url)",
    )


def read_table(path: Path, options: ImportOptions, report: FileReport, kind: TableKind) -> Iterator[Parsed]:
    """Stream a table's rows as Parsed batches; FileReport gets the mapping, unmapped columns and rows."""
    table = _rows(path, report)
    try:
        yield from _read_open(path, table, options, report, kind)
    finally:
        table.close()


def _read_open(
    path: Path, table: _Table, options: ImportOptions, report: FileReport, kind: TableKind
) -> Iterator[Parsed]:
    columns = table.columns
    if _comments(columns) and not options.mapping:
        raise CaptureError("bad_table", "it holds comments (a cid column), not videos")
    mapping = choose_mapping(columns, kind, options.mapping)
    if not mapping.fields() & set(ID_FIELDS):
        raise _refuse_without_id(columns)
    missing = [column for column in options.mapping or {} if column not in columns]
    report.notes.append(_mapping_note(mapping))
    if mapping.unmapped:
        report.notes.append("unmapped: " + ", ".join(mapping.unmapped))
    if missing:
        report.notes.append("--map columns not in this table: " + ", ".join(missing))
    report.notes.extend(kind.notes)
    constants = kind.constants(path) if kind.constants else {}
    yield from batched(_parsed(table.rows, mapping, constants, kind, report))


def _parsed(
    rows: Iterator[dict | Refusal],
    mapping: ColumnMap,
    constants: dict[str, Any],
    kind: TableKind,
    report: FileReport,
) -> Iterator[Parsed]:
    for row in rows:
        report.rows += 1
        if isinstance(row, Refusal):
            yield Parsed(shape=kind.name, refused=[row])
            continue
        record = _record(row, mapping, constants)
        if kind.finish is not None:
            kind.finish(row, record)
        yield flat_record(record, row, kind.name)


def check(options: ImportOptions) -> None:
    """A mapping given through the Python API names only tkds fields (the CLI's parse_mapping checks
    this too, with the list of fields)."""
    for column, target in (options.mapping or {}).items():
        if target not in FIELDS:
            raise TkdsError(
                f"--map {ids.preview(column)}={ids.preview(target)}: not a tkds field; "
                f"the fields are {', '.join(FIELDS)}"
            )


def format_for(
    kind: TableKind, sniff: Callable[[Sample], bool] | None = None, with_check: bool = False
) -> Format:
    """The import Format of a table kind: its sniff claims a CSV or TSV whose header it recognises."""

    def claims(head: Sample) -> bool:
        columns = header_of(head)
        return columns is not None and kind.claims(columns)

    def read(path: Path, options: ImportOptions, report: FileReport) -> Iterator[Parsed]:
        return read_table(path, options, report, kind)

    return Format(kind.name, kind.title, sniff or claims, read, check if with_check else None)


def _has_id_column(columns: list[str]) -> bool:
    return any(ALIASES.get(normal(column)) in ID_FIELDS for column in columns) and not _comments(columns)


def _comments(columns: list[str]) -> bool:
    """A table of comments (pyktok's comment CSV: cid, text, aweme_id, digg_count, …), whose aweme_id and
    digg_count are the video's id and the comment's likes: never to be read as videos."""
    return any(normal(column) in COMMENT_IDS for column in columns)


def _sniff(head: Sample) -> bool:
    """Parquet by its magic bytes; CSV or TSV by a header row with a column that holds an id."""
    if head.head.startswith(PARQUET_MAGIC):
        return True
    columns = header_of(head)
    return columns is not None and _has_id_column(columns)


GENERIC = TableKind("table", "CSV, TSV or Parquet table", _has_id_column)
FORMAT = format_for(GENERIC, sniff=_sniff, with_check=True)
