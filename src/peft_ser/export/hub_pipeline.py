"""The code a Hub export carries, so that transformers' own pipeline runs a peft-ser model.

``peft-ser export --format hub`` copies this file into the exported folder as
``peft_ser_pipeline.py`` and names its classes in ``config.json`` (``auto_map`` and
``custom_pipelines``), the mechanism transformers offers for models of a library of their own.
Then::

    from transformers import pipeline
    classify = pipeline("audio-classification", model="org/name", trust_remote_code=True)
    classify("clip.wav")  # [{"label": "Angry", "score": 0.71}, ...]

The model is loaded by `peft_ser.inference.loading.load_model` from the same folder or repo id
(its own checks, safetensors only), and every answer comes from
`peft_ser.inference.predict.predict`, the function behind ``peft-ser predict``: files at any
rate, arrays with their rate, long recordings in windows, answered exactly as the command
line answers them. The pipeline needs peft-ser installed; it adds no second implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline, PretrainedConfig, PreTrainedModel

from peft_ser.inference.loading import load_model
from peft_ser.inference.predict import predict
from peft_ser.models.ser_model import SERModel

SAMPLE_RATE = 16_000
"""The rate a bare array is taken to have, as transformers' audio pipelines take the feature
extractor's (peft-ser models run at 16 kHz)."""
TOP_K = 5
"""Labels answered by default, as transformers' audio-classification pipeline answers."""


class PeftSerConfig(PretrainedConfig):
    """transformers' view of a peft-ser model: its labels (peft_ser_config.json the rest)."""

    model_type = "peft-ser"


class PeftSerForAudioClassification(PreTrainedModel):
    """A peft-ser `SERModel` as transformers loads models: ``from_pretrained`` goes to
    `load_model`, so the weights are read and checked by peft-ser itself."""

    config_class = PeftSerConfig
    base_model_prefix = "ser"
    main_input_name = "input_values"

    def __init__(self, config: PeftSerConfig) -> None:
        super().__init__(config)
        self.post_init()
        self.ser: SERModel | None = None

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any
    ) -> PeftSerForAudioClassification:
        """The model in a folder or Hub repo written by ``peft-ser export --format hub``;
        transformers' loading options (revision, dtype, ...) do not apply and are ignored."""
        source = str(pretrained_model_name_or_path)
        config = kwargs.get("config")
        if not isinstance(config, PeftSerConfig):
            config = PeftSerConfig.from_pretrained(source)
        model = cls(config)
        model.ser = load_model(source, "cpu")
        return model.eval()

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor | None = None) -> Any:
        """Logits ``[B, C]`` of 16 kHz waveforms ``[B, T]`` (see `SERModel.forward`)."""
        assert self.ser is not None, "load the model with from_pretrained"
        return self.ser(input_values, lengths)


class PeftSerAudioClassificationPipeline(Pipeline):
    """``[{"label", "score"}, ...]`` for a file, an array at 16 kHz or
    ``{"raw" or "array": samples, "sampling_rate": rate}``, most probable first."""

    # Nothing for transformers to load besides the model: peft-ser prepares the audio itself.
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = False  # type: ignore[assignment]
    _load_video_processor = False  # type: ignore[assignment]
    _load_feature_extractor = False  # type: ignore[assignment]
    _load_tokenizer = False  # type: ignore[assignment]

    def _sanitize_parameters(
        self, top_k: int | None = None, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return {}, {}, ({} if top_k is None else {"top_k": top_k})

    def preprocess(self, inputs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {"audio": audio_input(inputs)}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        model = self.model
        assert isinstance(model, PeftSerForAudioClassification) and model.ser is not None
        [prediction] = predict(model_inputs["audio"], model=model.ser)
        return {"probabilities": prediction.probabilities}

    def postprocess(  # type: ignore[override]
        self, model_outputs: dict[str, Any], top_k: int = TOP_K
    ) -> list[dict[str, Any]]:
        ranked = sorted(model_outputs["probabilities"].items(), key=lambda item: -item[1])
        return [{"label": label, "score": score} for label, score in ranked[: max(top_k, 1)]]


def audio_input(inputs: Any) -> Any:
    """What `predict` takes for one pipeline input: a path as it is, an array with its rate."""
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, dict):
        samples = inputs.get("raw", inputs.get("array"))
        rate = inputs.get("sampling_rate")
        if samples is None or rate is None:
            raise ValueError(
                "an audio dict needs 'raw' (or 'array') samples and their 'sampling_rate'"
            )
        return (_array(samples), rate)
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return (_array(inputs), SAMPLE_RATE)
    raise ValueError(
        f"cannot classify {type(inputs).__name__}: give a file path, an array at "
        f"{SAMPLE_RATE} Hz, or {{'raw': samples, 'sampling_rate': rate}}"
    )


def _array(samples: Any) -> np.ndarray:
    return samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
