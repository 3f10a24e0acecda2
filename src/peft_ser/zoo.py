"""Released PEFT-SER emotion models by name: download cache, checksums, checkpoint conversion.

The PEFT-SER authors released six LoRA (rank 16) models with the convolutional head, trained on
pooled IEMOCAP, MSP-IMPROV, MSP-Podcast and CREMA-D with 10-s windows for four classes (Neutral,
Angry, Sad, Happy). Each is two PyTorch files: the head (``…_conv_output.pt``) and the LoRA
matrices (``…_conv_output_lora.pt``), in the key layout of the authors' own model classes. This
module knows where the files are, caches them atomically, checks their sha256 once pinned, and
renames their keys into this package's trainable-weight names (see ``docs/zoo.md``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import PAPER_LABELS, ModelConfig
from .errors import UserError, suggest

if TYPE_CHECKING:  # torch is imported where weights are read, so the name table loads fast
    import torch

logger = logging.getLogger(__name__)

CACHE_ENV = "PEFT_SER_CACHE"
DEFAULT_CACHE = Path("~/.cache/peft-ser")
DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20
_DROPBOX = "https://www.dropbox.com/scl/fi/"


class ZooError(UserError, RuntimeError):
    """A released model that cannot be fetched, verified or converted; says what to do."""


@dataclass(frozen=True)
class ZooFile:
    """One released weight file: where it is published and the sha256 it must have.

    ``sha256`` is None until a downloaded copy has been checked against the authors' release;
    until then the hash seen is logged so it can be pinned here.
    """

    url: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("?", 1)[0]


@dataclass(frozen=True)
class ZooEntry:
    """A released model: our backbone name, its layout facts and its files (head, then LoRA)."""

    name: str
    backbone: str  # name in peft_ser.backbones.registry
    family: str  # transformers model type: selects the LoRA key layout in conversion
    num_layers: int  # encoder layers L; the head mixes L+1 hidden states
    files: tuple[ZooFile, ...]
    lora_rank: int = 16

    @property
    def config(self) -> ModelConfig:
        """A fresh ModelConfig (safe to modify) that builds the architecture the files fit.

        LoRA alpha 1 gives loralib's default scaling 1/rank; ``crop`` matches the authors'
        Whisper front end, which encoded only the clip's frames.
        """
        return ModelConfig.model_validate(
            {
                "backbone": self.backbone,
                "method": "lora",
                "lora_rank": self.lora_rank,
                "lora_alpha": 1.0,
                "lora_dropout": 0.0,
                "head_dim": 256,
                "labels": list(PAPER_LABELS),
                "whisper_window": "crop",
            }
        )


def _files(classifier: str, lora: str) -> tuple[ZooFile, ZooFile]:
    return ZooFile(_DROPBOX + classifier), ZooFile(_DROPBOX + lora)


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry(
            "whisper-tiny-lora-16-conv",
            "whisper-tiny",
            "whisper",
            4,
            _files(
                "ld0pymoj8iiiaen9qgpom/whisper_tiny_lora_16_conv_output.pt"
                "?rlkey=7sum57se4fmdqwhvte7eiexkc&dl=1",
                "v9t8eyvsq882a0ulht80h/whisper_tiny_lora_16_conv_output_lora.pt"
                "?rlkey=1c3uzxifkm7788q61lnmkrevt&dl=1",
            ),
        ),
        ZooEntry(
            "whisper-base-lora-16-conv",
            "whisper-base",
            "whisper",
            6,
            _files(
                "sq6w9vfrlyd0t3y5xwnnm/whisper_base_lora_16_conv_output.pt"
                "?rlkey=xtot2gi9au83xi4f3kxzwjac9&dl=1",
                "46bb08ek2zbt32fmqrg21/whisper_base_lora_16_conv_output_lora.pt"
                "?rlkey=452zdg99to7ntol3rjrtgccog&dl=1",
            ),
        ),
        ZooEntry(
            "whisper-small-lora-16-conv",
            "whisper-small",
            "whisper",
            12,
            _files(
                "q99rdffwnun4f62ksr6wl/whisper_small_lora_16_conv_output.pt"
                "?rlkey=1jb66t26cgh18wi4zd8yhi27s&dl=1",
                "deq7cyylglk9ztf5gqr7i/whisper_small_lora_16_conv_output_lora.pt"
                "?rlkey=98ub4alelsyw5gddw6k1nwqn7&dl=1",
            ),
        ),
        ZooEntry(
            "wavlm-plus-lora-16-conv",
            "wavlm-base-plus",
            "wavlm",
            12,
            _files(
                "zlhdeoxzweksxt59d7jss/wavlm_plus_lora_16_conv_output.pt"
                "?rlkey=5trov7d6ki48bwcl25e63ffko&dl=1",
                "19sb7huz9cknlybumjnfv/wavlm_plus_lora_16_conv_output_lora.pt"
                "?rlkey=8dlc3vei5cdir24wv1h1av187&dl=1",
            ),
        ),
        ZooEntry(
            "wavlm-large-lora-16-conv",
            "wavlm-large",
            "wavlm",
            24,
            _files(
                "1br3nrrnfmn0pd3kpmp5s/wavlm_large_lora_16_conv_output.pt"
                "?rlkey=jnghxe6mcz9cw78kai09k4yex&dl=1",
                "4ybo1iu62t178albsbpcv/wavlm_large_lora_16_conv_output_lora.pt"
                "?rlkey=bjpjv0s66hl8z3bngzgtfzqds&dl=1",
            ),
        ),
        ZooEntry(
            "mms-lora-16-conv",
            "mms-300m",
            "wav2vec2",
            24,
            _files(
                "mptq3vpu5b71o9azqvw8d/mms-300m_lora_16_conv_output.pt"
                "?rlkey=sj09sgy8sri0faz2eb194orwf&dl=1",
                "z6uib8ivqlfty7wla8wjq/mms-300m_lora_16_conv_output_lora.pt"
                "?rlkey=nc46hvby59o1on8hiomitc916&dl=1",
            ),
        ),
    ]
}


def zoo_entry(name: str) -> ZooEntry:
    """The released model called ``name``; an unknown name lists the known ones."""
    if name not in ZOO:
        raise ZooError(
            f"unknown released model {name!r}{suggest(name, ZOO)}; known: {', '.join(sorted(ZOO))}"
        )
    return ZOO[name]


# --- download cache -----------------------------------------------------------------------------


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where released files live: ``cache_dir``, else $PEFT_SER_CACHE, else ~/.cache/peft-ser."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser()


def cached_path(name: str, file: ZooFile, cache_dir: str | Path | None = None) -> Path:
    """The exact path a released file is expected at (place it there by hand when offline)."""
    return cache_root(cache_dir) / "zoo" / name / file.filename


def fetch_url(url: str, destination: Path) -> None:
    """Stream ``url`` into ``destination`` (an open-for-writing path the caller owns)."""
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        destination.open("wb") as out,
    ):
        while chunk := response.read(_CHUNK):
            out.write(chunk)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, file: ZooFile, shown_as: Path) -> None:
    """Refuse a pinned file whose hash differs; report the hash of an unpinned one for pinning."""
    seen = sha256_of(path)
    if file.sha256 is None:
        logger.warning(
            "%s has sha256 %s, which is not pinned yet: once this file is confirmed to be the "
            "authors' release, pin it as ZooFile(sha256=...) in peft_ser/zoo.py",
            shown_as,
            seen,
        )
    elif seen != file.sha256:
        raise ZooError(
            f"{shown_as}: sha256 {seen} does not match the pinned {file.sha256}; the file is "
            f"corrupt or not the released one. Delete it and fetch {file.url} again"
        )


def _download_one(file: ZooFile, target: Path) -> None:
    """Fetch into a temporary file beside ``target`` and rename it only once it is complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(handle)
    partial = Path(temporary)
    try:
        fetch_url(file.url, partial)
        _verify(partial, file, shown_as=target)
        os.replace(partial, target)
    except OSError as error:
        raise ZooError(
            f"could not download {file.url} ({error}). Without network access, fetch that URL "
            f"on a connected machine and place the file at {target}"
        ) from error
    finally:
        partial.unlink(missing_ok=True)


