"""Corpus on disk → prepared directory: the steps shared by every corpus.

`prepare_corpus` asks the corpus module for its label rows and audio files, then decides for
each row, in a fixed order, whether it becomes an `Utterance` or a reported `Problem`:
duplicate key, missing audio, label (no agreement / unknown / outside the label set), outside
the protocol, then the audio itself (empty, unreadable, non-finite, silent). Audio files no
row refers to are reported last. Problems never stop the run, and an incomplete corpus gets
as many folds as it allows, with warnings (logged, and kept in summary.json/summary.txt);
only a root that is not the corpus, a bad option, no usable utterance or no possible fold
raise `CorpusError`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from peft_ser.audio import AudioCache, AudioError, AudioInfo, probe
from peft_ser.corpora import base
from peft_ser.corpora.base import Corpus, CorpusError, Entry, LabelSet, Problem, Protocol, Scan
from peft_ser.corpora.folds import usable_folds
from peft_ser.corpora.registry import find_root, get_corpus
from peft_ser.fileio import write_atomic
from peft_ser.manifest import (
    Fold,
    PreparedCorpus,
    Utterance,
    csv_text,
    load_prepared,
    save_prepared,
)

REPORT_FILE = "report.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
_PROBE_THREADS = 8
"""Header reads are file-system bound; a few threads hide latency on network storage."""
_PROBE_CHUNK = 64
T = TypeVar("T")
log = logging.getLogger(__name__)


def prepare_corpus(
    name: str,
    root: str | Path,
    out: str | Path | None = None,
    labels: str = "paper4",
    protocol: str | None = None,
    *,
    check_silence: bool = True,
    verbose: bool = False,
) -> PreparedCorpus:
    """Read corpus ``name`` as shipped under ``root`` into a prepared directory ``out``.

    ``out`` defaults to ``prepared/<name>``; it receives manifest.csv, folds.json, labels.json,
    report.csv, summary.json and summary.txt. ``labels`` picks a label set (``paper4``,
    ``full`` or a corpus extra), ``protocol`` a fold protocol (default: the paper's).
    ``check_silence`` decodes each file up to its first non-silent block (files stored as
    floats are always decoded to the end, to find NaN and ±inf samples). ``verbose`` shows a
    progress bar and prints the summary. A corpus too small for the protocol's folds gets as
    many as it allows, with warnings. Raises `CorpusError` when ``root`` is not the corpus,
    an option is unknown, or no usable utterance or fold is left (report.csv is still written).
    """
    corpus = get_corpus(name)
    label_set = _choose(corpus.labels.sets, labels, "label set", corpus.name)
    protocol_name = protocol or next(iter(corpus.protocols))
    chosen = _choose(corpus.protocols, protocol_name, "protocol", corpus.name)
    root = locate_root(corpus, root)
    out = Path(out) if out is not None else Path("prepared") / corpus.name
    scan = corpus.scan(root)
    utterances, problems = _select(corpus, scan, label_set, chosen, check_silence, verbose)
    problems = scan.problems + problems + _unlabelled(scan.audio, scan.entries)
    write_atomic(out / REPORT_FILE, report_text(problems))
    if not utterances:
        raise CorpusError(
            f"no usable utterance of {corpus.title} under {root} "
            f"({len(problems)} excluded; see {out / REPORT_FILE})"
        )
    try:
        plan = usable_folds(chosen.make_folds(utterances, chosen.folds))
    except CorpusError as error:
        raise CorpusError(
            f"protocol {protocol_name}: {error}; no fold can be made from the "
            f"{len(utterances)} usable utterances of {corpus.title} under {root} "
            f"({len(problems)} excluded; see {out / REPORT_FILE})"
        ) from error
    warnings = [f"protocol {protocol_name}: {warning}" for warning in plan.warnings]
    for warning in warnings:
        log.warning(warning)
    prepared = PreparedCorpus(utterances, plan.folds, list(label_set.names))
    save_prepared(out, prepared)
    summary = summarize(prepared, problems, corpus.name, labels, protocol_name, root, warnings)
    text = summary_text(summary)
    write_atomic(out / SUMMARY_JSON, json.dumps(summary, indent=1) + "\n")
    write_atomic(out / SUMMARY_TXT, text)
    if verbose:
        print(text, end="")
    return prepared


def _choose(options: Mapping[str, T], name: str, what: str, corpus: str) -> T:
    if name not in options:
        raise CorpusError(f"unknown {what} {name!r} for {corpus}; choose one of {list(options)}")
    return options[name]


def locate_root(corpus: Corpus, root: str | Path) -> Path:
    """The corpus root: ``root`` itself, or its sub-folder with the corpus's shipped name."""
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise CorpusError(f"corpus root {root} does not exist")
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} is a file, not a folder")
    found = find_root(corpus, root)
    if found is None:
        raise CorpusError(f"{root} does not look like {corpus.title}: expected {corpus.layout}")
    return found


