"""Check that every measured number in the documents is in a committed JSON it cites.

README.md, benchmarks/RESULTS.md and docs/REPORT.md quote measurements. Each section
(a heading and what follows it, with its parent sections) must name the JSON its
numbers come from (``benchmarks/cells.json``, ``[imdb.json](imdb.json)``, a command's
``--out``), and every measured number in it must be a value of one of those JSONs after
the rounding shown: 0.355 matches 0.35512, 89.6 % matches 0.8961, 1.9x matches 1.93,
30 ms matches 0.0297 (seconds), 2.59M matches 2,592,866, 3 min matches 173.8 (seconds).

What counts as measured: every number in a table's body; in prose, numbers with a
decimal point or a unit (%, x, s, ms, min, MB, GFLOP/s, k, M). Skipped: code (fenced
blocks with a language, inline code), headings, link targets, issue/section/commit
numbers, versions, dates, ``name=value`` settings, whole numbers in prose without a unit
(counts, settings, years: "25 epochs", "hidden 128", "Ba et al. 2016"), learning rates written
like 1e-3, decimals that follow a setting's name ("dropout 0.3"), and the phrases in
``ALLOWED`` (each with its reason: targets, cited papers, arithmetic facts).

Timings must say how busy the machine was: a section that cites a JSON with timings
must say "idle", "load" (as in "load not recorded" or a load average); a JSON whose
load record shows other work must be described as "under load".

    python scripts/check_claims.py            # exit 1 and one line per unbacked number
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "benchmarks/RESULTS.md", "docs/REPORT.md")
EVIDENCE = ("benchmarks", "docs")  # where the committed JSONs live

# Phrases whose numbers are not measurements of ours. (document, phrase, reason); the
# phrase may wrap across lines. An entry whose phrase is gone is an error, so the list
# cannot outlive the text.
ALLOWED: list[tuple[str, str, str]] = [
    ("benchmarks/RESULTS.md", "**at least 91.5 %** for the best", "issue 17's target"),
    ("benchmarks/RESULTS.md", "at most 0.350 at horizon 96", "issue 18's target"),
    ("benchmarks/RESULTS.md", "best pipeline within 60 minutes", "issue 17's target"),
    ("benchmarks/RESULTS.md", "labels-only config within 30 minutes", "issue 17's target"),
    ("benchmarks/RESULTS.md", "at most 1.3x the hand-written", "issue 16's target"),
    ("README.md", "DLinear's paper: 0.375", "published result, cited"),
    ("README.md", "SegRNN's paper: 0.351", "published result, cited"),
    ("README.md", "caps it near 62.5 %", "arithmetic: 1/2 + 1/(2K) with K = 4"),
    ("README.md", "a seeded 20 % of the training reviews", "a setting (data.val_fraction)"),
    (
        "benchmarks/RESULTS.md",
        "Predicting the mean scores MSE 0.167",
        "arithmetic: the variance of the sum of two U(0, 1) numbers, 1/6",
    ),
    ("benchmarks/RESULTS.md", "mean predictor's 0.167", "arithmetic, as above"),
    (
        "benchmarks/RESULTS.md",
        "every config uses a seeded 20 % of it",
        "a setting (data.val_fraction)",
    ),
    ("benchmarks/RESULTS.md", "the issue's 83.4 % in about 12 minutes", "quoted from issue 5"),
    ("benchmarks/RESULTS.md", "at least 88 % validation accuracy within 15 minutes", "target"),
    ("benchmarks/RESULTS.md", "at least 95.5 % dev accuracy within 15 minutes", "target"),
    ("benchmarks/RESULTS.md", "the 95.5 % target is not", "target"),
    ("benchmarks/RESULTS.md", "within 0.3 points of the imdb task's", "target"),
    ("benchmarks/RESULTS.md", "at least 91 % within 30 minutes", "target"),
    ("benchmarks/RESULTS.md", "at most 0.370 within 15 minutes", "target"),
    ("benchmarks/RESULTS.md", "one layer, H=256, at most 2.0x", "target"),
    ("benchmarks/RESULTS.md", "one layer: at most 1.0x", "target"),
    ("benchmarks/RESULTS.md", "same shape: at most 1.2x", "target"),
    ("benchmarks/RESULTS.md", "no configuration slower than 1.5x on CPU", "target"),
    ("benchmarks/RESULTS.md", "within 1.5x of cuDNN on a GPU", "target"),
    ("benchmarks/RESULTS.md", "(bound: 30 s)", "target"),
    ("benchmarks/RESULTS.md", "1.00x is parity", "definition"),
    ("benchmarks/RESULTS.md", "below 1.00x we are faster", "definition"),
    ("benchmarks/RESULTS.md", "2,880/2,880 target rows", "the ETT protocol's split sizes"),
    (
        "benchmarks/RESULTS.md",
        "Published references, ETTh1, M, horizon 96, test MSE: repeat 1.295, DLinear 0.375\n"
        "(input 336), PatchTST 0.370, SegRNN 0.351 (input 720), plain GRU 1.135",
        "published results, cited (DLinear and SegRNN papers)",
    ),
    ("benchmarks/RESULTS.md", "paper 0.351", "published result, cited"),
    ("benchmarks/RESULTS.md", "(the published\nplain GRU: 1.135)", "published result, cited"),
]

NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\.\d+|\d+)(?:e[+-]?\d+)?"
# A unit right after a number (k and M only when attached: 249k, 2.59M).
UNIT = r"(?:\s?(?:%|points?\b|ms\b|s\b|seconds?\b|sec\b|min\b|minutes?\b|hours?\b|MiB\b" \
    r"|MB\b|GiB\b|GB\b|GFLOP/s)|(?:x|×|k|M)(?![A-Za-z]))"  # fmt: skip
CLAIM = re.compile(rf"(?<![\w.]){NUMBER}(?:{UNIT})?(?![\w])")
RANGE = re.compile(rf"\s*(?:-|–|to)\s*({NUMBER})({UNIT})")
MIN_SEC = re.compile(r"(?<![\w.])(\d+) min (\d+) s\b")
# Values a JSON holds in other units than the text shows: seconds as ms or minutes, a
# fraction as a percentage.
SCALES = {
    None: (1.0,),
    "%": (1.0, 100.0),
    "point": (100.0,),
    "x": (1.0,),
    "×": (1.0,),
    "ms": (1000.0, 1.0),
    "s": (1.0,),
    "sec": (1.0,),
    "second": (1.0,),
    "min": (1 / 60, 1.0),
    "minute": (1 / 60, 1.0),
    "hour": (1 / 3600, 1.0),
}
TIME_UNITS = {"x", "×", "ms", "s", "sec", "second", "seconds", "min", "minute", "minutes"}
TIME_UNITS |= {"hour", "hours"}
# Text that holds numbers which are not measurements, each with why.
SKIPPED = [
    re.compile(r"`[^`]*`"),  # inline code: config values, commands, file names
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"\b(?:issues?|sections?|commits?)\s+[\w.]+(?:(?:,\s*|\s+(?:and|to)\s+)\w+)*"),
    re.compile(r"\b(?:Python|torch|CUDA|glibc)\s+\d[\w.+]*"),  # versions
    re.compile(r"\d{4}-\d{2}-\d{2}"),  # dates
    re.compile(r"[\w)]+\s?=\s?[-+]?[\d.]+(?:e[-+]?\d+)?"),  # settings: T=256, K = 4
    re.compile(r"(?<![\w.,])\d+e-\d+"),  # learning rates and tolerances: 1e-3, 3e-4
    # Decimals after a setting's name: "dropout 0.3", "clip 1.0", "weight decay 0.01".
    re.compile(
        r"\b(?:clip|dropout|decay|forcing|lr|Adam|AdamW|patience|weight[-_ ]drop"
        r"|input[-_ ]dropout|word[-_ ]dropout|temperature)\s*[:=]?\s*[\d.]+"
    ),
]
JSON_REF = re.compile(r"[\w./-]+\.json")
TIMING_KEY = re.compile(r"seconds|_s$|^times?_|median_s")


@dataclass
class Claim:
    """A number in a document, with the values that its rounding allows."""

    line: int
    text: str
    value: float
    tolerance: float
    scales: tuple[float, ...]
    timing: bool = False  # a time or a speed ratio: its section must say the load


@dataclass
class Section:
    """A heading's text up to the next heading: its claims and the JSONs it names."""

    title: str
    level: int
    parent: Section | None
    claims: list[Claim] = field(default_factory=list)
    refs: set[str] = field(default_factory=set)
    text: list[str] = field(default_factory=list)

    def scope(self) -> set[str]:
        """The JSONs this section and the sections above it name."""
        names = set(self.refs)
        if self.parent is not None:
            names |= self.parent.scope()
        return names


