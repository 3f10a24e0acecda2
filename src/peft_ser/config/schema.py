"""The configuration's schema: pydantic models that forbid unknown keys, so a typo in a YAML
file is an error naming the key instead of a silently ignored setting. Values that cannot work
are refused here too, before anything is built or trained: NaN or infinite numbers anywhere,
sizes beyond what any backbone uses (`MAX_SIZE`), learning rates that overflow the weights
(`MAX_LR`), duplicated labels or folds, and a backbone folder that holds no model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from peft_ser.config.selection import check_select_on, selection_metric
from peft_ser.data.augment import AugmentConfig
from peft_ser.data.frames import MIN_SAMPLES
from peft_ser.models.config import ModelConfig
from peft_ser.utils.precision import precision_word
from peft_ser.utils.settings import ConfigError, StrictModel

MAX_LR = 10.0
"""Largest learning rate. Adam-type optimisers move each weight by about ``lr`` per step; at 10
a single step already dwarfs every trained weight (the paper uses 5e-4), and 1e30 overflows."""
MIN_CLIP_SECONDS = MIN_SAMPLES / 16000
"""0.025 s: one analysis frame, the shortest clip a model can score."""


Tracker = Literal["tensorboard", "mlflow", "wandb", "comet_ml", "aim", "clearml", "dvclive"]
"""The experiment trackers a run can report to (`peft_ser.training.reporting`)."""
DEFAULT_TRACKERS: tuple[Tracker, ...] = ("tensorboard",)

FoldSelector = int | str
"""A fold by 1-based position in the corpus's fold list (``2``) or by its name (``"fold2"``)."""


class DataConfig(StrictModel):
    """Which corpus and folds to use, and how clips become batches."""

    corpus: str = Field(
        description="a prepared corpus directory, or a corpus name resolved to prepared_dir "
        "(default prepared/<name>)"
    )
    corpus_dir: Path | None = Field(
        None,
        description="raw corpus directory; when set and nothing is prepared yet, "
        "the corpus is prepared into prepared_dir first",
    )
    prepared_dir: Path | None = Field(None, description="where the prepared corpus lives")
    folds: list[FoldSelector] | None = Field(
        None, description="folds to run (1-based positions or names); default: all"
    )
    crop_seconds: float | None = Field(
        6.0,
        ge=MIN_CLIP_SECONDS,
        description="training clips keep their first crop_seconds (at least 0.025: one "
        "analysis frame); None = whole",
    )
    eval_max_seconds: float | None = Field(
        None,
        ge=MIN_CLIP_SECONDS,
        description="dev/test clips keep their first eval_max_seconds; None = whole",
    )
    batch_size: int = Field(32, ge=1, description="global batch, split across processes")
    eval_batch_size: int | None = Field(
        64,
        ge=1,
        description="dev/test batch; they are sorted by length, so a large batch adds little "
        "padding and predictions do not depend on it; None = batch_size",
    )
    audio_cache_gb: float = Field(
        2.0,
        ge=0,
        description="decoded clips kept in memory for the run, so no epoch decodes a file twice; "
        "beyond it, and in data-loading workers, they go to a temporary folder on disk",
    )
    eval_batch_seconds: float = Field(
        160.0,
        gt=0,
        description="dev/test batches hold at most this much padded audio (clips × longest): "
        "many short clips or a few long ones, within memory",
    )
    group_padding: float | None = Field(
        0.1,
        ge=0,
        lt=1,
        description="a training batch runs through the encoder in groups of similar length, each "
        "padded at most this share of its frames: the same batch and results, without computing "
        "most of its padding; None = each batch runs whole",
    )
    bucketing: bool = Field(
        False,
        description="batch clips of similar length, mixed in labels; random batches (the "
        "default) run in groups of similar length (group_padding), pad less, and measured about "
        "1 UAR point above buckets where length follows the label (docs/training.md)",
    )
    bucket_pool: int = Field(
        50, ge=1, description="batches whose clips are sorted together before batching"
    )
    bucket_jitter: float = Field(
        1.0,
        ge=0,
        description="how far, in batches, a clip may move from its length-sorted place, so "
        "batch composition changes from epoch to epoch (larger: more mixing, more padding)",
    )
    bucket_slack: float | None = Field(
        None,
        ge=0,
        description="with bucketing, how far (in its share of a batch, at least one clip) a label "
        "may run ahead of or behind its share as clips are laid out by length: every batch holds "
        "each label within twice that of its share, and padding comes near that of sorting by "
        "length where length does not follow the label; None = each label in proportion in "
        "every batch (stratified), more padding on small folds",
    )
    num_workers: int = Field(
        default_factory=lambda: min(4, max(0, (os.cpu_count() or 1) - 1)),
        ge=0,
        le=1024,
        description="data-loading worker processes; 0 loads in the main process",
    )

    @field_validator("folds", mode="before")
    @classmethod
    def _split_folds(cls, value: Any) -> Any:
        """Accept ``"1,2"`` from a command line as well as a YAML list."""
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            return [int(item) if item.isdigit() else item for item in items]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("folds")
    @classmethod
    def _distinct_folds(cls, folds: list[FoldSelector] | None) -> list[FoldSelector] | None:
        """A fold run twice would pool its test clips twice in the run's results."""
        if folds is not None:
            repeated = sorted({str(f) for f in folds if folds.count(f) > 1})
            if repeated:
                raise ConfigError(f"{folds}: fold {', '.join(repeated)} given more than once")
            if not folds:
                raise ConfigError("an empty list; leave folds out to run them all")
        return folds


