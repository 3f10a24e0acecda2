"""Training batches run through the encoder in groups of similar length (`data.group_padding`):
the groups cover each row once within the padding bound, a grouped training step gives the
logits and gradients of the whole batch (every family is padding-invariant), evaluation runs
whole, the cached top-layer path groups too, a run's history reports the padding computed and
equals the ungrouped run's, and a bad setting is one `ConfigError` line."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from _tones import make_corpus, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from peft_ser.config import ConfigError, ModelConfig, load_run_config
from peft_ser.data.sampler import cut_by_padding, length_groups, padding_waste
from peft_ser.models.backbones import base
from peft_ser.models.backbones.base import Backbone
from peft_ser.models.ser_model import FromStates, build_model
from peft_ser.training import train

lengths_strategy = st.lists(st.integers(1, 10**6), min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(lengths_strategy, st.floats(0.0, 0.99))
def test_groups_hold_every_row_once_each_within_the_padding_bound(
    lengths: list[int], bound: float
) -> None:
    groups = length_groups(lengths, bound)
    assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[row] for row in group]
        assert sizes == sorted(sizes)
        if len(group) > 1:
            assert sum(sizes) >= (1 - bound) * len(group) * max(sizes) - 1e-6
    starts = [lengths[group[0]] for group in groups]
    assert starts == sorted(starts)


@settings(max_examples=100, deadline=None)
@given(lengths_strategy, st.floats(0.0, 0.99), st.integers(1, 8), st.integers(1, 10**7))
def test_runs_respect_their_item_and_sample_limits(
    lengths: list[int], bound: float, items: int, samples: int
) -> None:
    order = np.argsort(lengths, kind="stable")
    runs = cut_by_padding(order, lengths, bound, items, samples)
    assert [row for run in runs for row in run] == order.tolist()
    for run in runs:
        assert len(run) <= items
        assert len(run) == 1 or len(run) * max(lengths[row] for row in run) <= samples


@settings(max_examples=100, deadline=None)
@given(st.lists(lengths_strategy, min_size=1, max_size=4), st.floats(0.0, 0.99))
def test_grouped_padding_is_within_the_bound_and_never_above_the_whole_batch(
    batches: list[list[int]], bound: float
) -> None:
    lengths = [length for batch in batches for length in batch]
    rows, start = [], 0
    for batch in batches:
        rows.append(list(range(start, start + len(batch))))
        start += len(batch)
    grouped = padding_waste(rows, lengths, bound)
    assert grouped <= bound + 1e-9
    assert grouped <= padding_waste(rows, lengths) + 1e-9


def test_equal_lengths_make_one_group_and_a_zero_bound_splits_every_length() -> None:
    assert length_groups([5, 5, 5], 0.0) == [[0, 1, 2]]
    assert length_groups([3, 9, 3, 9], 0.0) == [[0, 2], [1, 3]]
    assert length_groups([7], 0.5) == [[0]]


def _without_dropout(model: nn.Module) -> nn.Module:
    """Dropout draws differ between a whole batch and its groups; the numbers to compare are
    the ones without it."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "dropout", None), float):  # transformers' attention
            module.dropout = 0.0
    return model


