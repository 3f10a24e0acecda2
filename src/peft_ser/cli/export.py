"""`peft-ser export` and `peft-ser push`: a trained model as an ONNX graph that runs without
PyTorch, or as a Hugging Face Hub repository with its model card."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import app
from peft_ser.zoo import ZOO


class ExportFormat(str, Enum):
    onnx = "onnx"
    hub = "hub"


_MODEL_HELP = (
    "a saved model folder, a run's fold folder (its scores go into a Hub card), a Hub repo id "
    "or a model-zoo name: " + ", ".join(ZOO)
)
_BACKBONE_HELP = "where the pre-trained backbone is when not at its usual place"
_LICENSE_HELP = "the Hub license id for the card (e.g. mit); left out of the card when not given"


@app.command()
def export(
    model: Annotated[str, typer.Argument(help=_MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="the folder to write")],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="what to export to")
    ] = ExportFormat.onnx,
    backbone: Annotated[str | None, typer.Option(help=_BACKBONE_HELP)] = None,
    cache_folder: Annotated[
        Path | None, typer.Option(help="zoo names: the folder of the released files")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="onnx: largest logit difference onnxruntime may show against PyTorch "
            "(default 1e-4)"
        ),
    ] = None,
    license: Annotated[str | None, typer.Option(help="hub: " + _LICENSE_HELP)] = None,
    repo: Annotated[
        str | None,
        typer.Option(help="hub: the repo id (org/name) the card's examples load"),
    ] = None,
) -> None:
    """Export a model to ONNX (LoRA merged, adapters and prompts in the graph), then check it;
    or, with --format hub, as a folder to share on the Hugging Face Hub.

    onnx writes model.onnx (inputs waveforms[B, T] float32 at 16 kHz and lengths[B] int64,
    output logits[B, C]) and peft_ser_onnx.json (labels, sample rate, backbone, method) into
    --out, and compares onnxruntime with PyTorch on clips of several lengths, alone and
    batched. Run it with: peft-ser predict FILES --model DIR --backend onnxruntime.

    hub writes the model's files, a model card README.md (the run's recipe and test scores
    when MODEL is a run's fold) and the code transformers' audio-classification pipeline runs.
    Upload it with peft-ser push, or any Hub tool.
    """
    from peft_ser.inference.loading import load_model
    from peft_ser.utils.errors import UserError

    unused = (
        [name for name, value in (("--license", license), ("--repo", repo)) if value is not None]
        if export_format is ExportFormat.onnx
        else ["--tolerance"] * (tolerance is not None)
    )
    if unused:
        raise UserError(f"{unused[0]} does not apply to --format {export_format.value}")
    if export_format is ExportFormat.hub:
        from peft_ser.export.hub import export_hub

        written = export_hub(
            model, out, license=license, repo_id=repo, backbone=backbone, cache_folder=cache_folder
        )
        files = ", ".join(sorted(path.name for path in written.iterdir()))
        typer.echo(f"wrote {written} ({export_format.value}): {files}")
        return
    from peft_ser.export.onnx import export_onnx

    loaded = load_model(model, "cpu", cache_folder=cache_folder, backbone=backbone)
    report = export_onnx(loaded, out, tolerance=1e-4 if tolerance is None else tolerance)
    typer.echo(f"wrote {report.directory / 'model.onnx'} ({export_format.value})")
    typer.echo(
        f"onnxruntime vs PyTorch on clips of {list(report.check_samples)} samples: largest "
        f"logit difference {report.max_difference_alone:.1e} alone, "
        f"{report.max_difference_batched:.1e} batched"
    )


@app.command()
def push(
    model: Annotated[str, typer.Argument(help=_MODEL_HELP)],
    repo: Annotated[str, typer.Option(help="the Hub repository to upload to, org/name")],
    private: Annotated[bool, typer.Option(help="create the repository private")] = False,
    license: Annotated[str | None, typer.Option(help=_LICENSE_HELP)] = None,
    backbone: Annotated[str | None, typer.Option(help=_BACKBONE_HELP)] = None,
    cache_folder: Annotated[
        Path | None, typer.Option(help="zoo names: the folder of the released files")
    ] = None,
) -> None:
    """Export a model as with export --format hub and upload it to the Hugging Face Hub.

    The repository is created when new; the token is the one huggingface_hub finds (hf auth
    login, or HF_TOKEN). Load it back anywhere with: peft-ser predict FILES --model ORG/NAME.
    """
    from peft_ser.export.hub import push_to_hub

    url = push_to_hub(
        model, repo, private=private, license=license, backbone=backbone, cache_folder=cache_folder
    )
    typer.echo(f"pushed {model} to {repo}: {url}")
