"""The dataset card (README.md of a shard folder) renders its tables as tables, with the build's counts."""

from __future__ import annotations

import json
from pathlib import Path

from markdown_it import MarkdownIt  # rich's Markdown parser; with "table", as GitHub and the Hub render


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every table of `markdown` as rows of cell texts, the header first."""
    tables, rows, cells, cell = [], [], [], None
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            rows = []
        elif token.type == "tr_open":
            cells = []
        elif token.type in ("th_open", "td_open"):
            cell = ""
        elif token.type == "inline" and cell is not None:
            cell += token.content
        elif token.type in ("th_close", "td_close"):
            cells.append(cell)
            cell = None
        elif token.type == "tr_close":
            rows.append(cells)
        elif token.type == "table_close":
            tables.append(rows)
    return tables


def test_split_table_renders_with_the_builds_counts(built_shards: Path) -> None:
    card = (built_shards / "README.md").read_text()
    manifest = json.loads((built_shards / "dataset.json").read_text())
    tables = {tuple(table[0]): table[1:] for table in _tables(card)}
    assert ("member", "content") in tables
    splits = tables[("split", "samples", "authors", "shards")]
    assert [row[0] for row in splits] == ["train", "val", "test"]
    for name, samples, authors, shards in splits:
        assert int(samples) == manifest["counts"][name]
        assert int(shards) == sum(1 for path in manifest["shards"] if path.split("/")[0] == name)
        assert int(authors) >= (1 if int(samples) else 0)


def test_a_table_without_its_separator_row_is_not_a_table() -> None:
    """The check above would catch the card's old split table, which had no `|---|` row."""
    assert _tables("| split | samples |\n|---|---|\n| train | 3 |\n") == [
        [["split", "samples"], ["train", "3"]]
    ]
    assert _tables("| split | samples |\n| train | 3 |\n") == []
