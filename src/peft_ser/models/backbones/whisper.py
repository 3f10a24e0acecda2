"""Whisper encoders without 30-second padding.

Whisper was trained on 30-s windows (3000 log-mel frames, 1500 encoder positions). Emotion clips
last 2–6 s, so encoding the full window wastes 5–9× compute on padding. In ``crop`` mode this module
computes log-mel features in torch on the model's device for only as many frames as the batch's
longest clip, slices the positional embeddings to that length and masks padded frames out of
attention. Three details keep every utterance's answer independent of what it is batched with:

* each clip's STFT frames are centred on the clip itself: its own samples are reflected at both of
  its ends, as transformers' ``WhisperFeatureExtractor`` does for a clip given alone, whatever
  the batch holds beyond the clip's end (so a lone clip's log-mel equals the extractor's on every
  frame, the last one included);
* the log-mel clamp at ``max - 8`` uses the maximum over the clip's own valid frames;
* the convolutional front end sees zeros beyond the clip's frames at both convolutions.

``pad30`` mode reproduces Whisper's training condition (zero padding to 30 s, normalisation over
the whole window, no attention mask) at full cost; pooling still uses the clip's frames only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import WhisperConfig
from transformers.audio_utils import mel_filter_bank
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from peft_ser.models.backbones.base import Backbone, additive_key_mask, frame_mask

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE


def mel_frame_lengths(sample_lengths: torch.Tensor) -> torch.Tensor:
    """Log-mel frames a clip of this many samples yields (Whisper drops the last STFT frame)."""
    return sample_lengths // HOP_LENGTH


def encoder_frame_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
    """Encoder positions after the stride-2 convolution."""
    return (mel_lengths - 1) // 2 + 1


class LogMel(nn.Module):
    """Whisper's log-mel front end, in torch, normalised per utterance over its valid frames.

    The filter bank and window are kept in float32 whatever dtype the model is cast to, and are
    not module buffers for that reason: the front end is cheap, and its precision is what makes a
    clip's features agree with Whisper's feature extractor.
    """

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.filters = torch.tensor(filters.T, dtype=torch.float32)
        self.window = torch.hann_window(N_FFT)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` zero-padded samples, ``lengths`` in samples, to ``[B, n_mels, F]``.

        Each clip gets `mel_frame_lengths` frames; frames beyond them are zero.
        """
        mel_lengths = mel_frame_lengths(lengths)
        # A tensor, not an int: a traced graph (ONNX export) then sizes its frames by the input.
        num_frames = mel_lengths.max()
        frames_source = centred_frame_source(waveforms.float(), lengths, num_frames)
        power = self.power_spectrum(frames_source)
        log_spec = torch.clamp(self.filters.to(waveforms.device) @ power, min=1e-10).log10()
        valid = frame_mask(mel_lengths, num_frames).unsqueeze(1)
        peak = log_spec.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
        log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        return log_spec.masked_fill(~valid, 0.0)

    def power_spectrum(self, frames_source: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + N_FFT // 2, F]`` power of the Hann-windowed STFT frames of the samples."""
        stft = torch.stft(
            frames_source,
            N_FFT,
            HOP_LENGTH,
            window=self.window.to(frames_source.device),
            center=False,
            return_complex=True,
        )
        return stft.abs().pow(2)


def centred_frame_source(
    waveforms: torch.Tensor, lengths: torch.Tensor, num_frames: int | torch.Tensor
) -> torch.Tensor:
    """The samples ``num_frames`` centred STFT frames read, each clip reflected at its own ends.

    Frame ``f`` is centred on sample ``f * HOP_LENGTH``, so it reads half a window before the
    clip's start and, for the last frames, past its end. A centred STFT of the clip alone
    (``torch.stft(center=True)``, numpy's ``reflect`` padding in transformers) mirrors the clip's
    own samples there; in a zero-padded batch, a shorter clip would read zeros or the next
    clip's padding instead. Gathering every clip's samples through its own reflection keeps each
    clip's frames those of the clip alone. ``lengths`` are sample counts; returns
    ``[B, (num_frames - 1) * HOP_LENGTH + N_FFT]`` for ``torch.stft(center=False)``.
    """
    span = (num_frames - 1) * HOP_LENGTH + N_FFT
    positions = torch.arange(span, device=waveforms.device) - N_FFT // 2  # type: ignore[arg-type]
    index = reflected_index(positions.unsqueeze(0), lengths.to(waveforms.device).unsqueeze(1))
    return torch.gather(waveforms, 1, index)


def reflected_index(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Where position ``p`` of a clip of ``n`` samples lies after reflection at both ends.

    The reflection excludes the edge sample (``x[-k] = x[k]``, ``x[n-1+k] = x[n-1-k]``) and
    repeats as often as needed, so the extension is periodic with period ``2 (n - 1)``: numpy's
    ``reflect`` mode, also for pads longer than the clip. An empty clip reads its first sample
    (its frames are masked anyway).
    """
    lengths = lengths.clamp(min=1)
    period = 2 * (lengths - 1)
    folded = positions.abs() % period.clamp(min=1)
    return torch.where(folded < lengths, folded, period - folded)


class WhisperBackbone(Backbone):
    """The encoder half of Whisper, run on the clip's own frames (``crop``) or on 30-s windows."""

    family = "whisper"
    lora_targets = ("fc1", "fc2")

    def __init__(self, encoder: WhisperEncoder, window: str = "crop") -> None:
        config = encoder.config
        super().__init__(encoder, encoder.layers, config.d_model)
        self.window = window
        self.log_mel = LogMel(config.num_mel_bins)

    @classmethod
    def from_config(cls, config: WhisperConfig, window: str = "crop") -> WhisperBackbone:
        return cls(WhisperEncoder(_with_attention(config)), window)

    @classmethod
    def from_pretrained(cls, source: str, window: str = "crop") -> WhisperBackbone:
        from transformers import WhisperModel

        model = WhisperModel.from_pretrained(source, attn_implementation="sdpa")
        return cls(model.get_encoder(), window)

    @property
    def max_samples(self) -> int:
        return 2 * self.model.config.max_source_positions * HOP_LENGTH

    def embed(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if int(lengths.max()) > self.max_samples:
            raise ValueError(
                f"Whisper encodes at most {self.max_samples / SAMPLE_RATE:.0f} s per clip; got "
                f"{int(lengths.max()) / SAMPLE_RATE:.1f} s. Split long recordings into windows "
                "(peft_ser.predict does this with window/hop settings)."
            )
        mel_lengths = mel_frame_lengths(lengths)
        if self.window == "pad30":
            hidden = self._embed_window(waveforms, lengths)
        else:
            hidden = self._convolve(self.log_mel(waveforms, lengths), mel_lengths)
        return hidden, encoder_frame_lengths(mel_lengths)

    def frame_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """Every clip's frames, or under ``pad30`` the whole window's: the layers then compute
        the same frames for every clip, so a batch has nothing to gain from groups."""
        if self.window == "pad30":
            lengths = torch.full_like(lengths, WINDOW_SAMPLES)
        return encoder_frame_lengths(mel_frame_lengths(lengths))

    def _embed_window(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Whisper's training condition: every clip zero-padded to the full 30-s window."""
        padded = F.pad(waveforms, (0, WINDOW_SAMPLES - waveforms.shape[1]))
        padded = padded * frame_mask(lengths, WINDOW_SAMPLES)
        window_lengths = torch.full_like(lengths, WINDOW_SAMPLES)
        return self._convolve(
            self.log_mel(padded, window_lengths), mel_frame_lengths(window_lengths)
        )

    def _convolve(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """The two convolutions, with zeros beyond each clip's mel frames, plus positions."""
        encoder = self.model
        hidden = F.gelu(encoder.conv1(mel.to(encoder.conv1.weight.dtype)))
        hidden = hidden * frame_mask(mel_lengths, hidden.shape[2]).unsqueeze(1)
        hidden = F.gelu(encoder.conv2(hidden)).transpose(1, 2)
        hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
        return F.dropout(hidden, p=encoder.dropout, training=self.training)

    def run_layer(
        self, index: int, hidden: torch.Tensor, valid: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        mask = None if self.window == "pad30" else additive_key_mask(valid, hidden.dtype)
        return self.layers[index](hidden, attention_mask=mask), carry

    def finalize(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return self.model.layer_norm(last_hidden)

    def ffn_output(self, layer: Any) -> nn.Module:
        return layer.fc2

    def post_attention(self, layer: Any) -> nn.Module:
        return layer.final_layer_norm


def _with_attention(config: WhisperConfig) -> WhisperConfig:
    """SDPA attention, which takes our additive masks and runs fused kernels where available."""
    config._attn_implementation = "sdpa"
    return config
