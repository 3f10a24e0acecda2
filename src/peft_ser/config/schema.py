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
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from peft_ser.errors import UserError
from peft_ser.frames import MIN_SAMPLES
from peft_ser.manifest import PAPER4

MAX_SIZE = 8192
"""Largest ``lora_rank``, ``adapter_dim``, ``head_dim``, ``prompt_length`` and ``lora_alpha``.
The widest layer of any registry backbone is 5120 (whisper-large-v3's feed-forward); a rank,
bottleneck or head wider than that adds weights but no capacity, and 10^9 asks for terabytes."""
MAX_LR = 10.0
"""Largest learning rate. Adam-type optimisers move each weight by about ``lr`` per step; at 10
a single step already dwarfs every trained weight (the paper uses 5e-4), and 1e30 overflows."""
MAX_DEPTH = 32
"""Deepest nesting of a config document: a run config is 3 levels deep, a ``peft_config`` a few
more. A deeper document is a mistake or an attack (200,000 levels overflow Python's stack)."""
MAX_VALUES = 100_000
"""Most values a config document may expand to: YAML aliases can make a short file expand
without end ("billion laughs"); real configs hold a few hundred."""
MIN_CLIP_SECONDS = MIN_SAMPLES / 16000
"""0.025 s: one analysis frame, the shortest clip a model can score."""


