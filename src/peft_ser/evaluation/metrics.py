"""Scores of a classifier on one split: UAR, accuracy, macro-F1, confusion, gender fairness.

UAR (unweighted average recall, the mean of per-class recalls) is the field's headline metric
because emotion corpora are unbalanced. Recall is averaged over the classes that occur in the
reference labels only: a class absent from a split has no defined recall, and counting it as 0
would punish a model for the split's composition.

Fairness compares the two genders ``F`` and ``M`` (utterances with unknown gender are left out
of these numbers only), as differences ``F − M`` so the sign says who is favoured:

* ``uar_F``, ``uar_M``: UAR within each gender; ``uar_gap = uar_F − uar_M``.
* statistical parity difference of class c: ``P(ŷ = c | F) − P(ŷ = c | M)``, how much more often
  the model predicts c for women, whatever the true label;
  ``statistical_parity_difference`` is the largest absolute value over classes.
* equal opportunity difference of class c: ``P(ŷ = c | y = c, F) − P(ŷ = c | y = c, M)``, the gap
  in recall of c; ``equal_opportunity_difference`` is the largest absolute value over classes
  that occur in both genders. (The mean of the signed per-class values is ``uar_gap``.)

Predicted distributions (the distribution task) are scored against the annotators' shares of
the label set, item by item, averaged over items: ``jsd``, the Jensen-Shannon divergence, in
nats (natural log: 0 for equal distributions, at most ln 2 ≈ 0.693 for disjoint ones;
symmetric), and ``kld``, the KL divergence KL(shares ‖ predicted), the loss's own formula
(`peft_ser.models.tasks.kl_divergence`), unbounded where the model is sure of a label the
annotators did not choose. A split without items has neither (NaN, ``null`` in JSON).

Attribute predictions (arousal, valence, dominance on the corpus's scale) are scored per
attribute by the concordance correlation coefficient (CCC, the challenge metric: it falls with
any difference of correlation, mean or spread), Pearson's r and the root mean squared error;
``ccc`` is the mean CCC over the attributes.

The module is pure (CCC is the attribute loss's own formula, `peft_ser.models.tasks`, computed
in float64): plots come back as matplotlib `Figure` objects (no pyplot state, rendered
with Agg when saved) and the caller decides where they go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import confusion_matrix, f1_score

from peft_ser.config.selection import metric_label
from peft_ser.models.tasks import concordance, kl_divergence

SCALARS: tuple[str, ...] = (
    "uar",
    "accuracy",
    "macro_f1",
    "uar_F",
    "uar_M",
    "uar_gap",
    "statistical_parity_difference",
    "equal_opportunity_difference",
)
"""The scalar metrics, in the order tables list them."""
DISTRIBUTION_SCALARS: tuple[str, ...] = ("jsd", "kld")
"""The distribution task's scores (lower is better), in the order tables list them."""
ATTRIBUTE_STATS = ("ccc", "pearson", "rmse")
"""Per-attribute metrics: flat keys ``ccc_arousal``, ``pearson_valence``, ``rmse_dominance``."""


def regression_scalars(attributes: Sequence[str]) -> tuple[str, ...]:
    """The scalar attribute metrics, in the order tables list them."""
    return ("ccc", *(f"{stat}_{name}" for stat in ATTRIBUTE_STATS for name in attributes))


def uar(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (0.0 for an empty split)."""
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(truth)
    if classes.size == 0:
        return 0.0
    return float(np.mean([np.mean(pred[truth == c] == c) for c in classes]))


def uar_interval(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval of the UAR: items drawn with replacement.

    Test splits of emotion corpora are small (a CREMA-D fold of 2 speakers holds a few hundred
    clips, the demo's 32): one clip more or less right moves the UAR by several points, and the
    interval says how far a number can be trusted. Draws come from ``seed``, so the interval of
    a result is reproducible.
    """
    truth, pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if truth.size == 0:
        return (0.0, 0.0)
    draws = np.random.default_rng(seed).integers(0, truth.size, size=(resamples, truth.size))
    drawn_truth, hits = truth[draws], truth[draws] == pred[draws]
    recalls = []
    for label in np.unique(truth):
        of_label = drawn_truth == label
        counts = of_label.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(counts > 0, (hits & of_label).sum(axis=1) / counts, np.nan))
    scores = np.nanmean(np.stack(recalls), axis=0)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(scores, [tail, 100 - tail])
    return (float(low), float(high))


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    genders: Sequence[str] | None = None,
    interval: bool = False,
) -> dict[str, Any]:
    """All metrics of one split as a JSON-ready dict (see the module docstring).

    ``labels`` names the class ids ``0 … C−1``; ``genders`` (``F``/``M``/``U`` per item) adds
    the fairness numbers when both ``F`` and ``M`` occur; ``interval`` adds ``uar_ci95``, the
    95 % bootstrap interval of the UAR (see `uar_interval`).
    """
    truth, pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    ids = list(range(len(labels)))
    confusion = confusion_matrix(truth, pred, labels=ids) if truth.size else np.zeros((0, 0))
    present = sorted(set(truth.tolist()) | set(pred.tolist()))
    result: dict[str, Any] = {
        "n": int(truth.size),
        "uar": uar(truth, pred),
        "accuracy": float(np.mean(truth == pred)) if truth.size else 0.0,
        "macro_f1": float(f1_score(truth, pred, labels=present, average="macro", zero_division=0))
        if truth.size
        else 0.0,
        "confusion": confusion.astype(int).tolist(),
        "recall": {
            labels[c]: float(np.mean(pred[truth == c] == c)) for c in ids if np.any(truth == c)
        },
    }
    if interval:
        result["uar_ci95"] = list(uar_interval(truth, pred))
    if genders is not None:
        result.update(fairness_metrics(truth, pred, np.asarray(genders), labels))
    return result