def parse_number(text: str) -> tuple[float, float]:
    """The value of a number as written and half its last digit (the rounding shown)."""
    mantissa, _, exponent = text.replace(",", "").lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    power = int(exponent) if exponent else 0
    return float(mantissa) * 10.0**power, 0.5 * 10.0 ** (power - decimals)


def _blank(pattern: re.Pattern[str], text: str) -> str:
    """The text with every match blanked out, its newlines (and so line numbers) kept."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def claims_in(
    fragment: str, line: int, numeric_cell: bool, header: tuple[float, ...] = ()
) -> list[Claim]:
    """The measured numbers of a prose paragraph (first line ``line``) or a table cell
    (``header``: the scales its column's unit allows), skipped text removed."""
    found: list[Claim] = []

    def at(offset: int) -> int:
        return line + fragment.count("\n", 0, offset)

    for m in MIN_SEC.finditer(fragment):  # "10 min 16 s" is 616 seconds
        seconds = int(m[1]) * 60 + int(m[2])
        found.append(Claim(at(m.start()), m.group(0), seconds, 0.5, (1.0,), timing=True))
    fragment = _blank(MIN_SEC, fragment)
    for pattern in SKIPPED:
        fragment = _blank(pattern, fragment)
    for m in CLAIM.finditer(fragment):
        raw = m.group(0)
        number = re.match(NUMBER, raw)
        assert number is not None
        unit = raw[number.end() :].strip() or None
        if unit is None:  # a range shares its unit: "1.2-8.5x", "36 to 39 %"
            partner = RANGE.match(fragment, m.end())
            unit = partner.group(2).strip() if partner else None
        decimal = "." in number.group(0) or "e" in number.group(0).lower()
        if not (numeric_cell or decimal or unit):
            continue  # a count or a setting in prose: "25 epochs", "hidden 128"
        value, tolerance = parse_number(number.group(0))
        if unit in ("k", "M"):
            factor = 1e3 if unit == "k" else 1e6
            value, tolerance, unit = value * factor, tolerance * factor, None
        scales = tuple(dict.fromkeys(_scales(unit) + header)) if header else _scales(unit)
        timing = unit in TIME_UNITS or bool(header and header != SCALES["%"])
        found.append(Claim(at(m.start()), raw.strip(), value, tolerance, scales, timing))
    return found


def _scales(unit: str | None) -> tuple[float, ...]:
    """The factors from a JSON's value to a number shown with ``unit``."""
    if unit is None:
        return SCALES[None]
    key = unit if unit in ("s", "ms") else unit.rstrip("s")
    return SCALES.get(key, (1.0,))


def _header_scales(cell: str) -> tuple[float, ...]:
    """A table column's unit, from its header: "(ms)", "train s", "sMAPE %"."""
    for unit, pattern in (
        ("ms", r"\bms\b"),
        ("%", r"%"),
        ("s", r"\bs\b|\(s\)|seconds"),
        ("min", r"\bmin\b|minutes"),
    ):
        if re.search(pattern, cell):
            return _scales(unit)
    return ()


def _numeric(cell: str) -> bool:
    """A table cell of numbers (every number in it is a measurement), not a label."""
    words = re.sub(rf"{NUMBER}|{UNIT}|epoch|step|mean|never|[-*/,.()~+\s|]", "", cell)
    return bool(re.search(r"\d", cell)) and not re.search(r"[A-Za-z]", words)


def _blank_allowed(text: str, document: str, problems: list[str]) -> str:
    """The document with the digits of its allowed phrases replaced, lines kept."""
    for doc, phrase, _reason in ALLOWED:
        if doc != document:
            continue
        pattern = r"\s+".join(re.escape(word) for word in phrase.split())
        match = re.search(pattern, text)
        if match is None:
            problems.append(f"{document}: allowed phrase not found (stale entry): {phrase!r}")
            continue
        span = re.sub(r"\d", "#", match.group(0))
        text = text[: match.start()] + span + text[match.end() :]
    return text


def sections(text: str) -> list[Section]:
    """Split a markdown document into sections and collect each one's claims."""
    root = Section("(top)", 0, None)
    found, current = [root], root
    lines = text.splitlines()
    fence: str | None = None
    paragraph: list[str] = []
    start = 0
    header: list[tuple[float, ...]] = []

    def flush() -> None:
        if paragraph:
            current.claims.extend(claims_in("\n".join(paragraph), start, False))
            paragraph.clear()

    for index, line in enumerate(lines):
        number = index + 1
        stripped = line.strip()
        current.refs.update(JSON_REF.findall(line))  # commands in code name their JSON too
        current.text.append(line)
        if stripped.startswith("```"):
            flush()
            fence = None if fence is not None else stripped[3:].strip()
            continue
        if fence:  # code with a language: commands and configs
            continue
        heading = re.match(r"(#{1,6})\s", line)
        if heading and fence is None:
            flush()
            level = len(heading.group(1))
            parent = current
            while parent.level >= level:
                assert parent.parent is not None
                parent = parent.parent
            current = Section(stripped, level, parent)
            current.refs.update(JSON_REF.findall(line))
            current.text.append(line)
            found.append(current)
            continue
        if stripped.startswith("|"):
            flush()
            cells = stripped.strip("|").split("|")
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            if re.fullmatch(r"\|[\s:|-]+\|?", following):  # the header row
                header = [_header_scales(cell) for cell in cells]
                continue
            if re.fullmatch(r"\|[\s:|-]+\|?", stripped):
                continue
            for column, cell in enumerate(cells):
                unit = header[column] if column < len(header) else ()
                current.claims += claims_in(cell, number, _numeric(cell), unit)
            continue
        if not stripped:
            flush()
            continue
        if not paragraph:
            start = number
        paragraph.append(line)
    flush()
    return found


def json_values(value: Any, out: list[float]) -> list[float]:
    """Every number a JSON holds (absolute values: the text drops signs it states)."""
    if isinstance(value, bool):
        return out
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            out.append(abs(float(value)))
    elif isinstance(value, dict):
        for item in value.values():
            json_values(item, out)
    elif isinstance(value, list):
        for item in value:
            json_values(item, out)
    return out


def backed(claim: Claim, values: list[float]) -> bool:
    """Whether some value, in one of the claim's units, rounds to the number shown."""
    slack = 1e-9 * max(1.0, claim.value)  # binary floats at a rounding boundary
    low, high = claim.value - claim.tolerance - slack, claim.value + claim.tolerance + slack
    for scale in claim.scales:
        i = bisect.bisect_left(values, low / scale)
        if i < len(values) and values[i] <= high / scale:
            return True
    return False


def _resolve(ref: str, document: Path, root: Path) -> Path | None:
    """A JSON name as a document writes it, as a committed evidence file, if it is one."""
    for base in (document.parent, root):
        path = (base / ref).resolve()
        inside = any(path.is_relative_to((root / d).resolve()) for d in EVIDENCE)
        if inside and path.is_file():
            return path
    return None


def _has_timings(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            (TIMING_KEY.search(k) and k != "interval_s") or _has_timings(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_timings(v) for v in value)
    return False


def _loaded(value: Any) -> bool:
    """Whether a JSON's load records show other work sharing the cores."""
    if isinstance(value, dict):
        if value.get("idle") is False and "cores" in value:
            return True
        return any(_loaded(v) for v in value.values())
    if isinstance(value, list):
        return any(_loaded(v) for v in value)
    return False


def check_document(document: Path, root: Path, text: str | None = None) -> list[str]:
    """One line per problem: an unbacked number, a section without a JSON, a timing
    without its load."""
    name = document.relative_to(root).as_posix()
    problems: list[str] = []
    text = _blank_allowed(document.read_text() if text is None else text, name, problems)
    cache: dict[Path, Any] = {}
    for section in sections(text):
        paths = sorted(
            {p for ref in section.scope() if (p := _resolve(ref, document, root)) is not None}
        )
        for path in paths:
            if path not in cache:
                cache[path] = json.loads(path.read_text())
        values = sorted(v for p in paths for v in json_values(cache[p], []))
        cited = ", ".join(p.relative_to(root).as_posix() for p in paths) or "no JSON"
        for claim in section.claims:
            if not backed(claim, values):
                problems.append(
                    f"{name}:{claim.line}: {claim.text!r} is in no JSON this section "
                    f"cites ({cited}) [{section.title}]"
                )
        body = "\n".join(section.text)
        own = [p for ref in section.refs if (p := _resolve(ref, document, root)) is not None]
        timed = any(claim.timing for claim in section.claims)
        says_load = re.search(r"\bidle\b|\bload\b", body, re.I)
        if timed and any(_has_timings(cache[p]) for p in own) and not says_load:
            problems.append(
                f"{name}: section {section.title!r} cites timings but says nothing of the "
                "machine's load (idle, under load, or load not recorded)"
            )
        if any(_loaded(cache[p]) for p in own) and "under load" not in body:
            problems.append(
                f"{name}: section {section.title!r} cites timings taken under load "
                "(its JSON's load record) but does not say 'under load'"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("documents", nargs="*", help=f"default: {', '.join(DOCUMENTS)}")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    documents = [Path(d).resolve() for d in args.documents] or [root / d for d in DOCUMENTS]
    problems = [p for d in documents if d.is_file() for p in check_document(d, root)]
    for problem in problems:
        print(problem)
    count = sum(len(s.claims) for d in documents if d.is_file() for s in sections(d.read_text()))
    print(f"{count} numbers checked, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
