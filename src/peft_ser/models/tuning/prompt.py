"""Embedding prompts (``embedding_prompt``): ``prompt_length`` learnable vectors prepended to
every tuned encoder layer's input (every layer, or the top ``model.tune_layers``).

The backbone's layer loop prepends them, marks them valid in the attention mask (so every frame can
attend to them), and drops them from the layer's output; WavLM's relative position bias is computed
over the longer sequence. Prompts are Xavier-initialised as in the paper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from peft_ser.models.tuning.spec import MethodSpec
from peft_ser.utils.settings import MAX_SIZE, StrictModel

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone


class PromptOptions(StrictModel):
    prompt_length: int = Field(
        5, ge=1, le=MAX_SIZE, description="learnable prompt vectors per layer"
    )


def add_prompts(backbone: Backbone, length: int) -> None:
    import torch
    from torch import nn

    prompts = nn.ParameterDict()
    for index in backbone.tuned_layers:
        prompt = torch.empty(length, backbone.hidden_size)
        nn.init.xavier_uniform_(prompt)
        prompts[str(index)] = nn.Parameter(prompt)
    backbone.prompts = prompts


def embedding_prompt(backbone: Backbone, options: PromptOptions) -> None:
    add_prompts(backbone, options.prompt_length)


EMBEDDING_PROMPT = MethodSpec(("embedding_prompt",), PromptOptions, embedding_prompt)
