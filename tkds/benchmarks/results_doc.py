"""docs/results.md's demo section, generated from a recorded `tkds demo` run's results.json.

The demo writes OUT/results.json (`tkds.benchmarks.demo.write_results`); a copy of one run's file is
committed as docs/results/demo.json, and the section between the two `MARKER`s of docs/results.md is
`demo_section()` of it, so every figure there is that run's. To record a new run:

    tkds demo --out demo
    python -m tkds.benchmarks.results_doc demo/results.json    # copies it, rewrites the section
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

from tkds.benchmarks.demo import RESULTS_FORMAT
from tkds.benchmarks.leaderboard import cell_text
from tkds.errors import TkdsError

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECORD = DOCS / "results" / "demo.json"
MARKDOWN = DOCS / "results.md"
MARKER = "<!-- demo-results {} -->"
START, END = MARKER.format("start"), MARKER.format("end")
WIDTH = 110  # docs/*.md wrap their prose here


def read_record(path: Path) -> dict:
    """A demo's results.json; TkdsError when it is missing or not one."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise TkdsError(f"cannot read {path} ({error}); run tkds demo to write it") from None
    if not isinstance(record, dict) or record.get("format") != RESULTS_FORMAT:
        raise TkdsError(f"{path} is not a tkds demo results file; use OUT/results.json of a tkds demo run")
    return record


def demo_section(record: dict) -> str:
    """The Markdown of one recorded run: what ran, how long it took, and its headline metric per row."""
    plan, corpus, samples, shards = record["plan"], record["corpus"], record["samples"], record["shards"]
    low, high = plan["seconds"]
    seconds = f"{low:g} s" if low == high else f"{low:g}–{high:g} s"
    steps = ", ".join(f"{method} {n}" for method, n in record["training_steps"].items()) or "none"
    stages = ", ".join(f"{stage} {s:.0f} s" for stage, s in record["stage_s"].items())
    columns = list(record["rows"][0]["headline"]) if record["rows"] else []
    summary = (
        f"A `tkds demo` run recorded on {record['date']} (tkds {record['tkds_version']}, its "
        f"`results.json`): {corpus['posts']} SynthTok posts ({seconds}), {corpus['photo_posts']} of them "
        f"photo posts, from {corpus['authors']} authors, collected through the twin and sharded with "
        f"author splits {'/'.join(f'{r:g}' for r in plan['ratios'])} "
        f"({samples['train']}/{samples['val']}/{samples['test']} train/val/test samples in "
        f"{shards.get('train', 0)}/{shards.get('val', 0)}/{shards.get('test', 0)} shards), then "
        f"`{plan['preset']}` for {', '.join(plan['methods'])}, {plan['seeds']} seeds each. "
        f"Training steps per learned method: {steps}. "
        f"Wall time {record['wall_s'] / 60:.1f} min ({stages})."
    )
    lines = [
        START,
        "<!-- generated from docs/results/demo.json by `python -m tkds.benchmarks.results_doc`; "
        "edit neither by hand -->",
        textwrap.fill(summary, WIDTH, break_on_hyphens=False, break_long_words=False),
        "",
        "| " + " | ".join(["row", *columns]) + " |",
        "|---|" + "---:|" * len(columns),
        *(
            "| " + " | ".join([row["row"], *(cell_text(row["headline"][c]) for c in columns)]) + " |"
            for row in record["rows"]
        ),
        END,
    ]
    return "\n".join(lines)


def current_section(markdown: str) -> str:
    """The demo section of docs/results.md as it stands; TkdsError when its markers are missing."""
    start, end = markdown.find(START), markdown.find(END)
    if start < 0 or end < start:
        raise TkdsError(f"docs/results.md lacks the {START} … {END} markers; put them back around the demo")
    return markdown[start : end + len(END)]


def record_run(results: Path, record_path: Path = RECORD, markdown_path: Path = MARKDOWN) -> None:
    """Copy a demo's results.json to docs/results/demo.json and regenerate docs/results.md's section."""
    record = read_record(results)
    markdown = markdown_path.read_text()
    section = current_section(markdown)
    if not record_path.exists() or not record_path.samefile(results):
        record_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results, record_path)
    markdown_path.write_text(markdown.replace(section, demo_section(record)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tkds.benchmarks.results_doc OUT/results.json")
    try:
        record_run(Path(sys.argv[1]))
    except TkdsError as error:
        sys.exit(f"error: {error}")
