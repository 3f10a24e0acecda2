"""The released PEFT-SER models by name: their backbone, layout facts and published files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peft_ser.data.manifest import PAPER4
from peft_ser.utils.errors import UserError, suggest

if TYPE_CHECKING:
    from peft_ser.models.config import ModelConfig

_DROPBOX = "https://www.dropbox.com/scl/fi/"


class ZooError(UserError, RuntimeError):
    """A released model that cannot be fetched, verified or converted; says what to do."""


@dataclass(frozen=True)
class ZooFile:
    """One released weight file: where it is published and the sha256 it must have.

    ``sha256`` is None until a downloaded copy has been checked against the authors' release;
    until then the hash seen is logged (once, when the file is converted) so it can be pinned.
    """

    url: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def pinned(self) -> list[str]:
        """The hashes the zoo table requires of this file: none until it is pinned."""
        return [self.sha256] if self.sha256 else []


@dataclass(frozen=True)
class ZooEntry:
    """A released model: our backbone name, its layout facts and its files (head, then LoRA)."""

    name: str
    backbone: str  # name in peft_ser.models.backbones.registry
    family: str  # transformers model type: selects the LoRA key layout in conversion
    num_layers: int  # encoder layers L of the backbone the files were trained on
    files: tuple[ZooFile, ...]
    lora_rank: int = 16

    @property
    def hub_id(self) -> str:
        """The hub id of the pre-trained backbone the released weights were trained on.

        The registries (torch, transformers) are imported here and in `config`, not with the
        table, so the zoo's names are known to the command line's help without them."""
        from peft_ser.models.backbones.registry import BACKBONES

        source = BACKBONES[self.backbone].source
        assert source is not None, f"{self.backbone} has no pre-trained checkpoint"
        return source

    @property
    def config(self) -> ModelConfig:
        """A fresh ModelConfig (safe to modify) that builds the architecture the files fit.

        LoRA alpha 1 gives loralib's default scaling 1/rank; ``crop`` matches the authors'
        Whisper front end, which encoded only the clip's frames.
        """
        from peft_ser.models.config import ModelConfig

        return ModelConfig.model_validate(
            {
                "backbone": self.backbone,
                "method": "lora",
                "lora_rank": self.lora_rank,
                "lora_alpha": 1.0,
                "lora_dropout": 0.0,
                "head_dim": 256,
                "labels": list(PAPER4),
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
