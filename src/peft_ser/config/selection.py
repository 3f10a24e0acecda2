"""Which dev metric picks a fold's best epoch and drives its early stop (``optim.select_on``).

Each task scores its dev split on its own metrics, the history's ``dev_<metric>`` columns
(`history_metrics`): a run can select on any of them or on the dev loss, and on nothing else,
so a choice the task cannot compute is refused before anything trains (`selection_metric`).
``auto`` is each task's headline metric (`AUTO`), the choice runs made before the option
existed. The loss and the divergences improve by falling (`LOWER_IS_BETTER`), the rest by
rising.

It lives in the config layer because the schema refuses a bad choice when the config names
its task, and the fold loop, the objectives and the reports below read the same facts.
"""

from __future__ import annotations

from collections.abc import Sequence

from peft_ser.utils.settings import ConfigError

AUTO = {
    "categorical": "uar",
    "attributes": "ccc",
    "multitask": "score",
    "distribution": "jsd",
}
"""The metric ``select_on: auto`` picks, by task: UAR, mean CCC, (UAR + mean CCC) / 2, and
the lowest JSD to the annotators' votes."""
LOWER_IS_BETTER = frozenset({"jsd", "kld", "loss"})
"""Dev metrics that improve by falling (the divergences and the loss); the others rise."""
PER_ATTRIBUTE = "ccc_"
"""The prefix of an attribute's own CCC (``ccc_valence``): its name comes from the corpus."""
SELECT_ON = ("auto", "uar", "accuracy", "macro_f1", "ccc", "score", "jsd", "kld", "loss")
"""The words ``optim.select_on`` takes besides ``ccc_<attribute>``; which of them a run may
use depends on its task (`selectable`)."""
_LABELS = {"uar": "UAR", "ccc": "CCC", "jsd": "JSD", "kld": "KLD", "macro_f1": "macro-F1"}


def history_metrics(task: str, attributes: Sequence[str], split: str = "dev") -> list[str]:
    """The metrics of a split's history columns for ``task`` (besides its loss): all of them
    for dev, the headline one of each kind for train (what its running tracker computes)."""
    kinds: list[list[str]] = []
    if task == "distribution":
        kinds.append(["jsd", "kld"])
    if task != "attributes":
        kinds.append(["uar", "accuracy", "macro_f1"])
    if task in ("attributes", "multitask"):
        kinds.append(["ccc", *(f"{PER_ATTRIBUTE}{name}" for name in attributes)])
    if task == "multitask":
        kinds.append(["score"])
    return [metric for kind in kinds for metric in (kind[:1] if split == "train" else kind)]


def selectable(task: str, attributes: Sequence[str] | None) -> list[str]:
    """The values ``optim.select_on`` may take for ``task``; with ``attributes`` None (not
    known before the corpus fills them in) the per-attribute CCC reads ``ccc_<attribute>``."""
    known = [] if attributes is None else attributes
    metrics = history_metrics(task, known)
    if attributes is None and "ccc" in metrics:
        metrics.insert(metrics.index("ccc") + 1, f"{PER_ATTRIBUTE}<attribute>")
    return ["auto", *metrics, "loss"]


def selection_metric(select_on: str, task: str, attributes: Sequence[str] | None) -> str:
    """The dev metric a fold of ``task`` selects on: ``select_on``, or the task's own for
    ``auto``. A `ConfigError` naming the allowed values when the task's dev split is not
    scored on it; with ``attributes`` None any ``ccc_<name>`` passes for an attribute task
    (the corpus names them later, and training checks again)."""
    if select_on == "auto":
        return AUTO[task]
    allowed = selectable(task, attributes)
    if select_on in allowed:
        return select_on
    open_name = f"{PER_ATTRIBUTE}<attribute>" in allowed and select_on.startswith(PER_ATTRIBUTE)
    if attributes is None and open_name:
        return select_on
    raise ConfigError(
        f"optim.select_on {select_on}: model.task {task} does not score it on dev; choose one "
        f"of {', '.join(allowed)}"
    )


def check_select_on(select_on: str) -> str:
    """``select_on`` if it names a metric of some task, else a `ConfigError` listing them."""
    if select_on in SELECT_ON or (
        select_on.startswith(PER_ATTRIBUTE) and len(select_on) > len(PER_ATTRIBUTE)
    ):
        return select_on
    words = ", ".join([*SELECT_ON[:5], f"{PER_ATTRIBUTE}<attribute>", *SELECT_ON[5:]])
    raise ConfigError(f"{select_on!r}: not a dev metric; choose one of {words}")


def metric_label(metric: str) -> str:
    """A metric as logs, summaries and plots name it: ``UAR``, ``macro-F1``, ``CCC valence``."""
    if metric.startswith(PER_ATTRIBUTE):
        return f"CCC {metric[len(PER_ATTRIBUTE) :]}"
    return _LABELS.get(metric, metric)
