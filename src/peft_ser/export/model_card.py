"""The model card of a Hub export: front matter the Hub indexes, then what a user needs to know.

The front matter is built with huggingface_hub's own `ModelCardData` and `EvalResult` (so it is
the YAML the Hub parses): ``library_name: peft-ser``, ``pipeline_tag: audio-classification``,
``base_model`` (the backbone's Hub id, when it has one), ``tags``, ``license`` only when the
user gives one, and ``model-index`` with the test scores the run recorded: each fold's, then the
mean over folds when the run finished. Nothing is filled in that the run does not know: a model
without a run (a zoo name, a loose folder) gets a card without scores, and the card says so.

``datasets`` is left out: the corpora peft-ser trains on are distributed by their authors, not
as Hub datasets, and the Hub's copies are third-party uploads a card should not vouch for. The
corpus is named in the model-index and the prose instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from peft_ser.config import RunConfig
from peft_ser.corpora.base import CorpusError
from peft_ser.corpora.registry import get_corpus
from peft_ser.inference.hub import is_repo_id
from peft_ser.models.backbones.registry import BACKBONES
from peft_ser.models.ser_model import SERModel, parameter_count

TASK = "audio-classification"
LIBRARY = "peft-ser"
METRICS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "uar": ("recall", "UAR (unweighted average recall)", {"average": "macro"}),
    "accuracy": ("accuracy", "accuracy", None),
    "macro_f1": ("f1", "macro-F1", {"average": "macro"}),
    "ccc": ("ccc", "CCC (mean over attributes)", None),
}
"""Results keys → the Hub's metric type, the name shown, and its arguments."""


@dataclass(frozen=True)
class CardFacts:
    """What the run knows about a model, beyond the model itself (all optional)."""

    name: str
    run: RunConfig | None = None
    fold: str | None = None
    fold_test: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)
    mean_std: dict[str, dict[str, float]] | None = None
    confusion: str | None = None
    license: str | None = None
    repo_id: str | None = None


def base_model(backbone: str) -> str | None:
    """The Hub id of the backbone's pre-trained weights, or None (random or local weights)."""
    spec = BACKBONES.get(backbone)
    source = spec.source if spec is not None else backbone
    if source is None or Path(source).exists() or not is_repo_id(source):
        return None
    return source


def public_name(source: str) -> str:
    """A corpus or backbone as a public card may show it: a name or Hub id as it is, a local
    path by its folder's name only (the folder above a ``prepared`` one), never the path."""
    if source in BACKBONES or (is_repo_id(source) and not Path(source).exists()):
        return source
    try:
        return get_corpus(source).name
    except CorpusError:
        path = Path(source)
        return path.parent.name if path.name == "prepared" and path.parent.name else path.name


def model_card(model: SERModel, facts: CardFacts) -> ModelCard:
    """The card: front matter from `ModelCardData`, then the prose sections."""
    config = model.config
    spec = BACKBONES.get(config.backbone)
    family = spec.model_type if spec is not None else model.backbone.family
    tags = ["speech-emotion-recognition", "peft", config.method, family]
    data = ModelCardData(
        library_name=LIBRARY,
        pipeline_tag=TASK,
        base_model=base_model(config.backbone),
        tags=tags,
        license=facts.license,
        model_name=facts.name,
        eval_results=eval_results(facts) or None,
    )
    body = "\n".join(_prose(model, facts))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def eval_results(facts: CardFacts) -> list[EvalResult]:
    """The model-index entries: each fold's test scores, then their mean over folds."""
    corpus = _corpus(facts.run)
    results = []
    for fold in facts.folds:
        results += _entries(corpus, str(fold["fold"]), fold.get("test", {}))
    if facts.mean_std and len(facts.folds) > 1:
        means = {key: stats.get("mean") for key, stats in facts.mean_std.items()}
        results += _entries(corpus, f"mean over {len(facts.folds)} folds", means)
    return results


def _entries(corpus: str, config: str, scores: dict[str, Any]) -> list[EvalResult]:
    return [
        EvalResult(
            task_type=TASK,
            task_name="Speech emotion recognition",
            dataset_type=corpus,
            dataset_name=corpus,
            dataset_config=config,
            dataset_split="test",
            metric_type=kind,
            metric_name=name,
            metric_args=args,
            metric_value=round(float(scores[key]), 4),
        )
        for key, (kind, name, args) in METRICS.items()
        if isinstance(scores.get(key), (int, float))
    ]


def _corpus(run: RunConfig | None) -> str:
    return "unknown" if run is None else public_name(str(run.data.corpus))


