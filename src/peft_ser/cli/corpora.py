"""`peft-ser prepare` and `preprocess`: corpora (or your own clips) into prepared folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import app
from peft_ser.corpora.prepare import MIN_DURATION
from peft_ser.corpora.registry import CORPORA, describe_corpora
from peft_ser.utils.errors import UserError

_PREPARE_HELP = """Read an emotion corpus as its owners ship it, or your own labelled clips,
into a prepared directory: manifest.csv, folds.json, labels.json, report.csv (every excluded
item with its reason), summary.json and summary.txt (with a leakage check: the speakers each
fold's splits share). A corpus too small for the protocol's folds (fewer speakers or
sessions than folds) gets as many speaker-independent folds as it allows, with a warning.

Your own data: `prepare table --manifest clips.csv` (CSV, TSV, JSONL or Parquet; columns
path and label, optionally speaker, gender, session, key, split, fold, start, end, and
arousal, valence, dominance for --targets attributes or both, where attributes alone needs no
label column) or `prepare folder --root data/` (one sub-folder per label; class labels
only). EmoBox's corpora: `prepare emobox --metadata <EmoBox>/data/<corpus> --root <folder its
wav paths start in>` (EmoBox's folds and label map; `prepare emobox --list` names the 32).
Classes come from the data or --labels; folds from the table's split or fold column,
else speaker-independent k-fold (--folds-k, --seed), or utterance-level with --split-by
utterance when speakers are unknown.

Exit status: 0 when the prepared directory is written (warnings or not); 2 when the root is
missing or not the corpus, an option is unknown, or nothing usable is left (no utterance,
fewer than 2 classes, or not one fold with separate train, dev and test speakers).

Corpora:

"""

_OWN_DATA_ONLY = ("--columns", "--speaker-pattern", "--split-by", "--folds-k", "--seed", "--name")
_EMOBOX = "emobox"
_EMOBOX_ONLY = ("--metadata", "--list")


@app.command(help=_PREPARE_HELP + describe_corpora())
def prepare(
    corpus: Annotated[
        str, typer.Argument(help=f"one of: {', '.join(CORPORA)}; or table, folder, emobox")
    ],
    root: Annotated[
        Path | None,
        typer.Option(help="the corpus folder (or the folder above it); folder: the label folders"),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="table: the CSV, TSV, JSONL or Parquet file of clips")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: prepared/<corpus>)")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="paper4 (Neutral, Angry, Sad, Happy; the default of named corpora), full "
            "(every emotion class), a corpus extra (ravdess: paper4+calm), or a mapping of "
            "raw labels: 'neu=Neutral,hap+exc=Happy,sad' (others are left out); table and "
            "folder: every label of the data, sorted, unless mapped"
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="fold protocol, see the corpora above (default: paper)")
    ] = None,
    targets: Annotated[
        str,
        typer.Option(
            help="categorical (class labels), attributes (arousal, valence, dominance ratings;"
            " utterances without them are excluded, the label set does not filter), both, or"
            " distribution (class labels and annotator votes; also keeps utterances whose"
            " consensus is outside the label set when an annotator chose a label of it);"
            " table: ratings from its arousal, valence, dominance columns, votes from a votes"
            " or votes_<label> columns; folder: categorical only"
        ),
    ] = "categorical",
    columns: Annotated[
        str | None,
        typer.Option(help="table: our column names → yours, e.g. 'path=file,label=emotion'"),
    ] = None,
    speaker_pattern: Annotated[
        str | None,
        typer.Option(
            help="folder: regular expression finding the speaker in each file's path below "
            "its label folder, e.g. '^(?P<speaker>[^_]+)_'"
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            help="table/folder without split or fold column: speaker (default; needs a "
            "speaker) or utterance (speaker-dependent folds, recorded as such)"
        ),
    ] = None,
    folds_k: Annotated[
        int | None, typer.Option(help="table/folder: number of generated folds (default 5)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="table/folder: seed of the generated folds (default 0)")
    ] = None,
    min_per_class: Annotated[
        int | None,
        typer.Option(
            help="leave out classes with fewer usable utterances (default: 1 for table and "
            "folder, 0 for named corpora, which keep every class of their label set)"
        ),
    ] = None,
    min_duration: Annotated[
        float, typer.Option(help="seconds; shorter clips and segments are too_short")
    ] = MIN_DURATION,
    name: Annotated[
        str | None,
        typer.Option(help="table/folder: corpus name (default: the table's or folder's name)"),
    ] = None,
    check_silence: Annotated[
        bool,
        typer.Option(
            help="decode each file up to its first signal to find silent files (files stored "
            "as floats are read to the end either way, to find NaN and inf samples)"
        ),
    ] = True,
    metadata: Annotated[
        Path | None,
        typer.Option(
            help="emobox: EmoBox's data/<corpus> folder (fold_<k>/…jsonl, label_map.json)"
        ),
    ] = None,
    list_corpora: Annotated[
        bool, typer.Option("--list", help="emobox: print EmoBox's 32 corpora and exit")
    ] = False,
) -> None:
    from peft_ser.corpora import OwnDataOptions, prepare_corpus, prepare_folder, prepare_table
    from peft_ser.corpora.registry import own_data_kind
    from peft_ser.corpora.table import parse_columns

    if corpus.strip().lower() == _EMOBOX:
        others = {"--manifest": manifest, "--labels": labels, "--protocol": protocol,
                  "--columns": columns, "--speaker-pattern": speaker_pattern,
                  "--split-by": split_by, "--folds-k": folds_k, "--name": name,
                  "--min-per-class": min_per_class}  # fmt: skip
        misplaced = [option for option, value in others.items() if value is not None]
        if targets != "categorical":
            misplaced.append("--targets")
        if misplaced:
            raise UserError(f"prepare emobox: {', '.join(misplaced)} not taken (EmoBox fixes "
                            "labels and folds)")  # fmt: skip
        _prepare_emobox(metadata, root, out, list_corpora, seed, min_duration, check_silence)
        return
    if metadata is not None or list_corpora:
        raise UserError(f"{', '.join(_EMOBOX_ONLY)}: only for prepare emobox")
    kind = own_data_kind(corpus)
    values = (columns, speaker_pattern, split_by, folds_k, seed, name)
    given = dict(zip(_OWN_DATA_ONLY, values, strict=True))
    if kind is None:
        misplaced = [option for option, value in given.items() if value is not None]
        misplaced += ["--manifest"] if manifest is not None else []
        if misplaced:
            raise UserError(f"{', '.join(misplaced)}: only for table and folder corpora")
        if root is None:
            raise UserError(f"prepare {corpus}: --root is required (the corpus folder)")
        prepare_corpus(
            corpus, root, out, labels or "paper4", protocol, check_silence=check_silence,
            min_duration=min_duration, min_per_class=min_per_class or 0, targets=targets,
            verbose=True,
        )  # fmt: skip
        return
    if protocol is not None:
        raise UserError("--protocol: table and folder folds come from --split-by and --folds-k")
    options = OwnDataOptions(
        labels=labels,
        min_per_class=1 if min_per_class is None else min_per_class,
        folds_k=5 if folds_k is None else folds_k,
        seed=seed or 0,
        split_by=split_by or "speaker",  # type: ignore[arg-type]
        min_duration=min_duration,
        check_silence=check_silence,
        targets=targets,
    )
    if kind == "table":
        if manifest is None or root is not None or speaker_pattern is not None:
            raise UserError("prepare table: give the table with --manifest (no --root, no "
                            "--speaker-pattern)")  # fmt: skip
        mapping = parse_columns(columns or "")
        prepare_table(manifest, out, columns=mapping, options=options, name=name, verbose=True)
        return
    if root is None or manifest is not None or columns is not None:
        raise UserError("prepare folder: give the folder with --root (no --manifest, no --columns)")
    prepare_folder(
        root, out, speaker_pattern=speaker_pattern, options=options, name=name, verbose=True
    )


def _prepare_emobox(
    metadata: Path | None,
    root: Path | None,
    out: Path | None,
    list_corpora: bool,
    seed: int | None,
    min_duration: float,
    check_silence: bool,
) -> None:
    """`prepare emobox`: the list of EmoBox's corpora, or one corpus prepared."""
    from peft_ser.corpora.emobox import prepare_emobox
    from peft_ser.corpora.emobox_corpora import corpus_table

    if list_corpora:
        if metadata is not None or root is not None or out is not None:
            raise UserError("prepare emobox --list takes no --metadata, --root or --out")
        typer.echo(corpus_table(), nl=False)
        return
    if metadata is None or root is None:
        raise UserError(
            "prepare emobox: give --metadata <EmoBox>/data/<corpus> and --root <the folder its "
            "wav paths start in> (or --list for the 32 corpora)"
        )
    prepare_emobox(
        metadata, root, out, seed=seed or 0, min_duration=min_duration,
        check_silence=check_silence, verbose=True,
    )  # fmt: skip


@app.command()
def preprocess(
    prepared: Annotated[Path, typer.Argument(help="a folder written by `peft-ser prepare`")],
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="cache folder (default: <prepared>/audio_cache, the one training reads)"),
    ] = None,
    sample_rate: Annotated[int, typer.Option(help="target rate in Hz")] = 16000,
) -> None:
    """Decode every manifest utterance to mono float32 at the target rate into an on-disk
    cache keyed by path, size, mtime and rate; unchanged files are skipped, changed ones redone.
    Training on the corpus reads the default cache (16 kHz): its first epoch decodes only the
    files changed since.

    Files that fail are listed on stderr with the reason `prepare` uses (e.g. non_finite_audio).
    Exit status: 0 when at least one utterance is cached, 1 when every one failed, 2 when the
    folder is not a prepared corpus.
    """
    from collections import Counter

    from peft_ser.corpora import preprocess_corpus

    result = preprocess_corpus(prepared, cache_dir, sample_rate, verbose=True)
    reasons = Counter(problem.reason for problem in result.failed)
    counts = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    by_reason = f" ({counts})" if counts else ""
    typer.echo(
        f"decoded {result.computed}, already cached {result.cached}, "
        f"failed {len(result.failed)}{by_reason}"
    )
    for problem in result.failed:
        typer.echo(f"  {problem.reason}: {problem.path}: {problem.detail}", err=True)
    if result.failed and not result.computed + result.cached:
        raise typer.Exit(1)
