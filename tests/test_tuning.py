"""PEFT methods: what trains, what stays bit-identical, and where each method's weights live."""

from __future__ import annotations

import pytest
import torch

from peft_ser.config import ModelConfig
from peft_ser.models.ser_model import SERModel, build_model
from peft_ser.models.tuning import METHODS

BACKBONES = ["tiny-whisper", "tiny-wavlm", "tiny-wav2vec2", "tiny-hubert", "tiny-wav2vec2-large"]
PEFT_METHODS = ["frozen", "lora", "adapter", "adapter_l", "embedding_prompt", "combined"]

# What each method may add to the backbone: parameter-name fragments.
OWN_PARAMETERS = {
    "frozen": (),
    "lora": (".lora_A.", ".lora_B."),
    "adapter": (".adapter.",),
    "adapter_l": (".adapter.",),
    "embedding_prompt": ("prompts.",),
    "combined": (".lora_A.", ".lora_B.", ".adapter.", "prompts."),
}


def small_adapters(method: str) -> dict[str, int]:
    """A narrow bottleneck for the methods that have adapters (the others refuse the key)."""
    return {"adapter_dim": 8} if "adapter_dim" in METHODS[method].options.model_fields else {}


def _train_steps(model: SERModel, steps: int = 2) -> None:
    """A few optimisation steps on random clips, with dropout on."""
    generator = torch.Generator().manual_seed(1)
    waveforms = 0.1 * torch.randn(4, 12_000, generator=generator)
    lengths = torch.tensor([12_000, 9_000, 7_000, 5_000])
    labels = torch.tensor([0, 1, 2, 3])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=1e-2)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(waveforms, lengths), labels)
        loss.backward()
        optimiser.step()


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", PEFT_METHODS)
def test_method_trains_only_its_parameters_and_keeps_pretrained_weights(
    backbone: str, method: str
) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, method=method, **small_adapters(method)))
    pretrained = {k: v.clone() for k, v in model.backbone.model.state_dict().items()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    own = {name for name in trainable if not name.startswith("head.")}
    assert all(any(tag in name for tag in OWN_PARAMETERS[method]) for name in own), own
    assert bool(own) == bool(OWN_PARAMETERS[method])
    assert {n for n, _ in model.head.named_parameters()} == {
        name.removeprefix("head.") for name in trainable if name.startswith("head.")
    }

    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    _train_steps(model)

    for name, value in model.backbone.model.state_dict().items():
        if name in pretrained and not any(tag in name for tag in OWN_PARAMETERS[method]):
            assert torch.equal(value, pretrained[name]), f"{name} changed"
    changed = [name for name, p in model.named_parameters() if name in before]
    assert any(not torch.equal(before[n], dict(model.named_parameters())[n]) for n in changed)


def test_full_fine_tuning_trains_the_backbone() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny-whisper", method="full"))
    assert all(p.requires_grad for p in model.parameters())
    weight = model.backbone.model.layers[0].fc1.weight.detach().clone()
    _train_steps(model)
    assert not torch.equal(weight, model.backbone.model.layers[0].fc1.weight)


def test_finetune_is_the_papers_name_for_frozen() -> None:
    assert METHODS["finetune"] is METHODS["frozen"]


def test_zero_initialised_tuners_start_from_the_pretrained_function() -> None:
    """LoRA's B and the adapters' up-projection start at zero: same states as the bare model."""
    waveforms = 0.1 * torch.randn(1, 8_000, generator=torch.Generator().manual_seed(0))
    states = {}
    for method in ["frozen", "lora", "adapter", "adapter_l"]:
        torch.manual_seed(0)
        model = build_model(ModelConfig(backbone="tiny-wavlm", method=method)).eval()
        with torch.no_grad():
            states[method] = model.encode(waveforms)[0]
    for method in ["lora", "adapter", "adapter_l"]:
        torch.testing.assert_close(states[method], states["frozen"], atol=1e-6, rtol=0)


def test_lora_scaling_follows_alpha_over_rank() -> None:
    model = build_model(ModelConfig(backbone="tiny-whisper", method="lora", lora_rank=4))
    assert model.backbone.model.layers[0].fc1.scaling["default"] == pytest.approx(1 / 4)
    model = build_model(
        ModelConfig(backbone="tiny-whisper", method="lora", lora_rank=4, lora_alpha=8)
    )
    assert model.backbone.model.layers[0].fc1.scaling["default"] == pytest.approx(2.0)


def test_lora_targets_are_configurable() -> None:
    config = ModelConfig(
        backbone="tiny-whisper", method="lora", lora_targets=["q_proj", "v_proj", "fc1", "fc2"]
    )
    names = [n for n, p in build_model(config).named_parameters() if "lora_A" in n]
    assert len(names) == 2 * 4
    assert any("self_attn.q_proj" in n for n in names)


@pytest.mark.parametrize(
    ("peft_config", "tag"),
    [
        ({"peft_type": "IA3", "feedforward_modules": ["fc2"]}, "ia3_l"),
        ({"peft_type": "LORA", "r": 4, "use_dora": True}, "lora_magnitude_vector"),
        ({"peft_type": "LOHA", "r": 4}, "hada_w1_a"),
        ({"peft_type": "LOKR", "r": 4}, "lokr_w1"),
    ],
)
def test_any_peft_tuner_by_config(peft_config: dict, tag: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(backbone="tiny-whisper", method="peft", peft_config=peft_config)
    )
    own = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    assert own and any(tag in n for n in own)
    _train_steps(model, steps=1)


def test_prompt_learning_tuners_are_refused_with_advice() -> None:
    """Refused by the config already, before any model is built."""
    with pytest.raises(ValueError, match="embedding_prompt"):
        config = ModelConfig(
            backbone="tiny-whisper",
            method="peft",
            peft_config={
                "peft_type": "PROMPT_TUNING",
                "num_virtual_tokens": 4,
                "task_type": "SEQ_CLS",
            },
        )
        build_model(config)


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"adapter_l.*combined"):
        build_model(ModelConfig(backbone="tiny-whisper", method="prefix"))
