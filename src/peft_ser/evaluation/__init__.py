"""Scoring models on utterances: metrics, the one scoring path (`objectives`), results files,
`evaluate` and cross-corpus tests over runs, saved models and zoo models (`sources`)."""

from peft_ser.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