def _select(
    corpus: Corpus,
    scan: Scan,
    label_set: LabelSet,
    protocol: Protocol,
    check_silence: bool,
    verbose: bool,
) -> tuple[list[Utterance], list[Problem]]:
    """Apply the row checks, then probe the audio of the rows that passed them."""
    problems: list[Problem] = []
    passed: list[tuple[Entry, str]] = []
    seen: dict[str, Entry] = {}
    for entry in scan.entries:
        label, problem = _check_row(corpus, entry, seen, scan.audio, label_set, protocol)
        seen.setdefault(entry.key, entry)
        if problem is not None:
            problems.append(problem)
        elif label is not None:
            passed.append((entry, label))
    infos = _probe_all([entry.path for entry, _ in passed], check_silence, verbose)
    utterances = []
    for (entry, label), info in zip(passed, infos, strict=True):
        if isinstance(info, Problem):
            problems.append(Problem(entry.key, entry.path, info.reason, info.detail))
        else:
            utterances.append(_utterance(corpus.name, entry, label, info))
    return utterances, problems


def _check_row(
    corpus: Corpus,
    entry: Entry,
    seen: dict[str, Entry],
    audio: set[str],
    label_set: LabelSet,
    protocol: Protocol,
) -> tuple[str | None, Problem | None]:
    """The row's label name, or the first problem that excludes it."""

    def problem(reason: str, detail: str) -> tuple[None, Problem]:
        return None, Problem(entry.key, entry.path, reason, detail)

    if entry.key in seen:
        return problem(base.DUPLICATE, f"listed again with label {entry.raw_label!r}; first kept")
    if entry.path not in audio:
        return problem(base.MISSING_AUDIO, "label row has no audio file at this path")
    label, reason = corpus.labels.classify(entry.raw_label, label_set)
    if label is None:
        return problem(reason, f"label {entry.raw_label!r}")
    if protocol.keep is not None and not protocol.keep(entry):
        return problem(base.OUTSIDE_PROTOCOL, protocol.description)
    return label, None


def _probe_one(path: str, check_silence: bool) -> AudioInfo | Problem:
    try:
        info = probe(path, check_silence=check_silence)
    except AudioError as error:
        return Problem("", path, base.audio_reason(error.kind), error.problem)
    if info.silent:
        return Problem("", path, base.SILENT_AUDIO, "peak below -60 dBFS throughout")
    return info


def _probe_all(
    paths: Sequence[str], check_silence: bool, verbose: bool
) -> list[AudioInfo | Problem]:
    """Probe in chunks on a few threads: per-file tasks would cost more than the reads."""
    chunks = [paths[i : i + _PROBE_CHUNK] for i in range(0, len(paths), _PROBE_CHUNK)]
    results: list[AudioInfo | Problem] = []
    with (
        ThreadPoolExecutor(_PROBE_THREADS) as pool,
        tqdm(total=len(paths), desc="reading audio", unit="file", disable=not verbose) as bar,
    ):
        for probed in pool.map(lambda chunk: [_probe_one(p, check_silence) for p in chunk], chunks):
            results += probed
            bar.update(len(probed))
    return results


def _utterance(corpus: str, entry: Entry, label: str, info: AudioInfo) -> Utterance:
    return Utterance(
        key=entry.key,
        corpus=corpus,
        speaker=entry.speaker,
        gender=entry.gender,
        path=entry.path,
        raw_label=entry.raw_label,
        label=label,
        session=entry.session,
        duration=info.duration,
        sample_rate=info.sample_rate,
        channels=info.channels,
    )


