"""The README is the learner's: short, free of engineering bookkeeping, naming every notebook; every
relative link of the README, benchmarks/README.md and docs/ resolves to a file of the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS_BLOCK = re.compile(r"<!-- results:begin -->.*?<!-- results:end -->", flags=re.DOTALL)  # generated
MAX_LINES = 200
# a commit hash, short or full: 7 to 40 hex digits with at least one digit and one letter (so that
# neither a number nor an English word such as "defaced" counts)
HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", flags=re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1", flags=re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", flags=re.MULTILINE)
HTML_LINK = re.compile(r"\b(?:href|src)=\"([^\"]+)\"")
NOTEBOOK_NAME = re.compile(r"\b\d\d[a-z]?_[a-z0-9_]+[a-z0-9]\b")


def prose(text: str) -> str:
    """The README without its generated results block."""
    return RESULTS_BLOCK.sub("", text)


def links(text: str) -> list[str]:
    """Every link target of a Markdown text, code blocks and code spans left out."""
    text = CODE_SPAN.sub("code", FENCE.sub("", text))
    return [*INLINE_LINK.findall(text), *REFERENCE_LINK.findall(text), *HTML_LINK.findall(text)]


def relative(target: str) -> bool:
    return not re.match(r"^([a-z][a-z0-9+.-]*:|//|#)", target, flags=re.IGNORECASE)


def markdown_files() -> list[Path]:
    return [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_helpers_find_links_and_hashes():
    text = ("[a](x.md) ![b](img/c.png \"t\") [web](https://e.org) [top](#part) `[not](code.md)`\n"
            "```\n[nor](fenced.md)\n```\n[ref]: refs/d.md\n<img src=\"e.png\">\n")
    assert [t for t in links(text) if relative(t)] == ["x.md", "img/c.png", "refs/d.md", "e.png"]
    found = HASH.findall("commit 6230c8e, 0999d3e5 and 1234567, the word defaced, 2406.16768")
    assert found == ["6230c8e", "0999d3e5"]
    assert prose("a\n<!-- results:begin -->\ncommit `bfbf74e49c`\n<!-- results:end -->\nb") == "a\n\nb"


def test_readme_is_at_most_200_lines():
    lines = README.read_text().count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines, more than {MAX_LINES}: move reference to docs/"


def test_readme_names_no_issue_numbers_hashes_or_rounds():
    text = README.read_text()
    assert not re.findall(r"#\d+", text), "README.md names an issue number"
    assert not re.findall(r"\bissues?\b", text, flags=re.IGNORECASE), "README.md mentions issues"
    assert not re.findall(r"\brounds?\b", text, flags=re.IGNORECASE), "README.md speaks of rounds"
    assert not HASH.findall(prose(text)), f"README.md names commit hashes: {HASH.findall(prose(text))}"


def test_readme_keeps_no_measurement_blocks():
    text = README.read_text()
    for name in ("measured", "notebook-times", "ci-time", "main-command"):
        assert f"<!-- {name}:begin -->" not in text, f"the {name} block belongs in benchmarks/README.md"
        assert f"<!-- {name}:begin -->" in (ROOT / "benchmarks" / "README.md").read_text()


def test_readme_keeps_the_two_commands_ci_runs():
    lines = README.read_text().splitlines()
    for command in ("pip install torch==2.13.0", "pip install -e . && python -m warp_utils run --workers 2",
                    'pip install -e ".[dev,browser]" && pytest'):
        assert command in lines, f"README.md lost the command line {command!r}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file(path):
    broken = []
    for target in filter(relative, links(path.read_text())):
        file = target.split("#")[0].split("?")[0]
        if not file:
            continue
        resolved = ((ROOT / file.lstrip("/")) if file.startswith("/") else (path.parent / file)).resolve()
        if not (resolved.exists() and resolved.is_relative_to(ROOT)):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links that resolve to no file of the repository: {broken}"


def test_readme_names_every_notebook_and_no_other():
    text = prose(README.read_text())
    notebooks = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    missing = [name for name in notebooks if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, f"README.md's course map does not name {missing}"
    stale = sorted(set(NOTEBOOK_NAME.findall(text)) - set(notebooks))
    assert not stale, f"README.md names notebooks that do not exist: {stale}"