def _clips(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    waveforms = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        waveforms[row, :length] = 0.1 * torch.randn(length, generator=generator)
    return waveforms, torch.tensor(lengths)


def _step(model: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of a training step and the gradients it gives the trained weights."""
    model.zero_grad(set_to_none=True)
    logits = model(*inputs)
    (logits**2).sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return logits.detach(), grads


def _assert_same_gradients(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    """Equal to float rounding of sums over differently shaped matrix products: each tensor
    within 1e-3 of its norm (and 1e-9, for gradients whose terms nearly cancel)."""
    assert len(ours) == len(theirs) > 0
    for mine, reference in zip(ours, theirs, strict=True):
        assert float((mine - reference).norm()) <= 1e-3 * float(reference.norm()) + 1e-9


def _runs_in_groups(backbone: Backbone) -> mock._patch:
    return mock.patch.object(backbone, "_from", wraps=backbone._from)


LENGTHS = [16_000, 3_000, 15_500, 2_900, 8_000]


@pytest.mark.parametrize("backbone", ["tiny-whisper", "tiny-wav2vec2", "tiny-wavlm"])
@pytest.mark.parametrize("method", ["lora", "embedding_prompt"])
def test_a_grouped_training_step_gives_the_whole_batch_logits_and_gradients(
    backbone: str, method: str
) -> None:
    torch.manual_seed(0)
    model = _without_dropout(build_model(ModelConfig(backbone=backbone, method=method))).train()
    waveforms, lengths = _clips(LENGTHS)
    whole, whole_grads = _step(model, waveforms, lengths)
    model.backbone.group_padding = 0.1
    with _runs_in_groups(model.backbone) as spy:
        grouped, grouped_grads = _step(model, waveforms, lengths)
    assert spy.call_count == 3  # [2900, 3000], [8000], [15500, 16000]
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-4)
    _assert_same_gradients(grouped_grads, whole_grads)


def test_evaluation_and_gradient_free_passes_run_the_batch_whole() -> None:
    model = build_model(ModelConfig(backbone="tiny-whisper", method="lora"))
    model.backbone.group_padding = 0.1
    waveforms, lengths = _clips(LENGTHS)
    with _runs_in_groups(model.backbone) as spy:
        model.eval()(waveforms, lengths)
        with torch.no_grad():
            model.train()(waveforms, lengths)
    assert spy.call_count == 2


def test_cached_states_below_the_tuned_layers_run_in_groups_with_the_same_results() -> None:
    torch.manual_seed(0)
    config = ModelConfig(backbone="tiny-wavlm", method="lora", tune_layers=1)
    model = _without_dropout(build_model(config))
    waveforms, lengths = _clips(LENGTHS)
    states, frames = model.eval().encode_below(waveforms, lengths)
    above = FromStates(model).train()
    whole, whole_grads = _step(above, states, frames)
    model.backbone.group_padding = 0.1
    with _runs_in_groups(model.backbone) as spy:
        grouped, grouped_grads = _step(above, states, frames)
    assert spy.call_count == 3
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-4)
    _assert_same_gradients(grouped_grads, whole_grads)


def test_a_grouped_run_trains_as_the_whole_batches_do_on_less_padding(tmp_path: Path) -> None:
    """Random batches (the default) of clips of varied lengths, on a backbone without dropout
    (whose draws would differ): the grouped run's history and test scores equal the ungrouped
    run's, and it reports the padding it computed."""
    corpus = make_corpus(tmp_path / "corpus", length_by_label=True)
    found = {}
    for name, value in (("whole", None), ("grouped", 0.1)):
        config = tiny_run(
            corpus,
            tmp_path / name,
            **{
                "data.bucketing": False,
                "data.crop_seconds": None,
                "model.backbone": "tiny-whisper",
                "model.method": "lora",
                "optim.epochs": 2,
                "mixed_precision": "no",
                "data.group_padding": value,
            },
        )
        with mock.patch.object(base, "_regrouped", wraps=base._regrouped) as regrouped:
            found[name] = train(config).folds[0]
        assert regrouped.called == (value is not None)
    whole, grouped = found["whole"], found["grouped"]
    for ours, theirs in zip(grouped["history"], whole["history"], strict=True):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
        assert ours["dev_loss"] == pytest.approx(theirs["dev_loss"], rel=1e-4)
        assert ours["padding_waste"] <= 0.1 < theirs["padding_waste"]
    assert grouped["test"]["uar"] == whole["test"]["uar"]


@pytest.mark.parametrize("value", ["nan", "-0.1", "1", "inf", "most", [0.1]])
def test_a_bad_group_padding_is_one_config_error_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.group_padding") as caught:
        load_run_config(overrides={"data.corpus": "x", "data.group_padding": value})
    assert "\n" not in str(caught.value)


def test_group_padding_defaults_on_and_none_turns_it_off() -> None:
    assert load_run_config(overrides={"data.corpus": "x"}).data.group_padding == 0.1
    off = load_run_config(overrides={"data.corpus": "x", "data.group_padding": None})
    assert off.data.group_padding is None


@pytest.mark.parametrize("backbone", ["tiny-whisper", "tiny-wav2vec2", "tiny-hubert", "tiny-wavlm"])
def test_frame_counts_are_the_frames_the_front_end_gives(backbone: str) -> None:
    """Waveform batches are grouped by these counts and cached states by their frame lengths,
    so that both paths cut a batch alike (and draw dropout alike)."""
    model = build_model(ModelConfig(backbone=backbone, method="lora")).eval()
    lengths = torch.tensor([16_000, 4_321, 400, 12_345, 801])
    with torch.no_grad():
        found = model.backbone(torch.randn(5, 16_000), lengths).frame_lengths
    assert model.backbone.frame_counts(lengths).tolist() == found.tolist()


def test_whisper_in_its_30_s_window_runs_every_batch_whole() -> None:
    model = build_model(ModelConfig(backbone="tiny-whisper", method="lora", whisper_window="pad30"))
    model.backbone.group_padding = 0.1
    waveforms, lengths = _clips(LENGTHS)
    with _runs_in_groups(model.backbone) as spy:
        model.train()(waveforms, lengths)
    assert spy.call_count == 1