class StrictModel(BaseModel):
    """Base for all configs: unknown keys are rejected, values are validated on assignment,
    and no float is NaN or infinite (no setting means "infinite"; None means "none")."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(StrictModel):
    """What to build: a backbone, a PEFT method with its options, and the head's label set."""

    backbone: str = Field(
        "whisper-tiny",
        description="registry name, Hugging Face hub id, local directory, or ct2:<dir>",
    )
    method: str = Field(
        "lora",
        description="frozen (alias finetune), full, lora, adapter, adapter_l, "
        "embedding_prompt, combined, or peft (any peft tuner via peft_config)",
    )
    lora_rank: int = Field(16, ge=1, le=MAX_SIZE)
    lora_alpha: float = Field(
        1.0, gt=0, le=MAX_SIZE, description="scaling = alpha / rank; 1 = the paper"
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = Field(
        None, description="module names for LoRA; default: the two feed-forward projections"
    )
    peft_config: dict[str, Any] | None = Field(
        None, description="a peft config as a dict with peft_type, for method 'peft'"
    )
    adapter_dim: int = Field(128, ge=1, le=MAX_SIZE, description="bottleneck width of adapters")
    prompt_length: int = Field(
        5, ge=1, le=MAX_SIZE, description="learnable prompt vectors per layer"
    )
    head_dim: int = Field(256, ge=1, le=MAX_SIZE)
    labels: list[str] = Field(
        default_factory=lambda: list(PAPER4),
        min_length=1,
        description="class names, filled from the prepared corpus; at least 2 unless the task "
        "is attributes (a corpus without class labels has one, none)",
    )
    task: Literal["categorical", "attributes", "multitask"] | None = Field(
        None,
        description="what the head predicts: class labels, attribute values (arousal, "
        "valence, dominance) or both; None: what the prepared corpus was prepared for",
    )
    attributes: list[str] = Field(
        default_factory=list, description="attribute outputs, filled from the prepared corpus"
    )
    whisper_window: Literal["crop", "pad30"] = Field(
        "crop",
        description="crop: encode only the clip's frames (fast, the paper's choice); "
        "pad30: pad to Whisper's 30-s training window",
    )

    @model_validator(mode="after")
    def _classes_to_tell_apart(self) -> ModelConfig:
        if self.task != "attributes" and len(self.labels) < 2:
            raise ValueError(
                f"model.labels {self.labels}: a classifier needs at least 2 classes (one is "
                "enough only for model.task attributes)"
            )
        return self

    @field_validator("labels", "attributes")
    @classmethod
    def _distinct_names(cls, names: list[str]) -> list[str]:
        """Two outputs of one name would split its probability (they would not sum to 1 by
        name); names that differ only in case or surrounding spaces are one class too."""
        seen: dict[str, str] = {}
        for name in names:
            if not name.strip():
                raise ConfigError(f"{names}: an empty name")
            key = name.strip().casefold()
            if key in seen:
                if seen[key] == name:
                    raise ConfigError(f"{names}: {name!r} is listed twice; give each name once")
                raise ConfigError(
                    f"{names}: {seen[key]!r} and {name!r} differ only in case or spaces, so "
                    "they are one class; give each name once"
                )
            seen[key] = name
        return names

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        """The registry's spelling of a named backbone; a misspelt name is refused here, with
        the closest name, before anything is built or fetched (no weights, no network)."""
        from peft_ser.backbones import resolve_backbone

        resolved = resolve_backbone(value)
        _check_backbone_folder(resolved)
        return resolved

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from peft_ser.tuning.registry import resolve_method

        return resolve_method(value)


def _check_backbone_folder(source: str) -> None:
    """A backbone given as a folder must hold a model: a Hugging Face checkpoint
    (``config.json``) or a CTranslate2 one (``model.bin``). Any other folder (``../../etc``)
    would fail deep inside transformers without naming the setting."""
    from peft_ser.backbones import BACKBONES, BackboneError

    folder = Path(source)
    if source in BACKBONES or not folder.is_dir():
        return
    if (folder / "config.json").is_file() or (folder / "model.bin").is_file():
        return
    hint = (
        " (it is a peft-ser model: give the backbone it was trained on)"
        if (folder / "peft_ser_config.json").is_file()
        else ""
    )
    raise BackboneError(
        f"backbone {source!r}: the folder holds no model (no config.json or model.bin){hint}; "
        "give a registry name, a hub id (org/name), a checkpoint folder or ct2:<dir>"
    )


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
    bucketing: bool = Field(
        False,
        description="batch clips of similar length, mixed in labels: less padding, but it "
        "measured about 1 UAR point below random batches where length follows the label "
        "(docs/training.md); random batches by default",
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


class AugmentConfig(StrictModel):
    """Training-only waveform augmentation (the paper used audiomentations' equivalents)."""

    enabled: bool = True
    noise_p: float = Field(0.5, ge=0, le=1, description="probability of additive Gaussian noise")
    snr_db: tuple[float, float] = Field((10.0, 30.0), description="SNR range of the noise (dB)")
    time_mask_p: float = Field(0.5, ge=0, le=1, description="probability of one time mask")
    time_mask_fraction: tuple[float, float] = Field(
        (0.10, 0.15), description="masked share of the clip, drawn uniformly from this range"
    )

    @model_validator(mode="after")
    def _ordered_ranges(self) -> AugmentConfig:
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db: low {self.snr_db[0]} exceeds high {self.snr_db[1]}")
        low, high = self.time_mask_fraction
        if not 0 <= low <= high < 1:
            raise ValueError(f"time_mask_fraction: need 0 <= low <= high < 1, got {low}, {high}")
        return self


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
    schedule: Literal["plateau", "cosine"] = Field(
        "plateau",
        description="plateau: halve the rate when dev loss stalls (the paper); cosine: "
        "decay from lr to min_lr over the epochs after warmup_epochs, whatever dev does",
    )
    warmup_epochs: int = Field(0, ge=0, description="cosine: epochs of linear warmup first")
    select: Literal["best_dev", "last"] = Field(
        "best_dev", description="the epoch tested: the best dev score (the paper) or the last"
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
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; None = off")
    max_nonfinite_steps: int = Field(
        3,
        ge=0,
        description="steps with a non-finite loss or gradient are not applied; a fold with "
        "more than this many stops with an error",
    )

    @model_validator(mode="after")
    def _warmup_within_the_run(self) -> OptimConfig:
        """A cosine schedule whose warmup fills the run never decays."""
        if self.schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warmup_epochs {self.warmup_epochs}: must be below epochs ({self.epochs}), so "
                "that the cosine decay has epochs left"
            )
        return self


class RunConfig(StrictModel):
    """One training run: a model, a corpus with its folds, and how to train."""

    model: ModelConfig = Field(default_factory=lambda: ModelConfig.model_validate({}))
    data: DataConfig
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig.model_validate({}))
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig.model_validate({}))
    output_dir: Path = Field(Path("runs/run"), description="the run directory")
    seed: int = Field(0, ge=0, lt=2**32, description="numpy takes seeds below 2**32")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it, else fp16 on GPU, no on CPU; bf16 also "
        "runs on CPUs (fastest where they have AVX512-BF16 or AMX)",
    )
    feature_cache: Literal["auto", "on", "off"] = Field(
        "auto",
        description="keep the frozen backbone's hidden states in memory after the first pass; "
        "auto = on for method frozen. Training on cached states skips waveform augmentation",
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


class ConfigError(UserError, ValueError):
    """A configuration that failed validation; the message names each bad key."""
