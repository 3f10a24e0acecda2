"""Merging ``peft`` tuners (LoRA, DoRA, IA3, LoHa, LoKr, ...) into the weights they adapt.

A merged model computes the same function with plain layers: export writes a graph without
the low-rank branches, and int8 quantization then sees one linear layer where LoRA had three.
"""

from __future__ import annotations

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from peft_ser.utils.errors import UserError


class MergeError(UserError, ValueError):
    """A tuner layer that peft cannot merge into its base layer; the message names it."""


def merge_tuners(model: nn.Module) -> int:
    """Merge every tuner layer of ``model`` in place and put its base layer in its place.

    Returns how many layers were merged. Raises `MergeError` naming the first layer peft
    cannot merge (the model is then partly merged: merge a copy).
    """
    tuned = [(name, module) for name, module in model.named_modules()]
    merged = 0
    for name, module in tuned:
        if not isinstance(module, BaseTunerLayer) or not isinstance(module, nn.Module):
            continue
        try:
            module.merge(safe_merge=True)
        except (NotImplementedError, ValueError, RuntimeError, TypeError) as error:
            raise MergeError(
                f"peft cannot merge the tuner layer {name} ({type(module).__name__}: {error})"
            ) from None
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, _with_hooks_of(module))
        merged += 1
    return merged


def _with_hooks_of(tuner: BaseTunerLayer) -> nn.Module:
    """The tuner's base layer, carrying the hooks set on the tuner (adapters hook a LoRA-wrapped
    feed-forward layer in ``combined``), so the merged model computes the same function."""
    base = tuner.get_base_layer()
    assert isinstance(tuner, nn.Module)
    for pre_hook in tuner._forward_pre_hooks.values():
        base.register_forward_pre_hook(pre_hook)
    for hook in tuner._forward_hooks.values():
        base.register_forward_hook(hook)
    return base
