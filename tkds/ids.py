"""The one gate between identifiers from outside and the filesystem.

Every id that reaches a file name, a folder or a tar member comes from TikTok, a saved capture or a
DuckDB file, so none is trusted. Video, author, music and comment ids are digit strings; usernames
follow TikTok's own grammar. Paths built from ids go through `id_path`, which also checks that the result
stays inside its folder; tar member names go through `member_name`.
"""

from __future__ import annotations

import re
from pathlib import Path

# TikTok's numeric ids are 64-bit (at most 20 digits); a little slack for other platforms' exports.
DIGIT_ID = re.compile(r"[0-9]{1,24}")
# TikTok: letters, digits, underscores and periods, at most 24 characters, never ending in a period.
USERNAME = re.compile(r"[A-Za-z0-9_.]{0,23}[A-Za-z0-9_]")
# The member extensions a shard may hold (after the key): media, sidecars, metadata, thumbnails, and a
# photo post's numbered images (`img0.jpg`: one inner dot, which WebDataset keeps in the extension).
MEMBER_EXTENSION = re.compile(r"[a-z0-9]{1,8}(?:\.[a-z0-9]{1,8})?")
PREVIEW = 40  # characters of a bad value quoted in a message


class InvalidId(ValueError):
    """An identifier that must not reach a path; the message says which and why, quoting a short prefix."""


def preview(value: object, limit: int = PREVIEW) -> str:
    """A short, printable prefix of untrusted input, for error messages."""
    text = value if isinstance(value, str) else repr(value)
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return repr(shown + ("…" if len(text) > limit else ""))


def check_id(value: object, kind: str = "video") -> str:
    """`value` as a digit-string id of `kind` (video, author, music, comment), or `InvalidId`."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidId(f"{kind} id {preview(value)}: not a string of digits")
    try:
        text = str(value)
    except ValueError:  # an int past Python's digit limit for str()
        raise InvalidId(f"{kind} id: a number too long to be an id") from None
    if not DIGIT_ID.fullmatch(text):
        raise InvalidId(f"{kind} id {preview(text)}: not a string of 1 to 24 digits")
    return text


def is_valid_id(value: object) -> bool:
    try:
        check_id(value)
    except InvalidId:
        return False
    return True


def check_username(value: object) -> str:
    """A TikTok uniqueId (without '@'), or `InvalidId`."""
    if not isinstance(value, str) or not USERNAME.fullmatch(value):
        raise InvalidId(
            f"username {preview(value)}: TikTok usernames are 1 to 24 letters, digits, '_' or '.', "
            "not ending in '.'"
        )
    return value


def is_valid_username(value: object) -> bool:
    return isinstance(value, str) and bool(USERNAME.fullmatch(value))


def id_path(folder: Path, video_id: str, suffix: str = "", kind: str = "video") -> Path:
    """`folder / f"{video_id}{suffix}"`, for a checked id, and never outside `folder`."""
    name = check_id(video_id, kind) + suffix
    if "/" in suffix or "\\" in suffix or "\0" in suffix:
        raise InvalidId(f"suffix {preview(suffix)}: not a plain file-name suffix")
    path = folder / name
    base = folder.resolve()
    if path.resolve().parent != base:
        raise InvalidId(f"{kind} id {preview(video_id)}: its path {path} leaves {folder}")
    return path


def member_name(key: str, extension: str) -> str:
    """A tar member name `KEY.EXT` for a checked id and a plain extension (`mp4`, `json`, …)."""
    if not MEMBER_EXTENSION.fullmatch(extension):
        raise InvalidId(
            f"member extension {preview(extension)}: not 1 to 8 lower-case letters or digits "
            "(twice at most, joined by a dot)"
        )
    return f"{check_id(key)}.{extension}"