def fairness_metrics(
    truth: np.ndarray, pred: np.ndarray, genders: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """UAR per gender, its gap, and parity/opportunity differences; empty without F and M."""
    female, male = genders == "F", genders == "M"
    if not (female.any() and male.any()):
        return {}
    parity = {
        labels[c]: float(np.mean(pred[female] == c) - np.mean(pred[male] == c))
        for c in range(len(labels))
    }
    opportunity = {
        labels[c]: float(
            np.mean(pred[female & (truth == c)] == c) - np.mean(pred[male & (truth == c)] == c)
        )
        for c in range(len(labels))
        if np.any(female & (truth == c)) and np.any(male & (truth == c))
    }
    uar_f, uar_m = uar(truth[female], pred[female]), uar(truth[male], pred[male])
    return {
        "uar_F": uar_f,
        "uar_M": uar_m,
        "uar_gap": uar_f - uar_m,
        "statistical_parity_difference": max(abs(v) for v in parity.values()),
        "equal_opportunity_difference": max((abs(v) for v in opportunity.values()), default=0.0),
        "parity_by_class": parity,
        "opportunity_by_class": opportunity,
    }


def concordance_cc(
    truth: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray
) -> float:
    """Lin's CCC: 2·cov / (var_t + var_p + (mean_t − mean_p)²), population moments, in float64
    through the loss's own definition (`peft_ser.models.tasks.concordance`, which owns the edge
    cases): 0.0 when there is no item, or when both sides are constant."""
    t = torch.as_tensor(np.asarray(truth, dtype=np.float64)).reshape(-1, 1)
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64)).reshape(-1, 1)
    return float(concordance(p, t)[0])


def pearson(truth: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray) -> float:
    """Pearson's r; 0.0 when either side is constant (r is undefined there)."""
    t, p = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if t.size < 2 or t.std() == 0 or p.std() == 0:
        return 0.0
    return float(np.corrcoef(t, p)[0, 1])


def regression_metrics(
    truth: np.ndarray, pred: np.ndarray, attributes: Sequence[str]
) -> dict[str, Any]:
    """CCC, Pearson's r and RMSE of each attribute (columns of ``[N, A]`` arrays, in
    ``attributes`` order) as flat keys, and ``ccc``, their mean CCC, the headline."""
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    result: dict[str, Any] = {"n": int(truth.shape[0])}
    for column, name in enumerate(attributes):
        t, p = truth[:, column], pred[:, column]
        result[f"ccc_{name}"] = concordance_cc(t, p)
        result[f"pearson_{name}"] = pearson(t, p)
        result[f"rmse_{name}"] = float(np.sqrt(np.mean((t - p) ** 2))) if t.size else 0.0
    result["ccc"] = float(np.mean([result[f"ccc_{name}"] for name in attributes]))
    return result


