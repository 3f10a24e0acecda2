"""peft-ser: parameter-efficient fine-tuning of speech encoders for emotion recognition."""

from __future__ import annotations

__version__ = "0.1.0"

EMOTIONS: dict[int, str] = {0: "Neutral", 1: "Angry", 2: "Sad", 3: "Happy"}