class OptimConfig(StrictModel):
    """Optimiser, schedule and loss (defaults: the paper's)."""

    epochs: int = Field(30, ge=1, le=10_000)
    lr: float = Field(5e-4, gt=0, le=MAX_LR)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9,
        0.98,
    )
    weight_decay: float = Field(
        1e-4,
        ge=0,
        le=1,
        description="Adam's L2 penalty, added to the gradient (the paper's); above 1 it "
        "outweighs any loss",
    )
    plateau_patience: int = Field(5, ge=0, description="ReduceLROnPlateau on dev loss")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    min_lr: float = Field(5e-5, ge=0, le=MAX_LR)
    schedule: Literal["plateau", "constant", "linear", "cosine"] = Field(
        "plateau",
        description="plateau: halve the rate when dev loss stalls (the paper); constant: lr "
        "throughout; linear / cosine: decay from lr to min_lr over the run after the warmup, "
        "whatever dev does",
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        description="constant, linear, cosine: epochs of linear warmup first (the schedule "
        "then moves once per epoch)",
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        description="constant, linear, cosine: optimiser steps of linear warmup first (the "
        "schedule then moves once per optimiser step); not with warmup_epochs",
    )
    grad_accum_steps: int = Field(
        1,
        ge=1,
        le=1024,
        description="gradient accumulation: each step sums the gradients of this many batches "
        "of data.batch_size (an effective batch of batch_size × grad_accum_steps)",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="stop a fold once the dev score (the one that picks the best epoch) has "
        "not improved for this many epochs; None = train every epoch",
    )
    select: Literal["best_dev", "last"] = Field(
        "best_dev", description="the epoch tested: the best dev score (the paper) or the last"
    )
    select_on: str = Field(
        "auto",
        description="the dev score that picks the best epoch and drives early stopping: auto "
        "(the task's: uar, ccc, score or jsd), or any dev metric the task computes: uar, "
        "accuracy, macro_f1 (class tasks), ccc, ccc_<attribute> (attribute tasks), score "
        "(multitask), jsd, kld (distribution), loss; the loss and divergences by their lowest",
    )
    class_weights: Literal["inverse_frequency", "none"] = Field(
        "inverse_frequency", description="cross-entropy weights from the training split"
    )
    attribute_loss: Literal["ccc", "mse"] = Field(
        "ccc", description="attribute tasks: 1 - CCC per attribute, averaged, or mean squared error"
    )
    attribute_weight: float = Field(
        1.0, ge=0, description="multitask: loss = cross entropy + attribute_weight * attribute loss"
    )
    distribution_temperature: float = Field(
        1.0,
        ge=0.1,
        le=10.0,
        description="distribution task: each vote share is raised to 1/temperature and the "
        "target renormalised: below 1 sharpens toward the majority (at 0.1 a 2:1 vote is "
        "already 1024:1, a hard label), above 1 flattens (at 10 it is 1.07:1)",
    )
    distribution_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="distribution task: the target mixed with the uniform distribution, "
        "(1 - smoothing)·target + smoothing / classes (1 would erase the votes)",
    )
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; None = off")
    max_nonfinite_steps: int = Field(
        3,
        ge=0,
        description="steps with a non-finite loss or gradient are not applied; a fold with "
        "more than this many stops with an error",
    )

    @field_validator("select_on")
    @classmethod
    def _a_dev_metric(cls, value: str) -> str:
        return check_select_on(value)

    @model_validator(mode="after")
    def _warmup_within_the_run(self) -> OptimConfig:
        """One warmup, before a schedule that follows it; a warmup that fills the run never
        reaches lr (and a decay after it never decays)."""
        if self.warmup_epochs and self.warmup_steps:
            raise ConfigError(
                f"warmup_epochs {self.warmup_epochs} and warmup_steps {self.warmup_steps}: set "
                "one of them, not both"
            )
        if self.schedule == "plateau" and self.warmup_steps:
            raise ConfigError(
                f"warmup_steps {self.warmup_steps}: schedule plateau has no warmup (it follows "
                "dev loss); use constant, linear or cosine"
            )
        if self.schedule != "plateau" and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warmup_epochs {self.warmup_epochs}: must be below epochs ({self.epochs}), so "
                f"that the {self.schedule} schedule has epochs left"
            )
        return self