def download(name: str, cache_dir: str | Path | None = None) -> list[Path]:
    """The released model's files in the cache (head first, then LoRA), fetching missing ones."""
    entry = zoo_entry(name)
    paths = []
    for file in entry.files:
        target = cached_path(name, file, cache_dir)
        if target.is_file():
            _verify(target, file, shown_as=target)
        else:
            _download_one(file, target)
        paths.append(target)
    return paths


# --- conversion of the original layout ----------------------------------------------------------


def load_original_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A released ``.pt`` state dict, read with ``weights_only=True`` (never unpickles code)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ZooError(f"{path}: refused, not a plain tensor state dict ({error})") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ZooError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return dict(state)


_HEAD_RULES = (
    (re.compile(r"^model_seq\.([036])\.(weight|bias)$"), r"head.convs.\1.\2"),
    (re.compile(r"^out_layer\.([02])\.(weight|bias)$"), r"head.classifier.\1.\2"),
)
_LAYER_WEIGHT_KEYS = ("layer_weights", "weights")
_WHISPER_LORA = (
    re.compile(r"^encoder\.layers\.(\d+)\.(fc1|fc2)\.lora_([AB])$"),
    r"backbone.model.layers.\1.\2.lora_\3.default.weight",
)
_SSL_LORA = (
    re.compile(
        r"^encoder\.layers\.(\d+)\.feed_forward\.(intermediate_dense|output_dense)\.lora_([AB])$"
    ),
    r"backbone.model.encoder.layers.\1.feed_forward.\2.lora_\3.default.weight",
)
_LORA_RULES = {
    "whisper": _WHISPER_LORA,
    "ssl": _SSL_LORA,
    "wav2vec2": _SSL_LORA,
    "wavlm": _SSL_LORA,
    "hubert": _SSL_LORA,
}
# Keys the original classes saved that play no part in their forward pass: Whisper's frozen copy
# of the positional table, and a layer norm the MMS class built but never applied.
_UNUSED = {"embed_positions", "layer_norm.weight", "layer_norm.bias"}


