"""What every backbone family shares: the layer loop, learnable prompts and the output record.

A family subclass supplies three pieces: the front end (waveform to the first layer's input and the
number of valid frames), how one encoder layer runs with a validity mask, and the final touch on the
last hidden state. The loop that collects every layer's output, and the embedding prompts that some
PEFT methods prepend to each layer's input, live here once for all families.

The loop runs in two parts: the states below the first tuned layer (`states_below`: the input
embeddings and the outputs of the layers under it) and the rest from those states
(`from_states`). With ``model.tune_layers`` (`adapt_top`), the part below is a fixed feature
extractor: it runs in eval mode (no dropout) and without gradients whatever mode the model is
in, so a clip's states below are one function of its samples in training and evaluation alike,
and a cache of them (`peft_ser.training.batches`) gives the numbers the full forward gives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft_ser.data.sampler import length_groups
from peft_ser.utils.settings import ConfigError


@dataclass
class BackboneOutput:
    """All hidden states, input embeddings first: ``[L+1, B, F, D]``, and valid frames per item."""

    hidden_states: torch.Tensor
    frame_lengths: torch.Tensor


def frame_mask(frame_lengths: torch.Tensor, num_frames: int | torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, F]`` mask, true on the frames that belong to the utterance."""
    # A 0-d tensor count keeps the size an operator of a traced graph (ONNX export).
    positions = torch.arange(num_frames, device=frame_lengths.device)  # type: ignore[arg-type]
    return positions.unsqueeze(0) < frame_lengths.unsqueeze(1)