class RunConfig(StrictModel):
    """One training run: a model, a corpus with its folds, and how to train."""

    model: ModelConfig = Field(default_factory=lambda: ModelConfig.model_validate({}))
    data: DataConfig
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig.model_validate({}))
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig.model_validate({}))
    output_dir: Path = Field(Path("runs/run"), description="the run directory")
    report_to: list[Tracker] = Field(
        default_factory=lambda: list(DEFAULT_TRACKERS),
        description="experiment trackers each fold reports to (besides its files): TensorBoard "
        "in the run folder, the others through Accelerate's tracking API (their package "
        "installed; MLflow reads MLFLOW_TRACKING_URI); [] for none",
    )
    seed: int = Field(0, ge=0, lt=2**32, description="numpy takes seeds below 2**32")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 where the device computes it natively (GPUs that support it, "
        "CPUs with AVX512-BF16 or AMX), else fp16 on GPU and no on CPU; bf16 on other CPUs is "
        "emulated and slower; fp32 is a spelling of no",
    )

    feature_cache: Literal["auto", "on", "off"] = Field(
        "auto",
        description="keep the frozen backbone's hidden states (with model.tune_layers, those "
        "below the tuned layers) in memory after the first pass; auto = on for method frozen, "
        "and for model.tune_layers without augmentation. Training on cached states skips "
        "waveform augmentation",
    )
    feature_cache_persist: bool = Field(
        True,
        description="also keep the feature cache on disk, shared by folds, runs and processes "
        "(keyed by backbone, front end, precision, crop and the audio's content)",
    )
    feature_cache_dir: Path | None = Field(
        None,
        description="where the persistent feature cache lives; default $PEFT_SER_FEATURE_CACHE, "
        "else ~/.cache/peft-ser/features",
    )
    feature_cache_budget_gb: float = Field(
        20.0, gt=0, description="least recently used states are deleted beyond this size"
    )
    progress: bool = Field(True, description="a progress bar per epoch (main process only)")
    threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="torch intra-op threads per process (default: torch's choice, one per "
        "core). Float sums are split differently over another thread count, so a run repeats "
        "exactly only with the same count: set it where a result must reproduce",
    )

    @model_validator(mode="after")
    def _selection_the_task_scores(self) -> RunConfig:
        """A task named in the config is scored on dev on its own metrics only: selecting on
        another is refused now, not after the first epoch (training checks the task the
        corpus gives too, and the attribute names)."""
        if self.model.task is not None:
            selection_metric(self.optim.select_on, self.model.task, None)
        return self

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _fp32_means_no(cls, value: Any) -> Any:
        """``fp32``, inference's word for full precision, is Accelerate's ``no`` here, so one
        vocabulary reads in every setting (`peft_ser.utils.precision`)."""
        return "no" if isinstance(value, str) and precision_word(value) == "fp32" else value
