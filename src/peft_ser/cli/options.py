"""Options that several commands take, declared once as `Annotated` types so that each reads
the same in every ``--help``: how a model runs, in `predict` and `serve`."""

from __future__ import annotations

from typing import Annotated

import typer

BatchSize = Annotated[
    int, typer.Option(min=1, help="clips, windows or speech segments per forward pass")
]
Device = Annotated[
    str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda if available)")
]
Dtype = Annotated[str, typer.Option(help="compute dtype: float32, float16 or bfloat16")]
Backend = Annotated[
    str | None,
    typer.Option(
        help="torch or onnxruntime (default: onnxruntime for an exported folder, torch for the "
        "others)"
    ),
]
Precision = Annotated[
    str, typer.Option(help="fp32, bf16 (autocast) or int8 (dynamic quantization, CPU)")
]
