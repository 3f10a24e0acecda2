"""Evaluation batching and cropping, bf16 training on CPU, and the caches that keep epochs fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _tones import tiny_run

from peft_ser.data import LengthBucketSampler, UtteranceDataset
from peft_ser.manifest import load_prepared, select
from peft_ser.model import build_model
from peft_ser.training import train
from peft_ser.training.scoring import loader_batches, to_device


def _logits_by_index(
    model: torch.nn.Module, dataset: UtteranceDataset, sampler: LengthBucketSampler
) -> dict[int, torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        for batch in loader_batches(dataset, sampler, num_workers=0):
            batch = to_device(batch, torch.device("cpu"))
            logits = model(batch.waveforms, batch.lengths)
            out.update(zip(batch.indices.tolist(), logits, strict=True))
    return out


def test_masked_padding_makes_sorted_batches_give_each_clips_own_logits(corpus: Path) -> None:
    prepared = load_prepared(corpus)
    dataset = UtteranceDataset(select(prepared, prepared.folds[0].dev), prepared.labels)
    config = tiny_run(corpus, Path("unused")).model.model_copy(update={"method": "lora"})
    torch.manual_seed(0)
    model = build_model(config).eval()
    lengths = dataset.lengths()
    alone = _logits_by_index(model, dataset, LengthBucketSampler(lengths, 1, shuffle=False))
    sorted_ = LengthBucketSampler(lengths, 5, shuffle=False)
    random_ = LengthBucketSampler(lengths, 5, shuffle=False, bucketing=False)
    assert len(set(map(len, sorted_.global_batches()))) > 1 or len(dataset) <= 5
    for sampler in (sorted_, random_):
        batched = _logits_by_index(model, dataset, sampler)
        assert batched.keys() == alone.keys()
        for index, logits in alone.items():
            torch.testing.assert_close(batched[index], logits, atol=1e-5, rtol=1e-4)


def test_eval_batch_size_changes_no_result(corpus: Path, tmp_path: Path) -> None:
    settings = {"model.method": "lora", "optim.epochs": 1, "threads": 1}
    one = train(tiny_run(corpus, tmp_path / "b1", **settings, **{"data.eval_batch_size": 1}))
    big = train(tiny_run(corpus, tmp_path / "b64", **settings, **{"data.eval_batch_size": 64}))
    for a, b in zip(one.folds[0]["history"], big.folds[0]["history"], strict=True):
        assert a["dev_uar"] == b["dev_uar"]
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-5)
    assert one.folds[0]["test"]["confusion"] == big.folds[0]["test"]["confusion"]
    predictions = [
        (run / "fold-fold1" / "predictions.csv").read_text() for run in (one.run_dir, big.run_dir)
    ]
    assert predictions[0] == predictions[1]
