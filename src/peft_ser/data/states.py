"""A frozen backbone's hidden states (or, under ``model.tune_layers``, those below the tuned
layers), computed once per clip and kept: which states a clip needs (`states_crop`), the cache
that keeps them (`FeatureCache`) and batches of them (`stack_states`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from peft_ser.data.cache import MemoryFirst
from peft_ser.data.dataset import expected_length
from peft_ser.data.feature_store import STATES, FeatureStore
from peft_ser.data.manifest import Utterance


def states_crop(utterance: Utterance, max_samples: int | None) -> int | None:
    """The crop that shapes a clip's states: ``max_samples`` where the clip is longer (with a
    1-ms margin for the manifest's rounding of its duration), else None, the whole clip; so the
    states of a clip shorter than the training crop serve its training and evaluation alike."""
    if max_samples is None or expected_length(utterance, None) + 16 <= max_samples:
        return None
    return max_samples


class FeatureCache:
    """Hidden states of a frozen backbone, one ``[L+1, F, D]`` tensor per utterance and crop
    (or the ``[k+1, F, D]`` below tuned layers).

    Entries are keyed by utterance key and crop (`states_crop`), since a cropped clip and the
    whole clip have different states. States are kept on the CPU in the dtype `bind` names:
    float16 for a frozen backbone (half the memory; the head computes in float32), float32 for
    the states below tuned layers. ``fingerprint`` identifies the backbone, audio front end
    and precision the states came from: `bind` to a different one (or dtype) empties the cache.

    With a ``store`` (`FeatureStore`), states also persist on disk, keyed by the audio's
    content: `recall` reads what another fold, run or process stored, and `put` stores. Memory
    then disk is `peft_ser.data.cache.MemoryFirst`, with no memory budget: every state of the
    run's splits is needed every epoch.
    """

    def __init__(self, store: FeatureStore | None = None) -> None:
        self.fingerprint: str | None = None
        self.dtype = torch.float16
        self._states = MemoryFirst[tuple[str, int | None], torch.Tensor, FeatureStore](
            STATES.size, store
        )

    @property
    def store(self) -> FeatureStore | None:
        """The persistent store, until it refuses a write (`without_store`)."""
        return self._states.disk

    def bind(self, fingerprint: str, dtype: torch.dtype = torch.float16) -> None:
        if (fingerprint, dtype) != (self.fingerprint, self.dtype):
            self._states.clear()
            self.fingerprint, self.dtype = fingerprint, dtype
        if self.store is not None:
            self._states.disk = self.store.holding(str(dtype).removeprefix("torch."))

    def __contains__(self, entry: tuple[str, int | None]) -> bool:
        return entry in self._states

    def __len__(self) -> int:
        return len(self._states)

    def put(
        self, key: str, crop: int | None, states: torch.Tensor, content: str | None = None
    ) -> None:
        """Keep ``states``; with a store and the audio's ``content`` digest, store them too."""
        kept = states.detach().to("cpu", self.dtype)
        self._states.keep((key, crop), kept)
        if self.store is not None and content is not None and self.fingerprint is not None:
            self._states.write(self.store.entry(self.fingerprint, content, crop), kept)

    def without_store(self, error: OSError) -> None:
        """Go on in memory alone after the store refused a write or a deletion."""
        self._states.without_disk(error)

    def recall(self, key: str, crop: int | None, content: str) -> bool:
        """Whether the states are at hand: in memory, or read into memory from the store."""
        if self.store is None or self.fingerprint is None:
            return (key, crop) in self._states
        entry = self.store.entry(self.fingerprint, content, crop)
        return self._states.recall((key, crop), entry) is not None

    def get(self, key: str, crop: int | None) -> torch.Tensor:
        return self._states[(key, crop)]

    def nbytes(self) -> int:
        return self._states.nbytes


@dataclass
class FeatureBatch:
    """Padded cached states ``[L+1, B, F, D]`` with frame lengths, labels, dataset indices."""

    hidden: torch.Tensor
    frame_lengths: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def stack_states(
    states: Sequence[torch.Tensor], labels: Sequence[int], indices: Sequence[int]
) -> FeatureBatch:
    """Zero-pad per-utterance states along frames and stack them on a batch axis (float32)."""
    layers, dim = states[0].shape[0], states[0].shape[2]
    longest = max(s.shape[1] for s in states)
    hidden = torch.zeros(layers, len(states), longest, dim)
    for row, state in enumerate(states):
        hidden[:, row, : state.shape[1]].copy_(state)  # widens stored half precision in place
    return FeatureBatch(
        hidden=hidden,
        frame_lengths=torch.tensor([s.shape[1] for s in states]),
        labels=torch.tensor(list(labels), dtype=torch.long),
        indices=torch.tensor(list(indices), dtype=torch.long),
    )
