"""Corpus on disk → prepared directory: the steps shared by every corpus.

`prepare_corpus` asks the corpus module for its label rows and audio files (user tables and
folders build the same `Source` in `peft_ser.corpora.own`), then decides for each row, in a
fixed order, whether it becomes an `Utterance` or a reported `Problem`: malformed or empty
label, duplicate key, missing audio, label (no agreement / unknown / outside the label set),
outside the protocol, then the audio itself (empty, unreadable, non-finite, silent), the
segment (outside the file, too short) and the class (fewer usable utterances than asked
for). Audio files no row refers to are reported last. Problems never stop the run, and an
incomplete corpus gets as many folds as it allows, with warnings (logged, and kept in
summary.json/summary.txt); only a root that is not the corpus, a bad option, no usable
utterance, fewer than two classes or no possible fold raise `CorpusError`.

Every prepared corpus gets a leakage check: the speakers each fold's train, dev and test
splits share, in summary.json/summary.txt, and as `PreparedCorpus.speaker_leakage` (in
folds.json) when any are shared or the protocol does not keep speakers apart.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from peft_ser.corpora import base
from peft_ser.corpora.base import (
    Corpus,
    CorpusError,
    Entry,
    FoldPlan,
    LabelSet,
    Problem,
    Protocol,
    Scan,
    label_map,
)
from peft_ser.corpora.folds import shared_speakers, speaker_leakage, usable_folds
from peft_ser.corpora.output import check_out, disk_errors, failure_report, replacing
from peft_ser.corpora.registry import find_root, get_corpus
from peft_ser.corpora.summary import (
    REPORT_FILE,
    SUMMARY_JSON,
    SUMMARY_TXT,
    report_text,
    summarize,
    summary_text,
)
from peft_ser.corpora.targets import (
    check_targets,
    check_votes,
    is_rated,
    label_names,
    require_votes,
    unmapped_label,
    uses_labels,
)
from peft_ser.corpora.votes import kept_for_votes, with_votes
from peft_ser.data.audio import AudioError, AudioInfo, probe
from peft_ser.data.manifest import ATTRIBUTES, PreparedCorpus, Utterance, save_prepared
from peft_ser.data.vote_columns import VOTES_ONLY
from peft_ser.utils.errors import suggest
from peft_ser.utils.fileio import write_atomic
from peft_ser.utils.progress import progress_bar

MIN_DURATION = 0.1
"""Seconds; shorter clips or segments are excluded as too short (no emotion to hear in them,
and too few samples for some backbones' convolution front ends)."""
_SEGMENT_SLACK = 1e-3
"""Seconds a segment may end past its file (rounding in the tools that write such tables)."""
_PROBE_THREADS = 8
"""Header reads are file-system bound; a few threads hide latency on network storage."""
_PROBE_CHUNK = 64
T = TypeVar("T")
log = logging.getLogger(__name__)

Classify = Callable[[str], tuple[str | None, str]]
"""``classify(raw label)``: ``(label name, "")``, or ``(None, exclusion reason)``."""


@dataclass(frozen=True)
class Checks:
    """How strict preparation is about each utterance, whatever the corpus."""

    check_silence: bool = True
    min_duration: float = MIN_DURATION
    min_per_class: int = 0
    """Classes with fewer usable utterances are left out (``rare_label``); 0 keeps every
    class of the label set, even an empty one, so class ids agree across corpora."""

    def __post_init__(self) -> None:
        check_min_duration(self.min_duration)
        if self.min_per_class < 0:
            raise CorpusError(f"--min-per-class {self.min_per_class} must be 0 or more")


def check_min_duration(seconds: float) -> None:
    """A `CorpusError` unless ``seconds`` is a finite duration of 0 or more: NaN would keep
    every clip (no comparison is true) and infinity none."""
    if not math.isfinite(seconds) or seconds < 0:
        raise CorpusError(
            f"--min-duration {seconds}: give a finite number of seconds, 0 or more "
            f"(default {MIN_DURATION})"
        )


@dataclass(frozen=True)
class Source:
    """Everything one preparation reads: the rows and files found, how a raw label maps into
    the label set, and the fold protocol."""

    name: str
    title: str
    root: Path
    scan: Scan
    classify: Classify
    label_set: LabelSet
    label_set_name: str
    protocol_name: str
    protocol: Protocol
    targets: str = "categorical"
    """One of `peft_ser.data.manifest.TARGETS`: see `peft_ser.corpora.targets`."""
    attribute_scale: str = ""
    rated: tuple[str, ...] = ATTRIBUTES
    """The attributes the corpus's rows may carry (a table: those it has columns for)."""
    notes: tuple[str, ...] = ()
    """Warnings about how the rows were read (label spellings merged, files reached twice,
    vote lines that count no vote), logged and kept in the summary with the others."""
    votes: str = ""
    """Where the rows' annotator votes come from, in words (for the error when none has)."""

    @property
    def attributes(self) -> tuple[str, ...]:
        return check_targets(self.targets, self.title, self.attribute_scale, self.rated)


def prepare_corpus(
    name: str,
    root: str | Path,
    out: str | Path | None = None,
    labels: str = "paper4",
    protocol: str | None = None,
    *,
    check_silence: bool = True,
    min_duration: float = MIN_DURATION,
    min_per_class: int = 0,
    targets: str = "categorical",
    verbose: bool = False,
) -> PreparedCorpus:
    """Read corpus ``name`` as shipped under ``root`` into a prepared directory ``out``.

    ``out`` defaults to ``prepared/<name>``; it receives manifest.csv, folds.json, labels.json,
    report.csv, summary.json and summary.txt. ``labels`` picks a label set (``paper4``,
    ``full`` or a corpus extra) or maps the corpus's codes itself (``neu=Neutral,hap+exc=Happy``,
    see `label_map`); ``protocol`` a fold protocol (default: the paper's). ``check_silence``
    decodes each file up to its first non-silent block (files stored as floats are always
    decoded to the end, to find NaN and ±inf samples); clips shorter than ``min_duration``
    seconds and classes with fewer than ``min_per_class`` usable utterances are excluded.
    ``targets`` (``categorical``, ``attributes``, ``both``, ``distribution``) says what the
    corpus is prepared to train (see `peft_ser.corpora.targets`).
    ``verbose`` shows progress bars and prints the summary. A corpus too small for the
    protocol's folds gets as many as it allows, with warnings. Raises `CorpusError` when
    ``root`` is not the corpus, an option is unknown, or no usable utterance or fold is left
    (report.csv is still written).
    """
    checks = Checks(check_silence, min_duration, min_per_class)
    corpus = get_corpus(name)
    label_set = _corpus_label_set(corpus, labels)
    protocol_name = protocol or next(iter(corpus.protocols))
    chosen = _choose(corpus.protocols, protocol_name, "protocol", corpus.name)
    check_targets(targets, corpus.title, corpus.attribute_scale)
    check_votes(targets, corpus.title, corpus.votes)
    root = locate_root(corpus, root)
    out = check_out(out if out is not None else Path("prepared") / corpus.name)
    scan = corpus.scan(root)
    if corpus.materialize is not None:
        scan = corpus.materialize(scan, out, verbose)

    def classify(raw: str) -> tuple[str | None, str]:
        return corpus.labels.classify(raw, label_set)

    source = Source(
        corpus.name, corpus.title, root, scan, classify, label_set, labels, protocol_name, chosen,
        targets, corpus.attribute_scale, notes=tuple(scan.notes), votes=corpus.votes,
    )  # fmt: skip
    return prepare_source(source, out, checks, verbose=verbose)


def prepare_source(
    source: Source, out: str | Path, checks: Checks, *, verbose: bool = False
) -> PreparedCorpus:
    """Check every row of ``source``, make the folds and write the prepared directory ``out``
    whole (`peft_ser.corpora.output.replacing`): an earlier one there is replaced only once
    the new one is complete. When no fold can be made, report.csv still goes to
    `failure_report` and an earlier prepared folder is kept as it was."""
    out = check_out(out)
    scan = source.scan
    require_votes(source.targets, scan.entries, f"{source.title} under {source.root}", source.votes)
    utterances, problems = _select(source, checks, verbose)
    labels, utterances, rare, class_warnings = _keep_classes(
        label_names(source.label_set.names, utterances), utterances, checks.min_per_class
    )
    classes = [name for name in labels if name in source.label_set.names]
    utterances, unvoted = with_votes(utterances, source.label_set.codes.get, classes)
    problems = scan.problems + problems + rare + unvoted + _unlabelled(scan.audio, scan.entries)
    report = report_text(problems)
    plan = _plan_folds(source, utterances, labels, problems, out, report)
    speaker_of = {u.key: u.speaker for u in utterances}
    shared = {fold.name: shared_speakers(fold, speaker_of) for fold in plan.folds}
    leakage = speaker_leakage(shared, source.protocol_name, source.protocol.speaker_independent)
    warnings = list(source.notes)
    warnings += [f"protocol {source.protocol_name}: {warning}" for warning in plan.warnings]
    warnings += class_warnings + ([leakage] if leakage else [])
    scale = source.attribute_scale if source.attributes else ""
    prepared = PreparedCorpus(
        utterances, plan.folds, labels, leakage, source.targets, source.attributes, scale, out
    )
    summary = summarize(prepared, problems, source, shared, warnings)
    text = summary_text(summary)
    with replacing(out) as staging:
        write_atomic(staging / REPORT_FILE, report)
        save_prepared(staging, prepared)
        write_atomic(staging / SUMMARY_JSON, json.dumps(summary, indent=1) + "\n")
        write_atomic(staging / SUMMARY_TXT, text)
    for warning in warnings:
        log.warning(warning)
    if verbose:
        print(text, end="")
    return prepared


def _plan_folds(
    source: Source,
    utterances: Sequence[Utterance],
    labels: Sequence[str],
    problems: Sequence[Problem],
    out: Path,
    report: str,
) -> FoldPlan:
    """The protocol's usable folds; when there are none, `CorpusError` naming where the
    utterances came from and where the ``report`` of the ``problems`` went."""
    report_path = failure_report(out)
    where = f"{source.title} under {source.root} ({len(problems)} excluded; see {report_path})"
    try:
        return _usable_folds(source, utterances, labels, where)
    except CorpusError:
        with disk_errors(report_path, "write the report"):
            write_atomic(report_path, report)
        raise


def _usable_folds(
    source: Source, utterances: Sequence[Utterance], labels: Sequence[str], where: str
) -> FoldPlan:
    """The protocol's usable folds; `CorpusError` (naming ``where`` the utterances came
    from) when there is no utterance, fewer than two classes, or no possible fold."""
    if not utterances:
        raise CorpusError(f"no usable utterance of {where}")
    usable = f"the {len(utterances)} usable utterances of {where}"
    if len(labels) < 2 and uses_labels(source.targets):
        names = ", ".join(labels)
        raise CorpusError(f"only {len(labels)} class ({names}) in {usable}: a classifier needs 2")
    try:
        return usable_folds(source.protocol.make_folds(utterances, source.protocol.folds))
    except CorpusError as error:
        raise CorpusError(
            f"protocol {source.protocol_name}: {error}; no fold can be made from {usable}"
        ) from error


def _choose(options: Mapping[str, T], name: str, what: str, corpus: str) -> T:
    if name not in options:
        raise CorpusError(f"unknown {what} {name!r} for {corpus}; choose one of {list(options)}")
    return options[name]


def _corpus_label_set(corpus: Corpus, labels: str) -> LabelSet:
    """A named label set of the corpus, or a mapping of its codes (``neu=Neutral,...``)."""
    sets = corpus.labels.sets
    if labels in sets or not any(mark in labels for mark in "=,+"):
        return _choose(sets, labels, "label set", corpus.name)
    label_set = label_map(labels)
    codes = corpus.labels.full.keys() | corpus.labels.other
    for code in label_set.codes:
        if code not in codes:
            raise CorpusError(
                f"--labels: {code!r} is not a {corpus.title} label code{suggest(code, codes)}; "
                f"its codes are {', '.join(sorted(codes))}"
            )
    return label_set


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


def _select(source: Source, checks: Checks, verbose: bool) -> tuple[list[Utterance], list[Problem]]:
    """Apply the row checks, then probe the audio of the rows that passed them (each file
    once, however many segments it holds) and check each row's audio and segment."""
    problems: list[Problem] = []
    passed: list[tuple[Entry, str]] = []
    seen: set[str] = set()
    for entry in source.scan.entries:
        label, problem = _check_row(source, entry, seen)
        seen.add(entry.key)
        if problem is not None:
            problems.append(problem)
        elif label is not None:
            passed.append((entry, label))
    paths = list(dict.fromkeys(entry.path for entry, _ in passed))
    infos = dict(zip(paths, _probe_all(paths, checks.check_silence, verbose), strict=True))
    utterances = []
    for entry, label in passed:
        info = infos[entry.path]
        measured = info if isinstance(info, Problem) else _measure(entry, info, checks)
        if isinstance(measured, Problem):
            problems.append(Problem(entry.key, entry.path, measured.reason, measured.detail))
        else:
            utterances.append(_utterance(source.name, entry, label, measured))
    return utterances, problems


def _check_row(source: Source, entry: Entry, seen: set[str]) -> tuple[str | None, Problem | None]:
    """The row's label name, or the first problem that excludes it."""

    def problem(reason: str, detail: str) -> tuple[None, Problem]:
        return None, Problem(entry.key, entry.path, reason, detail)

    if entry.key in seen:
        return problem(base.DUPLICATE, f"listed again with label {entry.raw_label!r}; first kept")
    if entry.path not in source.scan.audio:
        return problem(base.MISSING_AUDIO, "label row has no audio file at this path")
    label, reason = source.classify(entry.raw_label)
    if label is None and uses_labels(source.targets):
        if not (source.targets == "distribution" and _kept_for_votes(source, entry, reason)):
            return problem(reason, f"label {entry.raw_label!r}")
        label = VOTES_ONLY
    if not is_rated(entry, source.attributes):
        return problem(base.NO_RATINGS, f"needs ratings of {', '.join(source.attributes)}")
    keep = source.protocol.keep
    if keep is not None and not keep(entry):
        return problem(base.OUTSIDE_PROTOCOL, source.protocol.description)
    return (label if label is not None else unmapped_label(entry.raw_label)), None


def _kept_for_votes(source: Source, entry: Entry, reason: str) -> bool:
    label_set = source.label_set
    return kept_for_votes(entry, reason, label_set.codes.get, label_set.names)


def _measure(entry: Entry, info: AudioInfo, checks: Checks) -> AudioInfo | Problem:
    """The file's header with the duration of the row's clip or segment, or the problem of a
    segment outside the file or a clip shorter than ``checks.min_duration``."""
    start, end = entry.start, entry.end
    if start >= info.duration or (end is not None and end > info.duration + _SEGMENT_SLACK):
        stop = "the end" if end is None else f"{end!r} s"
        detail = f"segment {start!r} s to {stop} of a {info.duration!r}-s file"
        return Problem("", entry.path, base.SEGMENT_OUTSIDE, detail)
    duration = (info.duration if end is None else min(end, info.duration)) - start
    if duration < checks.min_duration:
        detail = f"{duration:.3f} s, shorter than the minimum of {checks.min_duration} s"
        return Problem("", entry.path, base.TOO_SHORT, detail)
    return replace(info, frames=round(duration * info.sample_rate))


def _keep_classes(
    names: Sequence[str], utterances: list[Utterance], minimum: int
) -> tuple[list[str], list[Utterance], list[Problem], list[str]]:
    """The label names kept (all, or those with at least ``minimum`` usable utterances),
    their utterances and those kept for their votes alone, the others as ``rare_label``
    problems, and a warning naming the classes left out with their counts."""
    counts = Counter(u.label for u in utterances)
    kept = [name for name in names if counts[name] >= minimum]
    if len(kept) == len(names):
        return kept, utterances, [], []
    usable = {*kept, VOTES_ONLY}
    rare = [
        Problem(
            u.key,
            u.path,
            base.RARE_LABEL,
            f"class {u.label!r} has {counts[u.label]} usable utterances, fewer than the "
            f"minimum of {minimum}",
        )
        for u in utterances
        if u.label not in usable
    ]
    listed = ", ".join(f"{name} ({counts[name]})" for name in names if name not in kept)
    fewer = "no usable utterance" if minimum == 1 else f"fewer than {minimum} usable utterances"
    warning = f"classes with {fewer} left out: {listed}"
    return kept, [u for u in utterances if u.label in usable], rare, [warning]


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
        progress_bar(verbose, total=len(paths), desc="reading audio", unit="file") as bar,
    ):
        for probed in pool.map(lambda chunk: [_probe_one(p, check_silence) for p in chunk], chunks):
            results += probed
            bar.update(len(probed))
    return results


def _utterance(corpus: str, entry: Entry, label: str, info: AudioInfo) -> Utterance:
    return Utterance(
        **vars(entry),
        corpus=corpus,
        label=label,
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
