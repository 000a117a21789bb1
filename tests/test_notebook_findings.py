"""The notebooks say what their numbers say: every finding printed in a committed notebook is
recomputed here, by the same verdict code, from the numbers printed beside it, and the words must
agree. A sentence typed into a markdown cell about the course's own numbers would escape this, so
a second test lints the markdown for outcome numbers typed by hand."""

import json
import math
import re
from pathlib import Path

import nbformat
import pytest

from warp_utils.evaluate import judges
from warp_utils.evaluate.judges import describe_comparison, hacking_verdict
from warp_utils.evaluate.results import committed_results, hacking_paragraph, one_seed_verdict

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NUMBER = r"([+-]?\d+\.\d+|nan)"
TRIPLE = NUMBER + r" \[" + NUMBER + r", " + NUMBER + r"\]"


def output_lines(name: str) -> list[str]:
    """Every printed line of a committed notebook's outputs (streams and text/plain results)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    lines = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            lines.extend("".join(text).splitlines())
    return lines


def floats(*texts) -> list[float]:
    return [math.nan if t == "nan" else float(t) for t in texts]


def comparison_kind(sentence: str) -> str:
    for kind in ("is higher than", "is lower than", "inconclusive", "cannot be measured"):
        if kind in sentence:
            return kind
    return "none"


def comparison_findings(lines):
    """(printed kind, recomputed kind) of every describe_comparison sentence."""
    found = []
    for line in lines:
        decided = re.search(r" is (higher|lower) than .*: " + TRIPLE + r"\.$", line)
        unsure = re.search(r"inconclusive about whether .*: " + NUMBER + r" \(interval \[" + NUMBER + ", " + NUMBER
                           + r"\] includes 0\)\.$", line)
        match = decided or unsure
        if match:
            mean, low, high = floats(*match.groups()[-3:])
            found.append((comparison_kind(line), comparison_kind(describe_comparison("X", "q", (mean, low, high)))))
    return found


def verdict_kind(sentence: str) -> tuple:
    kind = next((k for k in ("games the proxy", "improves on both judges", "is inconclusive", "cannot be judged")
                 if k in sentence), "none")
    return kind, "rises too" in sentence, "degenerate more often" in sentence


def hacking_findings(lines):
    """(printed kind, recomputed kind) of every hacking_verdict sentence, from its own numbers."""
    found = []
    for line in lines:
        match = re.search(r"proxy reward " + TRIPLE + r"; held-out sentiment " + TRIPLE + r"; hacked share " + TRIPLE,
                          line)
        if not match:
            continue
        values = floats(*match.groups())
        degenerate = re.search(r"degenerate share " + TRIPLE, line)
        again = hacking_verdict(tuple(values[0:3]), tuple(values[3:6]), tuple(values[6:9]),
                                degenerate_diff=tuple(floats(*degenerate.groups())) if degenerate else None)
        found.append((verdict_kind(line), verdict_kind(again)))
    return found


@pytest.mark.parametrize("name", ["02_prompts.ipynb", "05_evaluation.ipynb", "06_hyperparameters.ipynb"])
def test_every_printed_verdict_is_what_the_verdict_code_says_of_its_numbers(name):
    lines = output_lines(name)
    findings = comparison_findings(lines) + hacking_findings(lines)
    assert findings, f"{name} prints no verdict sentence"
    for printed, recomputed in findings:
        assert printed == recomputed


def test_02_says_the_sft_policy_follows_the_mood_only_when_the_gap_is_clear():
    lines = output_lines("02_prompts.ipynb")
    [(kind, _)] = comparison_findings(lines)
    follows = next(line for line in lines if line.startswith("so the SFT policy"))
    assert ("does not measurably follow" in follows) == (kind != "is higher than")


def test_05_one_seed_claims_are_graded_by_the_verdict_function():
    """A front claim prints, per pair of fronts, its envelope gap over the shared KL range; its
    margin is the smallest gap (NaN when a pair has no shared range) and its verdict is
    one_seed_verdict of that margin. Recomputed here from the printed gaps and noise."""
    lines = output_lines("05_evaluation.ipynb")
    assert not [line for line in lines if "not measurable" in line]
    typical = float(re.search(r"half-width of a mean test reward here: ±" + NUMBER, "\n".join(lines)).group(1))
    signed = r"([+-]?(?:\d+\.\d+|nan))"  # a NaN margin prints as +nan
    claim = re.compile(r"- (.*): (\w+) on this one seed \(margin " + signed + " ± " + NUMBER + r"(?:; (.*))?\)$")
    graded = [m for m in map(claim.match, lines) if m]
    fronts = [m for m in graded if m.group(5)]
    assert len(graded) == 5 and len(fronts) == 4  # 4 front claims and the endpoint claim (eta = 1)
    for match in graded:
        name, printed, margin, noise, readings = match.groups()
        margin, noise = floats(margin, noise)
        assert abs(noise - typical) <= 0.005 + 1e-9, name  # the same noise, printed to 3 and 2 decimals
        if readings:  # a front claim: one "gap G over KL [low, high]" or "no KL range shared" per pair
            pairs = readings.split("; ")
            gaps = [re.search(r": gap " + NUMBER + r" over KL \[" + NUMBER + ", " + NUMBER + r"\]$", pair)
                    for pair in pairs]
            assert all(gap or pair.startswith("no KL range shared by ") for gap, pair in zip(gaps, pairs)), name
            ranges = [floats(*gap.groups()) for gap in gaps if gap]
            assert all(low < high for _, low, high in ranges), name
            recomputed = min(gap for gap, _, _ in ranges) if len(ranges) == len(pairs) else math.nan
            assert margin == recomputed or math.isnan(margin) and math.isnan(recomputed), name
            margin = recomputed
        assert printed == one_seed_verdict(margin, noise), name


def test_05_committed_hacking_sentences_are_those_of_the_committed_results():
    lines = output_lines("05_evaluation.ipynb")
    for sentence in hacking_paragraph(committed_results()):
        assert sentence in lines


def test_05_word_shift_sentence_names_the_praise_words_among_the_risers():
    line = next(line for line in output_lines("05_evaluation.ipynb") if line.startswith("The 10 words RL made"))
    risers = line.split(": ", 1)[1].split(". ")[0].split(", ")
    praise = [word for word in risers if word in judges.PRAISE_WORDS]
    assert ("None of them is a praise word" in line) == (not praise)
    assert all(word in line.split("Praise words among them:")[-1] for word in praise)


def test_06_best_value_is_the_largest_envelope_mean_over_the_shared_range():
    """Section 5 prints, per study, the KL range all its fronts share and each value's envelope
    mean there; the value it names best must be the one with the largest printed mean."""
    lines = output_lines("06_hyperparameters.ipynb")
    assert not [line for line in lines if "share no KL range" in line]  # this notebook's fronts all overlap
    reading = re.compile(r"(\w+): mean reward over KL " + NUMBER + " to " + NUMBER + r": (.*); best (\w+) = ([\d.e+-]+)\.$")
    studies = {}
    for match in filter(None, map(reading.match, lines)):
        study, low, high, means, named, best = match.groups()
        assert study not in studies and named == study, match.group(0)
        low, high = floats(low, high)
        assert 0 < low < high, match.group(0)
        values = {float(key): float(value) for value, key in re.findall(NUMBER + r" \(" + study + r"=([\d.e+-]+)\)", means)}
        assert len(values) >= 2 and not any(math.isnan(v) for v in values.values()), match.group(0)
        studies[study] = (values, float(best))
    assert set(studies) == {"mu", "lr", "M"}
    for study, (values, best) in studies.items():
        assert best == max(values, key=values.get), study


def test_06_no_line_says_a_comparison_cannot_be_made():
    lines = output_lines("06_hyperparameters.ipynb")
    assert not [line for line in lines if "not comparable" in line or "not measurable" in line]


def test_06_committed_verdicts_are_those_of_the_committed_results():
    """Section 6 prints one line per claim of the proxy and held-out sentiment families; its
    verdict, seeds, mean and KL range must be those of docs/results/results.json, the verdict
    graded again here (one-sided tests, Holm within each family)."""
    from warp_utils.evaluate.stats import grade_family

    claims = committed_results()["claims"]
    expected = {}
    for family in ("proxy", "held-out sentiment"):
        members = [c for c in claims if c["family"] == family]
        for claim, grade in zip(members, grade_family([(c["expected_sign"], c["per_seed"]) for c in members])):
            expected[(claim["name"], family)] = (grade.verdict, claim)
    line = re.compile(r"- (.*) \((proxy|held-out sentiment)\): (\w+) across (\d+) seeds \(mean " + NUMBER + r", (.*)\)$")
    lines = output_lines("06_hyperparameters.ipynb")
    printed = {(m.group(1), m.group(2)): m.groups()[2:] for m in map(line.match, lines) if m}
    assert set(printed) == set(expected)
    for key, (verdict, seeds, mean, rest) in printed.items():
        wanted, claim = expected[key]
        assert (verdict, int(seeds)) == (wanted, claim["n_seeds"]), key
        assert abs(float(mean) - claim["mean"]) <= 0.0005 + 1e-9, key
        where = re.search(r"over KL " + NUMBER + " to " + NUMBER + ";", rest)
        if claim.get("k_low") is None:
            assert where is None, key
        else:
            assert where and all(abs(a - b) <= 0.005 + 1e-9 for a, b in
                                 zip(floats(*where.groups()), (claim["k_low"], claim["k_high"]))), key
    proxy_only = [name for (name, family), (verdict, _) in expected.items() if family == "proxy" and verdict == "supported"
                  and expected.get((name, "held-out sentiment"), ("",))[0] != "supported"]
    assert f"Supported on the proxy but not on the held-out judge: {'; '.join(proxy_only) or 'none'}." in lines


# ----------------------------------------------------------------------------- typed numbers

# An outcome number typed into prose: a decimal, a percentage or a time (e.g. "0.96 -> 2.62",
# "about 30%", "~130 s"), outside $math$ and `code`. Settings and definitions are written in math
# or code; what a run measured is printed by a cell.
TYPED = re.compile(r"(?<![\w.$])(~?\d+\.\d+|(?!(?:5|80|90|95|99)%)\d+(\.\d+)?\s?%|~?\d+\s?(s|min)\b)")
# 5, 80, 90, 95 and 99% are levels the course declares (a tolerance, power, a percentile, an interval)


def prose(markdown: str) -> str:
    """Markdown without math ($...$, $$...$$), code (`...`, fenced) and link targets."""
    text = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"arXiv:\S+", " ", text)  # an identifier, not a number
    return re.sub(r"\]\([^)]*\)", "]", text)


def typed_numbers(path: Path) -> list[str]:
    notebook = nbformat.read(path, as_version=4)
    hits = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in prose(cell.source).splitlines():
                if TYPED.search(line) and "**Time**" not in line and "min to read" not in line and "read and do" not in line:
                    hits.append(line.strip())
    return hits


def test_the_lint_catches_typed_outcome_numbers():
    cell = nbformat.v4.new_markdown_cell("LERP loses about 30% of the norm; 06 takes ~130 s; r went 0.96 -> 2.62; "
                                         "$\\eta = 0.5$ and `lr=1e-4` are settings.")
    text = prose(cell.source)
    assert [m.group(0) for m in TYPED.finditer(text)] == ["30%", "~130 s", "0.96", "2.62"]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_no_outcome_number_is_typed_into_a_notebooks_prose(path):
    assert typed_numbers(path) == []


def test_committed_results_are_json():
    assert json.loads(json.dumps(committed_results()))["claims"]


# ----------------------------------------------------------------------------- engineering out of outputs

PLUMBING = re.compile(r"rebuilding |linked from|fork|waiting for another process|resuming iter_|/work/|/home/|/root/|/tmp/")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_no_output_shows_the_cache_at_work_or_a_machines_path(path):
    assert [line for line in output_lines(path.name) if PLUMBING.search(line)] == []
