"""`peft-ser export`: a trained model as an ONNX graph that runs without PyTorch."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import app
from peft_ser.zoo import ZOO


class ExportFormat(str, Enum):
    onnx = "onnx"


@app.command()
def export(
    model: Annotated[
        str, typer.Argument(help="a saved model folder or a model-zoo name: " + ", ".join(ZOO))
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="the folder to write")],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="what to export to")
    ] = ExportFormat.onnx,
    backbone: Annotated[
        str | None,
        typer.Option(help="where the pre-trained backbone is when not at its usual place"),
    ] = None,
    cache_folder: Annotated[
        Path | None, typer.Option(help="zoo names: the folder of the released files")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="largest logit difference onnxruntime may show against PyTorch")
    ] = 1e-4,
) -> None:
    """Export a model to ONNX (LoRA merged, adapters and prompts in the graph), then check it.

    Writes model.onnx (inputs waveforms[B, T] float32 at 16 kHz and lengths[B] int64, output
    logits[B, C]) and peft_ser_onnx.json (labels, sample rate, backbone, method) into --out,
    and compares onnxruntime with PyTorch on clips of several lengths, alone and batched.
    Run it with: peft-ser predict FILES --model DIR --backend onnxruntime.
    """
    from peft_ser.export.onnx import export_onnx
    from peft_ser.inference.loading import load_model

    loaded = load_model(model, "cpu", cache_folder=cache_folder, backbone=backbone)
    report = export_onnx(loaded, out, tolerance=tolerance)
    typer.echo(f"wrote {report.directory / 'model.onnx'} ({export_format.value})")
    typer.echo(
        f"onnxruntime vs PyTorch on clips of {list(report.check_samples)} samples: largest "
        f"logit difference {report.max_difference_alone:.1e} alone, "
        f"{report.max_difference_batched:.1e} batched"
    )
