"""Options that several commands take, declared once as `Annotated` types so that each reads
the same in every ``--help``: how a model runs, in `predict` and `serve`, in the precision
words of `peft_ser.utils.precision` (``--dtype`` sets the weights, ``--precision`` how a
float32 model computes)."""

from __future__ import annotations

from typing import Annotated

import typer

BatchSize = Annotated[
    int, typer.Option(min=1, help="clips, windows or speech segments per forward pass")
]
Device = Annotated[
    str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda if available)")
]
Dtype = Annotated[
    str,
    typer.Option(
        help="what the weights are stored and computed in: fp32, fp16 or bf16 (float32, "
        "float16, bfloat16 too)"
    ),
]
Backend = Annotated[
    str | None,
    typer.Option(
        help="torch or onnxruntime (default: onnxruntime for an exported folder, torch for the "
        "others)"
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        help="how an fp32 model computes: fp32, bf16 (autocast) or int8 (dynamic quantization, CPU)"
    ),
]
