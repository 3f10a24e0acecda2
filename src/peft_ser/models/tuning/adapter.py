"""Bottleneck adapters: ``adapter`` (parallel) and ``adapter_l`` (sequential), one option each,
``adapter_dim``, the bottleneck's width.

* ``adapter`` reads the residual stream right after self-attention and adds its output to the
  layer's feed-forward contribution, i.e. it runs beside the feed-forward block.
* ``adapter_l`` reads the feed-forward block's output and adds its output to it.

The adapter modules themselves are in `peft_ser.models.tuning.bottleneck` (torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from peft_ser.models.tuning.spec import MethodSpec
from peft_ser.utils.settings import MAX_SIZE, StrictModel

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone


class AdapterOptions(StrictModel):
    adapter_dim: int = Field(128, ge=1, le=MAX_SIZE, description="bottleneck width of adapters")


def parallel_adapter(backbone: Backbone, options: AdapterOptions) -> None:
    from peft_ser.models.tuning.bottleneck import add_parallel_adapters

    add_parallel_adapters(backbone, options.adapter_dim)


def sequential_adapter(backbone: Backbone, options: AdapterOptions) -> None:
    from peft_ser.models.tuning.bottleneck import add_sequential_adapters

    add_sequential_adapters(backbone, options.adapter_dim)


PARALLEL = MethodSpec(("adapter",), AdapterOptions, parallel_adapter)
SEQUENTIAL = MethodSpec(("adapter_l",), AdapterOptions, sequential_adapter)