def _strip_prefixes(key: str) -> str:
    """Drop DataParallel's ``module.`` and the original wrappers' ``backbone_model.``."""
    while key.startswith("module."):
        key = key.removeprefix("module.")
    return key.removeprefix("backbone_model.")


def _rename(key: str, lora_rule: tuple[re.Pattern[str], str]) -> str | None:
    for pattern, replacement in (*_HEAD_RULES, lora_rule):
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def _encoder_layers(converted: Mapping[str, torch.Tensor], num_layers: int | None) -> int | None:
    """L from the caller, checked against the LoRA layer indices; else inferred from them."""
    indices = {
        int(match.group(1))
        for key in converted
        if (match := re.search(r"\.layers\.(\d+)\.", key)) and key.startswith("backbone.")
    }
    if num_layers is not None and indices and max(indices) >= num_layers:
        raise ZooError(f"LoRA weights for layer {max(indices)}, but the encoder has {num_layers}")
    if num_layers is None and indices:
        return max(indices) + 1
    return num_layers


def _layer_weights(weights: torch.Tensor, num_layers: int | None) -> torch.Tensor:
    """The layer-mixing logits over L+1 hidden states (input embeddings first).

    The released ``conv_output`` models mix all L+1 states, so their logits pass unchanged. The
    authors' earlier models had L logits over the transformer layers only; prepending ``-inf``
    for the embeddings gives them softmax weight exactly 0 and leaves the other L weights exactly
    as the original softmax over L, so the mixture is reproduced bit for bit.
    """
    if num_layers is None:
        raise ZooError(
            "cannot tell whether the layer weights include the input embeddings: pass num_layers "
            "or convert the head together with its LoRA file"
        )
    if weights.ndim != 1 or len(weights) not in (num_layers, num_layers + 1):
        raise ZooError(
            f"layer weights of shape {tuple(weights.shape)} fit neither L={num_layers} nor "
            f"L+1={num_layers + 1} hidden states"
        )
    if len(weights) == num_layers + 1:
        return weights
    import torch

    return torch.cat([weights.new_full((1,), float("-inf")), weights])


def convert_original_checkpoint(
    state: Mapping[str, torch.Tensor], backbone_family: str, num_layers: int | None = None
) -> dict[str, torch.Tensor]:
    """Rename an original PEFT-SER state dict (head and/or LoRA) into this package's names.

    ``backbone_family`` is ``whisper`` or a wav2vec2-family model type (``wav2vec2``, ``wavlm``,
    ``hubert``; ``ssl`` too). ``num_layers`` (encoder layers L) is needed to place the layer
    weights when no LoRA key in ``state`` reveals it. Keys that match no known layout raise
    ``ZooError`` listing them, so a checkpoint is never half-loaded silently.
    """
    if backbone_family not in _LORA_RULES:
        raise ZooError(f"unknown backbone family {backbone_family!r}; known: {sorted(_LORA_RULES)}")
    converted: dict[str, torch.Tensor] = {}
    layer_weights: list[torch.Tensor] = []
    unknown: list[str] = []
    for original_key, value in state.items():
        key = _strip_prefixes(original_key)
        if key in _LAYER_WEIGHT_KEYS:
            layer_weights.append(value)
        elif (renamed := _rename(key, _LORA_RULES[backbone_family])) is not None:
            converted[renamed] = value
        elif key not in _UNUSED:
            unknown.append(original_key)
    if unknown:
        raise ZooError(f"keys of no known PEFT-SER layout ({backbone_family}): {sorted(unknown)}")
    if len(layer_weights) > 1:
        raise ZooError(f"both of {_LAYER_WEIGHT_KEYS} are present; expected one")
    if layer_weights:
        layers = _encoder_layers(converted, num_layers)
        converted["head.layer_weights"] = _layer_weights(layer_weights[0], layers)
    return converted


def load_zoo_state(name: str, cache_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """A released model's head and LoRA weights, downloaded if needed, in this package's names.

    Load the result with ``model.load_state_dict(state, strict=False)`` into
    ``build_model(ZOO[name].config)``; every returned key must be consumed.
    """
    entry = zoo_entry(name)
    merged: dict[str, torch.Tensor] = {}
    for path in download(name, cache_dir):
        part = load_original_file(path)
        if overlap := merged.keys() & part.keys():
            raise ZooError(f"{path}: keys already present in another file: {sorted(overlap)}")
        merged |= part
    return convert_original_checkpoint(merged, entry.family, entry.num_layers)