def additive_key_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 1, 1, F]`` additive attention mask that hides padded keys from every query."""
    blocked = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
    blocked = blocked.masked_fill(~valid, torch.finfo(dtype).min)
    return blocked[:, None, None, :]


class Backbone(nn.Module, ABC):
    """A frozen-by-default speech encoder that returns every layer's hidden states.

    Attributes a PEFT method relies on:
    ``model`` (the transformers module whose weights are pre-trained), ``layers`` (its encoder
    layers), ``hidden_size``, ``lora_targets`` (default LoRA module names: the two feed-forward
    projections), ``ffn_output(layer)`` (the module whose output is the feed-forward contribution)
    and ``post_attention(layer)`` (the module whose input is the residual stream after attention).
    ``tuned_layers`` are the layers a method adapts: every layer, or the top ones (`adapt_top`).
    """

    family: str = ""
    lora_targets: tuple[str, ...] = ()
    # transformers modules: their sub-modules are reached by attribute, which typing cannot follow.
    model: Any
    layers: Any

    def __init__(self, model: nn.Module, layers: nn.ModuleList, hidden_size: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.hidden_size = hidden_size
        # Prompts by layer index ("0", "1", ...): the names a list of every layer's gave them.
        self.prompts: nn.ParameterDict | None = None
        self.tuned_from: int | None = None
        """The first adapted layer under ``model.tune_layers`` (None: every layer, and the front
        end runs in the model's mode, as it always has)."""
        self.group_padding: float | None = None
        """In a training step (train mode, gradients on), a batch runs through the encoder in
        groups of similar length, each padded at most this share of its frames
        (`length_groups`), and the groups' states are put back in the batch's order, padded
        with zeros to its longest clip. Every family is padding-invariant, so each clip's
        states are the ones the whole batch gives, up to float rounding, while random batches
        no longer spend a third of their compute on padding; the head still sees the whole
        batch, so its dropout draws what it would. None: the batch runs whole. Set by training
        (``data.group_padding``); evaluation batches are sorted by length and run whole."""

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def tuned_layers(self) -> range:
        """Indices of the layers a PEFT method adapts."""
        return range(self.tuned_from or 0, self.num_layers)

    @property
    def layers_pattern(self) -> str:
        """The name of the layer list in ``model``'s module names (peft's ``layers_pattern``:
        ``layers`` in ``layers.3.fc1`` and ``encoder.layers.3.feed_forward``)."""
        path = next(name for name, module in self.model.named_modules() if module is self.layers)
        return path.rpartition(".")[2]

    def adapt_top(self, count: int) -> None:
        """Let PEFT methods adapt only the top ``count`` layers; the front end and the layers
        below run as a fixed feature extractor (see the module's docstring)."""
        if not 1 <= count <= self.num_layers:
            raise ConfigError(
                f"model.tune_layers {count}: the backbone has {self.num_layers} encoder layers; "
                f"give 1 to {self.num_layers}"
            )
        self.tuned_from = self.num_layers - count

    def trained_outside_tuned_layers(self) -> list[str]:
        """Names of trainable parameters outside the tuned layers and their prompts."""
        inside = {id(p) for i in self.tuned_layers for p in self.layers[i].parameters()}
        if self.prompts is not None:
            inside |= {id(p) for key, p in self.prompts.items() if int(key) in self.tuned_layers}
        return [
            name for name, p in self.named_parameters() if p.requires_grad and id(p) not in inside
        ]

    def fixed_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The weights and buffers the states below the first tuned layer depend on: all but
        those of the tuned layers and of the prompts (what a cache of those states is bound
        to; training changes none of them)."""
        above = {
            id(tensor)
            for index in self.tuned_layers
            for tensor in self.layers[index].state_dict(keep_vars=True).values()
        }
        if self.prompts is not None:
            above |= {id(p) for p in self.prompts.parameters()}
        for name, tensor in self.state_dict(keep_vars=True).items():
            if id(tensor) not in above:
                yield name, tensor.detach()

    @abstractmethod
    def embed(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Front end: ``[B, T]`` samples to the first layer's input ``[B, F, D]`` + frame counts."""

    @abstractmethod
    def frame_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """The frames the layers compute for clips of ``lengths`` samples, padding aside: what
        a training batch of waveforms is grouped by (the same numbers as the frame lengths of
        its cached states, so that both paths group a batch alike)."""

    @abstractmethod
    def run_layer(
        self, index: int, hidden: torch.Tensor, valid: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        """One encoder layer, padded frames masked; ``carry`` passes state between layers. The
        first layer run gets None, and it may be any layer (`from_states`): a layer given None
        computes what it needs."""

    def finalize(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The family's last touch on the final layer's output (e.g. a closing layer norm)."""
        return last_hidden

    @abstractmethod
    def ffn_output(self, layer: Any) -> nn.Module:
        """Module whose output is the layer's feed-forward contribution (before the residual)."""

    @abstractmethod
    def post_attention(self, layer: Any) -> nn.Module:
        """Module whose input is the residual stream right after self-attention."""

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> BackboneOutput:
        groups = self._groups(lengths, self.frame_counts)
        if groups is None:
            return self._from(*self._below(waveforms, lengths))
        return _regrouped(
            [
                self._from(*self._below(waveforms[rows, : int(lengths[rows].max())], lengths[rows]))
                for rows in groups
            ],
            groups,
        )

    def states_below(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The states ``[k+1, B, F, D]`` up to the one entering the first tuned layer ``k``
        (the input embeddings first), and valid frames per item."""
        states, frame_lengths = self._below(waveforms, lengths)
        return torch.stack(states), frame_lengths

    def from_states(self, states: torch.Tensor, frame_lengths: torch.Tensor) -> BackboneOutput:
        """All hidden states, from the `states_below` of a batch: layers ``k`` to ``L`` run."""
        groups = self._groups(frame_lengths, lambda frames: frames)
        if groups is None:
            return self._from(list(states.unbind(0)), frame_lengths)
        return _regrouped(
            [
                self._from(
                    list(states[:, rows, : int(frame_lengths[rows].max())].unbind(0)),
                    frame_lengths[rows],
                )
                for rows in groups
            ],
            groups,
        )

    def _groups(
        self, lengths: torch.Tensor, frames: Callable[[torch.Tensor], torch.Tensor]
    ) -> list[torch.Tensor] | None:
        """The rows of a training batch by `group_padding` of their ``frames(lengths)``, or None
        to run it whole."""
        if self.group_padding is None or not (self.training and torch.is_grad_enabled()):
            return None
        groups = length_groups(frames(lengths).tolist(), self.group_padding)
        if len(groups) < 2:
            return None
        return [torch.tensor(rows, device=lengths.device) for rows in groups]

    def _below(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        with self._fixed_part():
            hidden, frame_lengths = self.embed(waveforms, lengths)
            valid = frame_mask(frame_lengths, hidden.shape[1])
            states = [hidden]
            carry: Any = None
            for index in range(self.tuned_from or 0):
                hidden, carry = self._run_prompted_layer(index, hidden, valid, carry)
                states.append(hidden)
        return states, frame_lengths

    def _from(self, states: list[torch.Tensor], frame_lengths: torch.Tensor) -> BackboneOutput:
        hidden = states[-1]
        valid = frame_mask(frame_lengths, hidden.shape[1])
        carry: Any = None
        for index in range(len(states) - 1, self.num_layers):
            hidden, carry = self._run_prompted_layer(index, hidden, valid, carry)
            states.append(hidden)
        states[-1] = self.finalize(states[-1])
        return BackboneOutput(torch.stack(states), frame_lengths)

    @contextmanager
    def _fixed_part(self) -> Iterator[None]:
        """Under ``model.tune_layers``: eval mode and no gradients for the part below the tuned
        layers, the model's mode restored after."""
        if self.tuned_from is None:
            yield
            return
        training = self.training
        self.train(False)
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(training)

    def _run_prompted_layer(
        self, index: int, hidden: torch.Tensor, valid: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        """Prepend this layer's prompts (always attended to), run it, and drop them again."""
        if self.prompts is None or str(index) not in self.prompts:
            return self.run_layer(index, hidden, valid, carry)
        prompt = self.prompts[str(index)].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        n_prompt = prompt.shape[1]
        prompt_valid = torch.ones(valid.shape[0], n_prompt, dtype=torch.bool, device=valid.device)
        hidden, carry = self.run_layer(
            index,
            torch.cat([prompt, hidden], dim=1),
            torch.cat([prompt_valid, valid], dim=1),
            carry,
        )
        return hidden[:, n_prompt:], carry


def _regrouped(parts: list[BackboneOutput], groups: list[torch.Tensor]) -> BackboneOutput:
    """The groups' outputs as one batch in the rows' order, states zero-padded to the longest.

    Rows are stacked in order from the padded groups: of the ways tried on a Whisper-tiny-sized
    batch, the cheapest with its backward pass (joining the groups and reordering the rows by
    index was slower, and writing into a zero tensor by index slower still)."""
    frames = max(part.hidden_states.shape[2] for part in parts)
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for part, indices in zip(parts, groups, strict=True):
        states = part.hidden_states
        if states.shape[2] < frames:
            states = F.pad(states, (0, 0, 0, frames - states.shape[2]))
        for index, state, length in zip(
            indices.tolist(), states.unbind(1), part.frame_lengths.unbind(0), strict=True
        ):
            rows[index] = (state, length)
    ordered = [rows[index] for index in range(len(rows))]
    return BackboneOutput(
        torch.stack([state for state, _ in ordered], dim=1),
        torch.stack([length for _, length in ordered]),
    )