def jensen_shannon(shares: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """The Jensen-Shannon divergence of each row pair of ``[N, C]`` distributions, in nats:
    ½·KL(p ‖ m) + ½·KL(q ‖ m) with m = (p + q) / 2 and 0·log 0 = 0; in [0, ln 2], exactly 0
    for equal rows (m is then p itself), clamped at 0 against rounding below it."""
    p, q = shares.double(), predicted.double()
    m = (p + q) / 2
    xlogy = torch.special.xlogy
    divergence = 0.5 * (xlogy(p, p) - xlogy(p, m) + xlogy(q, q) - xlogy(q, m)).sum(dim=-1)
    return divergence.clamp_min(0.0)


def distribution_metrics(shares: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """``jsd`` and ``kld`` of the predicted distributions ``softmax(logits)`` against the vote
    ``shares`` (``[N, C]`` each), means over items in float64 (see the module docstring)."""
    if shares.shape[0] == 0:
        return {"jsd": float("nan"), "kld": float("nan")}
    logits = logits.double()
    predicted = torch.softmax(logits, dim=-1)
    return {
        "jsd": float(jensen_shannon(shares, predicted).mean()),
        "kld": float(kl_divergence(logits, shares.double()).mean()),
    }


def summarize(per_fold: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (population, ddof 0) of each scalar across folds."""
    summary: dict[str, dict[str, float]] = {}
    attributes = list(
        dict.fromkeys(key[4:] for m in per_fold for key in m if key.startswith("ccc_"))
    )
    for name in (*DISTRIBUTION_SCALARS, *SCALARS, "score", *regression_scalars(attributes)):
        values = [float(m[name]) for m in per_fold if name in m]
        if values:
            summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return summary


EMOBOX_SCORES = (("WA", "accuracy"), ("UA", "uar"), ("macro-F1", "macro_f1"))
"""EmoBox's three leaderboard scores and the fold metric each is: its ``ComputePerformance``
(emo-box/EmoBox ``EmoBox/EmoEval.py``, ``examples/sb/scoring_metric.py``) takes WA from
scikit-learn's ``accuracy_score``, UA from ``balanced_accuracy_score`` (the mean recall of
the classes in the truth, our `uar`) and macro-F1 from ``f1_score(average="macro")`` (over
the classes in truth or prediction, as `classification_metrics` computes it)."""


def emobox_scores(per_fold: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """WA, UA and macro-F1 in percent, each the unweighted mean of the folds' own scores.

    EmoBox scores each fold's test list on its own (``ComputePerformance`` above) and ships
    no code that pools folds; the mean over folds, each fold counting once whatever its size,
    is how its multi-fold corpora reach one leaderboard number per corpus and metric, and
    what `summarize` takes too (pooling every fold's predictions would weigh large folds
    more)."""
    return {
        name: 100 * float(np.mean([float(fold[key]) for fold in per_fold]))
        for name, key in EMOBOX_SCORES
    }


def emobox_line(per_fold: Sequence[Mapping[str, Any]]) -> str:
    """``EmoBox WA / UA / macro-F1 (%, mean of 5 folds): 66.67 / 58.33 / 55.56``."""
    scores = emobox_scores(per_fold)
    names = " / ".join(scores)
    values = " / ".join(f"{value:.2f}" for value in scores.values())
    count = len(per_fold)
    return f"EmoBox {names} (%, mean of {count} fold{'' if count == 1 else 's'}): {values}"


def confusion_figure(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str
) -> Figure:
    """A confusion matrix with counts and row-normalised shading (rows = true labels), titled
    with its UAR (the mean recall of the true labels that occur)."""
    counts = np.asarray(confusion, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    present = rows[:, 0] > 0
    if present.any():
        title = f"{title}: UAR {float(np.diag(shares)[present].mean()):.3f}"
    size = 1.2 + 0.9 * len(labels)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        colour = "white" if shares[i, j] > 0.5 else "black"
        axes.text(j, i, f"{int(count)}", ha="center", va="center", color=colour)
    axes.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of true label")
    figure.tight_layout()
    return figure


def learning_curves_figure(
    history: Sequence[Mapping[str, float]], title: str, metric: str = "uar", tested: int = 0
) -> Figure:
    """Loss (train, dev) and the selection ``metric`` (``uar``, ``macro_f1``, ``ccc``, …: dev,
    and train where its history holds it) per epoch, side by side, on whole-epoch ticks; the
    ``tested`` epoch (when given) is marked on both and its dev score is in the title."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    loss_axes, uar_axes = figure.subplots(1, 2)
    for split in ("train", "dev"):
        loss_axes.plot(epochs, [row[f"{split}_loss"] for row in history], marker=".", label=split)
        if all(f"{split}_{metric}" in row for row in history):
            uar_axes.plot(
                epochs, [row[f"{split}_{metric}"] for row in history], marker=".", label=split
            )
    name = metric_label(metric)
    scored = f"{title}: {name}"
    if tested:
        dev = next(row[f"dev_{metric}"] for row in history if row["epoch"] == tested)
        scored = f"{title}: dev {name} {dev:.3f} at the tested epoch {tested}"
        for axes in (loss_axes, uar_axes):
            axes.axvline(tested, color="grey", linestyle="--", linewidth=1, label="tested")
    loss_axes.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    uar_axes.set(xlabel="epoch", ylabel=name, title=scored)
    if metric not in ("loss", "kld"):  # the rest lie within [0, 1] (a CCC may dip below 0)
        uar_axes.set_ylim(-0.1 if metric.startswith("ccc") else 0, 1)
    for axes in (loss_axes, uar_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return figure


def fold_title(fold: str) -> str:
    """A fold's name as a picture's title: ``fold1`` as it is, ``3`` as ``fold 3``."""
    return fold if fold.lower().startswith("fold") else f"fold {fold}"


def attribute_scatter_figure(
    truth: np.ndarray, pred: np.ndarray, attributes: Sequence[str], title: str
) -> Figure:
    """Predicted against true value, one panel per attribute, with the identity line and
    the attribute's CCC."""
    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    figure = Figure(figsize=(4 * len(attributes), 4))
    panels = figure.subplots(1, len(attributes), squeeze=False)[0]
    for column, (axes, name) in enumerate(zip(panels, attributes, strict=True)):
        t, p = truth[:, column], pred[:, column]
        axes.scatter(t, p, s=8, alpha=0.5)
        low, high = (
            (float(min(t.min(), p.min())), float(max(t.max(), p.max()))) if t.size else (0, 1)
        )
        axes.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
        axes.set(
            xlabel=f"true {name}",
            ylabel=f"predicted {name}",
            title=f"{title}: {name} (CCC {concordance_cc(t, p):.3f})",
        )
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