def _unlabelled(audio: Iterable[str], entries: Iterable[Entry]) -> list[Problem]:
    referenced = {entry.path for entry in entries}
    return [
        Problem(base.stem(path), path, base.UNLABELLED_AUDIO, "no label row refers to this file")
        for path in sorted(set(audio) - referenced)
    ]


def report_text(problems: Sequence[Problem]) -> str:
    """report.csv: one row per excluded item (key, path, reason, detail)."""
    rows = ((p.key, p.path, p.reason, p.detail) for p in problems)
    return csv_text(("key", "path", "reason", "detail"), rows)


def _split_summary(utterances: Sequence[Utterance], labels: Sequence[str]) -> dict[str, Any]:
    counts = Counter(u.label for u in utterances)
    return {
        "utterances": len(utterances),
        "speakers": len({u.speaker for u in utterances}),
        "hours": round(sum(u.duration for u in utterances) / 3600, 4),
        "per_label": {label: counts.get(label, 0) for label in labels},
    }


def summarize(
    prepared: PreparedCorpus,
    problems: Sequence[Problem],
    corpus: str,
    label_set: str,
    protocol: str,
    root: Path,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Counts per label, speakers and hours for the corpus and every fold split, the number
    of exclusions per reason, and what the protocol changed on an incomplete corpus."""
    by_key = {u.key: u for u in prepared.manifest}
    excluded = Counter(p.reason for p in problems)

    def split(fold: Fold, name: str) -> dict[str, Any]:
        keys = getattr(fold, name)
        return _split_summary([by_key[key] for key in keys], prepared.labels)

    return {
        "corpus": corpus,
        "root": str(root),
        "label_set": label_set,
        "labels": prepared.labels,
        "protocol": protocol,
        "total": _split_summary(prepared.manifest, prepared.labels),
        "excluded": {reason: excluded[reason] for reason in base.REASONS if excluded[reason]},
        "folds": [
            {"name": fold.name} | {name: split(fold, name) for name in ("train", "dev", "test")}
            for fold in prepared.folds
        ],
        "warnings": list(warnings),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """A short, aligned plain-text rendering of `summarize`'s result."""
    labels = summary["labels"]
    header = f"{'':16}{'utts':>7}{'spk':>5}{'hours':>8}" + "".join(f"{n[:9]:>10}" for n in labels)

    def line(name: str, part: dict[str, Any]) -> str:
        cells = "".join(f"{part['per_label'][label]:>10}" for label in labels)
        return f"{name:16}{part['utterances']:>7}{part['speakers']:>5}{part['hours']:>8.2f}{cells}"

    lines = [
        f"{summary['corpus']} ({summary['label_set']}, protocol {summary['protocol']})",
        header,
        line("all", summary["total"]),
    ]
    for fold in summary["folds"]:
        lines += [
            line(f"{fold['name']} {split}", fold[split]) for split in ("train", "dev", "test")
        ]
    excluded = summary["excluded"]
    lines.append(f"excluded: {sum(excluded.values())}")
    lines += [f"  {reason}: {count}" for reason, count in excluded.items()]
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PreprocessResult:
    """What `preprocess_corpus` did: files decoded now, files already cached, failures."""

    computed: int
    cached: int
    failed: list[Problem]


def preprocess_corpus(
    prepared_dir: str | Path,
    cache_dir: str | Path | None = None,
    sample_rate: int = 16000,
    *,
    verbose: bool = False,
) -> PreprocessResult:
    """Fill the audio cache (default ``<prepared_dir>/audio_cache``) with every manifest
    utterance decoded to mono ``sample_rate``; fresh entries are kept, changed files redone."""
    prepared_dir = Path(prepared_dir)
    cache = AudioCache(cache_dir or prepared_dir / "audio_cache", sample_rate)
    manifest = load_prepared(prepared_dir).manifest
    computed, failed = 0, []
    for utterance in tqdm(manifest, desc="preprocessing", unit="file", disable=not verbose):
        try:
            computed += cache.ensure(utterance.path)
        except AudioError as error:
            reason = base.audio_reason(error.kind)
            failed.append(Problem(utterance.key, utterance.path, reason, error.problem))
    return PreprocessResult(computed, len(manifest) - computed - len(failed), failed)
