"""benchmarks/README.md's generated blocks: text between `<!-- name:begin -->` and `<!-- name:end -->` lines,
rewritten by the benchmark scripts from their result files (never typed by hand)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def block(text: str, begin: str, end: str) -> str | None:
    """The text between the markers (without them), or None when the text has no such block."""
    match = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, flags=re.S)
    return match.group(1) if match else None


def replace_block(path: Path, begin: str, end: str, body: str) -> None:
    """Rewrite the block of the file at `path` with `body`; exit with a message if it has none."""
    text = path.read_text()
    if block(text, begin, end) is None:
        sys.exit(f"error: {path.name} has no {begin} ... {end} block")
    new = f"{begin}\n{body}\n{end}"
    path.write_text(re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: new, text, flags=re.S))


def update_from_result(result: Path, script: str, update) -> int:
    """A script's --update-readme: `update` with the committed result file's content; exit code 2
    and a message naming the file when there is none yet."""
    if not result.is_file():
        print(f"error: no result file {result}: run `python benchmarks/{script}` first", file=sys.stderr)
        return 2
    update(json.loads(result.read_text()))
    return 0
