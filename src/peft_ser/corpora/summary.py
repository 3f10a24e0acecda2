"""What a preparation writes besides the corpus itself: report.csv (every excluded item and
why), and summary.json / summary.txt (counts per label, speakers and hours for the corpus and
every fold split, how many utterances carry annotator votes and how many were kept for them
alone, the leakage check, the exclusions per reason and the warnings)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from peft_ser.corpora import base
from peft_ser.corpora.base import Problem
from peft_ser.corpora.targets import attribute_summary, summary_lines, uses_labels
from peft_ser.data.manifest import SPLITS, Fold, PreparedCorpus, Utterance, csv_text
from peft_ser.data.vote_columns import VOTES_ONLY

REPORT_FILE = "report.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"

if TYPE_CHECKING:  # prepare.py imports this module; the type alone is needed here
    from peft_ser.corpora.prepare import Source


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
        "votes_only": counts.get(VOTES_ONLY, 0),
    }


def summarize(
    prepared: PreparedCorpus,
    problems: Sequence[Problem],
    source: Source,
    shared: Mapping[str, Mapping[str, Sequence[str]]],
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Counts per label, speakers and hours for the corpus and every fold split, the speakers
    each fold's splits share (the leakage check), the number of exclusions per reason, and
    what the protocol changed on an incomplete corpus."""
    by_key = {u.key: u for u in prepared.manifest}
    excluded = Counter(p.reason for p in problems)

    def split(fold: Fold, name: str) -> dict[str, Any]:
        keys = getattr(fold, name)
        return _split_summary([by_key[key] for key in keys], prepared.labels)

    def fold_summary(fold: Fold) -> dict[str, Any]:
        counts = {pair: len(names) for pair, names in shared[fold.name].items()}
        return (
            {"name": fold.name}
            | {name: split(fold, name) for name in SPLITS}
            | {
                "shared_speakers": counts,
                "shared_train_test": list(shared[fold.name]["train_test"]),
            }
        )

    return {
        "corpus": source.name,
        "root": str(source.root),
        "label_set": source.label_set_name,
        "labels": prepared.labels,
        "protocol": source.protocol_name,
        "protocol_description": source.protocol.description,
        "headline_metric": source.protocol.headline if uses_labels(source.targets) else "ccc",
        "targets": prepared.targets,
        "attributes": list(prepared.attributes),
        "attribute_scale": source.attribute_scale,
        "attribute_stats": attribute_summary(prepared.manifest, prepared.attributes),
        "total": _split_summary(prepared.manifest, prepared.labels),
        "votes": {
            "utterances": sum(u.votes is not None for u in prepared.manifest),
            "kept_for_votes": sum(u.label == VOTES_ONLY for u in prepared.manifest),
        },
        "excluded": {reason: excluded[reason] for reason in base.REASONS if excluded[reason]},
        "folds": [fold_summary(fold) for fold in prepared.folds],
        "speaker_independent": prepared.speaker_leakage is None,
        "speaker_leakage": prepared.speaker_leakage,
        "warnings": list(warnings),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """A short, aligned plain-text rendering of `summarize`'s result."""
    labels = summary["labels"]
    votes_only = summary["votes"]["kept_for_votes"] > 0
    header = f"{'':16}{'utts':>7}{'spk':>5}{'hours':>8}" + "".join(f"{n[:9]:>10}" for n in labels)
    header += f"{'votes-only':>11}" if votes_only else ""

    def line(name: str, part: dict[str, Any]) -> str:
        cells = "".join(f"{part['per_label'][label]:>10}" for label in labels)
        cells += f"{part['votes_only']:>11}" if votes_only else ""
        return f"{name:16}{part['utterances']:>7}{part['speakers']:>5}{part['hours']:>8.2f}{cells}"

    lines = [
        f"{summary['corpus']} ({summary['label_set']}, protocol {summary['protocol']})",
        header,
        line("all", summary["total"]),
    ]
    for fold in summary["folds"]:
        lines += [line(f"{fold['name']} {split}", fold[split]) for split in SPLITS]
    lines += summary_lines(summary)
    lines += _votes_lines(summary["votes"])
    lines += _leakage_lines(summary["folds"])
    excluded = summary["excluded"]
    lines.append(f"excluded: {sum(excluded.values())}")
    lines += [f"  {reason}: {count}" for reason, count in excluded.items()]
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return "\n".join(lines) + "\n"


def _votes_lines(votes: dict[str, int]) -> list[str]:
    """``votes: …``: how many utterances carry annotator votes, and how many of them are kept
    for their votes alone (none of the line without votes)."""
    if not votes["utterances"]:
        return []
    line = f"votes: {votes['utterances']} utterances carry annotator votes"
    if votes["kept_for_votes"]:
        line += (
            f"; {votes['kept_for_votes']} of them kept for their votes alone (consensus "
            "outside the label set, no class label)"
        )
    return [line]


def _leakage_lines(folds: Sequence[dict[str, Any]]) -> list[str]:
    """``leakage check: …``: no shared speaker at all, or the count per fold and pair."""
    if not any(count for fold in folds for count in fold["shared_speakers"].values()):
        return ["leakage check: no speaker in two of train, dev and test of any fold"]
    lines = ["leakage check: speakers shared between splits"]
    for fold in folds:
        pairs = ", ".join(
            f"{pair.replace('_', '-')} {count}" for pair, count in fold["shared_speakers"].items()
        )
        lines.append(f"  {fold['name']}: {pairs}")
    return lines
