"""Scoring models on utterances: metrics, the one scoring path, results files, `evaluate` and
cross-corpus tests."""

from peft_ser.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
