"""Epochs of one fold with the original PEFT-SER training recipe; the original side of
``bench_epoch.py``.

Runs with the interpreter of the original's environment (``peft-ser==0.0.5``,
``transformers==4.30.2``, ``loralib``; see ``compare_original.ensure_original_environment``)
and imports nothing from this repository's ``peft_ser``. It follows the authors' training script
(``experiment/finetune_emotion.py`` and ``dataloader/dataloader.py`` of usc-sail/peft-ser):

- the model is the original package's ``WhisperSER`` (Whisper tiny, LoRA r16, convolutional
  head), on the real Whisper tiny.en encoder weights that ``original_driver.write_backbones``
  places in the hub cache under ``openai/whisper-tiny``;
- every clip is cropped to its first 6 s; training batches are 32 shuffled clips (last partial
  batch dropped), zero-padded to the batch's longest clip and passed with ``length``;
- the loss is cross-entropy weighted by inverse class frequency, the optimiser Adam (lr 5e-4 as
  the LoRA scripts set it, betas 0.9/0.98, weight decay 1e-4), with ``ReduceLROnPlateau`` on
  the dev loss;
- dev and test are scored one clip at a time (batch 1, no ``length``), cropped to 6 s, after
  every epoch, as the original's training loop does;
- ``--method frozen`` is the paper's no-PEFT baseline: ``finetune_method="frozen"``, which
  matches none of the original's PEFT branches, so the encoder keeps its plain layers, all
  frozen, and only the head trains; the encoder still runs on every clip in every epoch (the
  original has no feature cache).

Left out: the training augmentation (audiomentations' Gaussian noise at 10-30 dB SNR and a
time mask), which needs a package the original's wheel does not declare, and the data loader's
six worker processes (this machine has two cores; both sides load in the main process). The
clips come decoded from ``fold.npz`` rather than read with torchaudio.

Writes ``original_train.json``: seconds per phase summed over ``--epochs``, the last epoch's
test UAR, trainable parameters.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from original_driver import whisper_ser, write_backbones
from torch.utils.data import DataLoader

RATE = 16_000
CROP = 6 * RATE


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, ...]:
    """The original ``collate_fn``: pad or crop to the longest clip, at most 6 s, with lengths."""
    longest = min(max(clip.shape[0] for clip, _ in batch), CROP)
    data = torch.zeros(len(batch), longest)
    lengths = []
    for row, (clip, _) in enumerate(batch):
        used = min(clip.shape[0], longest)
        data[row, :used] = clip[:used]
        lengths.append(used)
    targets = torch.tensor([label for _, label in batch])
    return data, targets, torch.tensor(lengths)


def class_weights(labels: list[int], classes: int) -> torch.Tensor:
    """The original ``return_weights``: inverse frequency, normalised to sum to one."""
    counts = torch.tensor([labels.count(c) for c in range(classes)]).float()
    weights = counts.sum() / counts
    return weights / weights.sum()


def unweighted_recall(targets: list[int], predictions: list[int], classes: int) -> float:
    recalls = []
    for c in range(classes):
        chosen = [p for t, p in zip(targets, predictions, strict=True) if t == c]
        if chosen:
            recalls.append(sum(p == c for p in chosen) / len(chosen))
    return float(np.mean(recalls))


def train_epoch(model, loader, optimizer, criterion) -> None:
    model.train()
    for x, y, length in loader:
        model.zero_grad()
        optimizer.zero_grad()
        loss = criterion(model(x, length=length), y)
        loss.backward()
        optimizer.step()


def validate(model, split: list[tuple[torch.Tensor, int]], criterion) -> tuple[float, float]:
    """Batch-1 scoring as the original ``validate_epoch``: mean loss and UAR."""
    model.eval()
    loader = DataLoader(split, batch_size=1, shuffle=False)
    losses, targets, predictions = [], [], []
    with torch.no_grad():
        for x, y in loader:
            outputs = model(x)
            losses.append(float(criterion(outputs, y)))
            targets.append(int(y[0]))
            predictions.append(int(outputs.argmax(-1)[0]))
    return float(np.mean(losses)), unweighted_recall(targets, predictions, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--method", choices=("lora", "frozen"), default="lora")
    parser.add_argument("--epochs", type=int, default=1)
    arguments = parser.parse_args()
    work, cache = arguments.work, arguments.work / "cache"
    torch.set_num_threads(arguments.threads)
    if not (cache / "models--openai--whisper-tiny").exists():
        write_backbones(work, cache)
    meta = json.loads((work / "fold.json").read_text())
    arrays = np.load(work / "fold.npz")
    splits = {
        name: [
            (torch.from_numpy(arrays[f"{name}_{i}"][:CROP].astype(np.float32)), label)
            for i, label in enumerate(meta[name])
        ]
        for name in ("train", "dev", "test")
    }
    torch.manual_seed(arguments.seed)  # the original's set_seed(8 * fold_idx), fold 1
    model = whisper_ser(cache, enable_peft_training=True, method=arguments.method)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=5e-4, weight_decay=1e-4, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", patience=5, factor=0.5, min_lr=5e-5
    )
    criterion = torch.nn.CrossEntropyLoss(class_weights(meta["train"], 4))
    loader = DataLoader(
        splits["train"], batch_size=32, shuffle=True, collate_fn=collate, drop_last=True
    )
    seconds = dict.fromkeys(("train", "dev", "test"), 0.0)
    found = {}
    for _ in range(arguments.epochs):
        began = time.perf_counter()
        train_epoch(model, loader, optimizer, criterion)
        seconds["train"] += time.perf_counter() - began
        for name in ("dev", "test"):
            began = time.perf_counter()
            found[name] = validate(model, splits[name], criterion)
            seconds[name] += time.perf_counter() - began
            if name == "dev":
                scheduler.step(found[name][0])
    result = {
        "seconds": seconds,
        "test_uar": found["test"][1],
        "trainable_parameters": sum(p.numel() for p in trainable),
    }
    (work / "original_train.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
