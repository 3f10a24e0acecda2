"""`peft-ser predict`: emotions of recordings with a saved or released model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import app
from peft_ser.cli.options import Backend, BatchSize, Device, Dtype, Precision
from peft_ser.inference.segments import DEFAULT_MAX_SEGMENTS
from peft_ser.zoo import ZOO


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    challenge = "challenge"


@app.command("predict")
def predict_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="audio files, folders (searched recursively for wav, flac, ogg, mp3) "
            "or glob patterns"
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="a saved model folder, a Hub repo id (org/name) or a model-zoo name: "
            + ", ".join(ZOO),
        ),
    ],
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            "-f",
            help="how to write the predictions; challenge: the Interspeech 2025 MSP-Podcast "
            "challenge's submission file (a model of its 8 classes)",
        ),
    ] = OutputFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file, not stdout")
    ] = None,
    batch_size: BatchSize = 8,
    window: Annotated[
        float | None,
        typer.Option(
            help="seconds; a longer recording is cut into windows of this length "
            "(default: whole up to 30 s, else 10-s windows)"
        ),
    ] = None,
    hop: Annotated[
        float | None,
        typer.Option(help="seconds between window starts (default: half a window)"),
    ] = None,
    segment: Annotated[
        str,
        typer.Option(
            help="how recordings are cut: window (fixed windows beyond --window), vad (speech "
            "segments found by Silero VAD, silence left out) or whole"
        ),
    ] = "window",
    min_segment: Annotated[
        float | None,
        typer.Option(help="--segment vad: shortest speech segment in seconds (default 1)"),
    ] = None,
    max_segment: Annotated[
        float | None,
        typer.Option(help="--segment vad: longest speech segment in seconds (default 10)"),
    ] = None,
    max_segments: Annotated[
        int,
        typer.Option(
            help="the most segments one recording may be cut into; a recording that would give "
            "more is skipped with an error"
        ),
    ] = DEFAULT_MAX_SEGMENTS,
    plot: Annotated[
        Path | None,
        typer.Option(help="also draw the emotion timeline of each recording to this PNG"),
    ] = None,
    device: Device = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="where the pre-trained backbone is when not at its usual place: a local "
            "folder (hub mirror, moved checkpoint), a hub id or a CTranslate2 folder"
        ),
    ] = None,
    cache_folder: Annotated[
        Path | None,
        typer.Option(
            help="zoo names: the folder of the released files, in peft-ser's or the original "
            "package's layout (default: $PEFT_SER_CACHE or ~/.cache/peft-ser, then the "
            "working directory)"
        ),
    ] = None,
    dtype: Dtype = "fp32",
    backend: Backend = None,
    precision: Precision = "fp32",
) -> None:
    """Predict the emotion of each recording; long ones also get a prediction per window or
    speech segment, with its start and end.

    Inputs that cannot be predicted (unreadable, empty, NaN samples, a folder without audio,
    a pattern matching nothing, a broken link in a folder) are reported on stderr and skipped.
    The output path (never one of the inputs), the device, dtype, backend and precision are
    checked before the model is loaded. An exported folder on onnxruntime runs without PyTorch.

    Exit status: 0 all predicted; 1 some failed (the others are written); 2 none predicted,
    or a wrong option or model (one error line).
    """
    import sys
    from dataclasses import asdict

    from peft_ser.inference.backends import choose_backend, inference_model
    from peft_ser.inference.challenge import check_challenge_labels, check_file_names
    from peft_ser.inference.files import (
        check_not_an_input,
        check_output_path,
        find_audio_inputs,
        format_predictions,
        write_predictions,
    )
    from peft_ser.inference.predict import Failure, iter_predictions
    from peft_ser.inference.segments import Segmentation
    from peft_ser.utils.progress import progress_bar

    for path in (output, plot):
        if path is not None:
            check_output_path(path)
    # checked before the model is loaded
    segmentation = Segmentation(segment, window, hop, min_segment, max_segment, max_segments)
    chosen_backend = choose_backend(model, backend, precision, device=device, dtype=dtype)
    found = find_audio_inputs(inputs)
    for path in (output, plot):
        if path is not None:
            check_not_an_input(path, found.paths)
    if output_format is OutputFormat.challenge:
        check_file_names(found.paths)
    if plot is not None:  # matplotlib only for a plot: an ONNX runtime install has none
        from peft_ser.inference.timeline import check_plottable

        check_plottable(found.count)
    for failure in found.failures:
        typer.echo(f"skipped {failure.error}", err=True)
    predictions = []
    if found.paths:
        loaded = inference_model(
            model,
            backend=chosen_backend,
            precision=precision,
            device=device,
            cache_folder=cache_folder,
            backbone=backbone,
            dtype=dtype,
        )
        if output_format is OutputFormat.challenge:  # before any file is predicted
            check_challenge_labels(loaded.labels, model)
        results = iter_predictions(
            found.paths,
            model=loaded,
            batch_size=batch_size,
            **asdict(segmentation),
        )
        with progress_bar(total=len(found.paths), unit="file", desc="predict") as progress:
            for result in results:
                if isinstance(result, Failure):
                    progress.write(f"skipped {result.error}", file=sys.stderr)
                else:
                    predictions.append(result)
                progress.update()
    typer.echo(f"predicted {len(predictions)} of {found.count} inputs", err=True)
    if not predictions:
        raise typer.Exit(2)
    text = format_predictions(predictions, output_format.value, model)
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_predictions(text, output)
    if plot is not None:
        from peft_ser.inference.timeline import save_timeline

        save_timeline(predictions, plot)
    if len(predictions) < found.count:
        raise typer.Exit(1)