def _prose(model: SERModel, facts: CardFacts) -> list[str]:
    config = model.config
    count = parameter_count(model)
    labels = ", ".join(model.labels[: classes(model)]) or "none (attribute values only)"
    lines = [
        f"# {facts.name}",
        "",
        "A speech emotion recognition model trained with peft-ser: a frozen pre-trained speech "
        "encoder "
        "adapted by a parameter-efficient method, with a classifier head over its layers.",
        "",
        "## Model",
        "",
        f"- labels: {labels}",
        *([f"- attributes: {', '.join(config.attributes)}"] if config.attributes else []),
        f"- backbone: `{public_name(config.backbone)}`"
        + (
            f" ([{hub}](https://huggingface.co/{hub}))"
            if (hub := base_model(config.backbone))
            else ""
        ),
        f"- method: `{config.method}`{_method_detail(model)}",
        f"- trainable parameters: {count.trainable:,} of {count.total:,} ({count.percent:.2f} %); "
        "only these are in `trainable.safetensors`; the backbone is loaded from its own source",
        "- input: mono audio; files and arrays at any rate are resampled to 16 kHz",
        "",
    ]
    lines += _recipe(facts.run)
    lines += _scores(facts)
    lines += _use(facts, pipeline=classes(model) > 0)
    return lines


def classes(model: SERModel) -> int:
    """How many class labels the model answers (none for attribute values alone)."""
    return int(model.layout.logits_width)


def _method_detail(model: SERModel) -> str:
    """The method's own options, as its options model declares them (`method_options`)."""
    options = model.config.method_options.model_dump()
    shown = [f"{key} {value}" for key, value in options.items() if value is not None]
    return f" ({', '.join(shown)})" if shown else ""


def _recipe(run: RunConfig | None) -> list[str]:
    if run is None:
        return ["## Training", "", "Not recorded: this model was exported without its run.", ""]
    optim, data = run.optim, run.data
    return [
        "## Training",
        "",
        f"- corpus: `{public_name(str(data.corpus))}`; folds: "
        + (", ".join(str(f) for f in data.folds) if data.folds else "all of the corpus's"),
        f"- {optim.epochs} epoch{'s' if optim.epochs > 1 else ''}, learning rate "
        f"{optim.lr:g} ({optim.schedule} schedule), "
        f"batch {data.batch_size}, weight decay {optim.weight_decay:g}, "
        f"class weights {optim.class_weights}, epoch kept: {optim.select}",
        f"- training crops: {data.crop_seconds or 'whole clips'}"
        + (" s" if data.crop_seconds else "")
        + f"; augmentation {'on' if run.augment.enabled else 'off'}; seed {run.seed}",
        "",
    ]


def _scores(facts: CardFacts) -> list[str]:
    lines = ["## Results", ""]
    if not facts.folds:
        return [*lines, "No test scores: this model was exported without a finished fold.", ""]
    lines += [
        "The test split of each fold; UAR with its 95 % bootstrap interval.",
        "",
        "| fold | n | UAR | 95 % interval | accuracy | macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for fold in facts.folds:
        test = fold.get("test", {})
        interval = test.get("uar_ci95")
        shown = f"{interval[0]:.3f}–{interval[1]:.3f}" if interval else ""
        mark = " (this model)" if str(fold["fold"]) == facts.fold else ""
        lines.append(
            f"| {fold['fold']}{mark} | {test.get('n', '')} | {_number(test.get('uar'))} | "
            f"{shown} | {_number(test.get('accuracy'))} | {_number(test.get('macro_f1'))} |"
        )
    if facts.mean_std and len(facts.folds) > 1:
        stats = {key: facts.mean_std.get(key, {}) for key in ("uar", "accuracy", "macro_f1")}
        cells = [f"{s['mean']:.3f} ± {s['std']:.3f}" if s else "" for s in stats.values()]
        lines.append(f"| mean ± std | | {cells[0]} | | {cells[1]} | {cells[2]} |")
    if facts.fold is not None:
        lines += ["", f"This repository holds the model of {facts.fold}."]
    if facts.confusion:
        lines += ["", f"![test confusion of {facts.fold}]({facts.confusion})"]
    return [*lines, ""]


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else ""


def _use(facts: CardFacts, pipeline: bool) -> list[str]:
    """How to load it; transformers' audio-classification pipeline only for a model with
    classes (one of attribute values alone answers no labels)."""
    repo = facts.repo_id or "ORG/NAME"
    transformers = [
        "",
        "from transformers import pipeline",
        f'classify = pipeline("audio-classification", model="{repo}", trust_remote_code=True)',
        'print(classify("clip.wav"))',
    ]
    return [
        "## Intended use and limitations",
        "",
        "Research on emotion recognition from speech: the model answers with the labels above "
        "and only those. Acted or read corpora differ from conversation, and a score on one "
        "corpus says little about another; check it on your own recordings before relying on "
        "it, and do not use it to make decisions about people.",
        "",
        "## How to use",
        "",
        f"Replace `{repo}` by this repository's id if it differs.",
        "",
        "```bash",
        "pip install peft-ser",
        f"peft-ser predict clip.wav --model {repo}",
        "```",
        "",
        "```python",
        "import peft_ser",
        f'model = peft_ser.load_model("{repo}")',
        'print(peft_ser.predict("clip.wav", model=model)[0])',
        *(transformers if pipeline else []),
        "```",
        "",
    ]
