"""Write the synthetic demo corpus in the CREMA-D layout.

The demo must run through the same `prepare crema-d` path as the real corpus, so this script
reproduces CREMA-D's file naming, demographics table and crowd-vote table, filled with speech
from `peft_ser.demo.synthetic`. Output is deterministic: every random draw comes from a generator
seeded by `--seed` and the name of the actor or clip it belongs to, so a subset (fewer actors or
sentences) yields byte-identical copies of the corresponding clips of the full corpus.

Regenerate the committed corpus with:

    .venv/bin/python scripts/make_demo_corpus.py --out demo/CREMA-D --overwrite
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from peft_ser.demo.synthetic import (
    EMOTION_PROSODY,
    VOICES,
    Prosody,
    espeak_available,
    synthesize,
)

SAMPLE_RATE = 16000
FIRST_ACTOR = 1001
LEVEL = "XX"
# CREMA-D's sentence codes and the sentences its actors read.
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
# The four shortest sentences: 160 clips of about 1.3 s keep the committed corpus under 8 MB.
DEFAULT_SENTENCES = ("IEO", "TSI", "DFA", "IOM")
DEFAULT_ACTORS = 10
# File-name emotion code -> (emotion name in the synthesiser's table, crowd-vote letter).
EMOTIONS: dict[str, tuple[str, str]] = {
    "ANG": ("Angry", "A"),
    "HAP": ("Happy", "H"),
    "NEU": ("Neutral", "N"),
    "SAD": ("Sad", "S"),
}
CLIP_NAME = re.compile(
    r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>XX)"
)
DEMOGRAPHICS_HEADER = ("ActorID", "Age", "Sex", "Race", "Ethnicity")
SUMMARY_HEADER = (
    "", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel",
    "MultiModalVote", "MultiModalLevel",
)  # fmt: skip
SEX = {"F": "Female", "M": "Male"}
# Per-actor offsets model habitual rate, pitch and loudness; per-clip jitter keeps the clips of one
# actor and emotion from being copies of each other.
ACTOR_SPREAD = 0.06
CLIP_SPREAD = 0.05


@dataclass(frozen=True)
class Clip:
    """One recording: an actor reading a sentence with an emotion."""

    actor: int
    sentence: str
    emotion: str

    @property
    def name(self) -> str:
        """CREMA-D's file name without extension, e.g. `1001_IEO_ANG_XX`."""
        return f"{self.actor}_{self.sentence}_{self.emotion}_{LEVEL}"


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the corpus described by the command-line arguments."""
    args = parse_args(argv)
    out: Path = args.out
    prepare_output(out, overwrite=args.overwrite)
    actors = [FIRST_ACTOR + i for i in range(args.actors)]
    clips = [Clip(a, s, e) for a in actors for s in args.sentences for e in EMOTIONS]
    seconds = sum(write_clip(out, clip, args.seed, args.backend) for clip in clips)
    write_demographics(out / "VideoDemographics.csv", actors, args.seed)
    write_summary(out / "processedResults" / "summaryTable.csv", clips, args.seed)
    write_readme(out / "README.md", args, len(clips))
    print(f"wrote {len(clips)} clips ({seconds:.1f} s of audio) from {len(actors)} actors to {out}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options; sentence codes are checked against CREMA-D's list."""
    parser = argparse.ArgumentParser(
        description="Write the synthetic demo corpus in the CREMA-D layout."
    )
    parser.add_argument("--out", type=Path, required=True, help="corpus root (CREMA-D/)")
    parser.add_argument("--actors", type=int, default=DEFAULT_ACTORS, help="actors from 1001")
    parser.add_argument(
        "--sentences", nargs="+", default=list(DEFAULT_SENTENCES), choices=list(SENTENCES)
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of all random draws")
    parser.add_argument(
        "--backend",
        choices=["espeak", "fallback"],
        default="espeak",
        help="espeak-ng speech, or the harmonic fallback signal when espeak-ng is missing",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus")
    args = parser.parse_args(argv)
    if args.actors < 1:
        parser.error("--actors must be at least 1")
    return args


def prepare_output(out: Path, *, overwrite: bool) -> None:
    """Refuse to mix two corpora in one directory; with `overwrite`, remove what a run writes."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SystemExit(f"{out} is not empty; pass --overwrite to replace the corpus")
        shutil.rmtree(out / "AudioWAV", ignore_errors=True)
        shutil.rmtree(out / "processedResults", ignore_errors=True)
        for name in ("VideoDemographics.csv", "README.md"):
            (out / name).unlink(missing_ok=True)
    (out / "AudioWAV").mkdir(parents=True, exist_ok=True)
    (out / "processedResults").mkdir(exist_ok=True)


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on the seed and the keys, not on the order of generation."""
    return np.random.default_rng([seed, *(zlib.crc32(key.encode()) for key in keys)])


def actor_voice(actor: int) -> int:
    """Index into `VOICES`: actors take the voices in turn."""
    return (actor - FIRST_ACTOR) % len(VOICES)


def clip_prosody(clip: Clip, seed: int) -> Prosody:
    """The emotion's prosody, shifted by the actor's offset, then jittered for this clip."""
    base = EMOTION_PROSODY[EMOTIONS[clip.emotion][0]]
    actor = base.jittered(rng_for(seed, "actor", str(clip.actor)), ACTOR_SPREAD)
    return actor.jittered(rng_for(seed, "clip", clip.name), CLIP_SPREAD)


def write_clip(out: Path, clip: Clip, seed: int, backend: str) -> float:
    """Synthesise one clip as 16 kHz mono 16-bit WAV; return its duration in seconds."""
    voice = VOICES[actor_voice(clip.actor)]
    audio = synthesize(
        SENTENCES[clip.sentence],
        clip_prosody(clip, seed),
        voice,
        SAMPLE_RATE,
        backend="espeak" if backend == "espeak" else "fallback",
    )
    # libsndfile does not saturate on float-to-integer conversion; clip explicitly.
    sf.write(
        out / "AudioWAV" / f"{clip.name}.wav", np.clip(audio, -1.0, 1.0), SAMPLE_RATE, "PCM_16"
    )
    return audio.size / SAMPLE_RATE


def write_demographics(path: Path, actors: Sequence[int], seed: int) -> None:
    """CREMA-D's actor table: numbers unquoted, text quoted, as in the original file."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow(DEMOGRAPHICS_HEADER)
        for actor in actors:
            age = int(rng_for(seed, "age", str(actor)).integers(20, 70))
            sex = SEX[VOICES[actor_voice(actor)].gender]
            writer.writerow([actor, age, sex, "Unknown", "Unknown"])


def write_summary(path: Path, clips: Sequence[Clip], seed: int) -> None:
    """CREMA-D's vote table: every vote is the intended emotion, levels are placeholders."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(SUMMARY_HEADER)
        for row, clip in enumerate(sorted(clips, key=lambda c: c.name), start=1):
            vote = EMOTIONS[clip.emotion][1]
            levels = rng_for(seed, "level", clip.name).integers(40, 91, size=3)
            writer.writerow([row, clip.name, *(x for level in levels for x in (vote, level))])


def write_readme(path: Path, args: argparse.Namespace, clips: int) -> None:
    """State what the corpus is, what made it and how to make it again."""
    made_by = espeak_version() if args.backend == "espeak" else "the harmonic fallback signal"
    command = (
        f".venv/bin/python scripts/make_demo_corpus.py --out {args.out} --actors {args.actors}"
        f" --sentences {' '.join(args.sentences)} --seed {args.seed}"
        f" --backend {args.backend} --overwrite"
    )
    path.write_text(
        "# Synthetic demo corpus in the CREMA-D layout\n\n"
        "This is **not** CREMA-D and contains no human speech. Every clip was synthesised by"
        f" {made_by} through `peft_ser.demo.synthetic`, with speaking rate, pitch, pitch range and"
        " loudness set by fixed rules per emotion plus seeded random jitter. It is a caricature"
        " for demos and tests, not a model of how people express emotion: results on it say"
        " nothing about real speech emotion recognition.\n\n"
        f"- {clips} clips: {args.actors} actors from {FIRST_ACTOR}, sentences"
        f" {', '.join(args.sentences)}, emotions {', '.join(EMOTIONS)}, level {LEVEL};"
        " 16 kHz mono 16-bit WAV.\n"
        "- `VideoDemographics.csv`: sex follows the synthetic voice; ages are random;"
        " race and ethnicity are `Unknown`.\n"
        "- `processedResults/summaryTable.csv`: every vote equals the emotion in the file"
        " name; the levels are random placeholders.\n\n"
        f"Regenerate from the repository root (see `docs/demo.md`):\n\n    {command}\n"
    )


def espeak_version() -> str:
    """The synthesiser's version line: clips differ between espeak-ng releases."""
    if not espeak_available():
        raise SystemExit("espeak-ng is not installed; install it or pass --backend fallback")
    done = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    version = re.search(r"\d+(\.\d+)+", done.stdout)
    return f"espeak-ng {version.group() if version else '(unknown version)'}"


if __name__ == "__main__":
    main()
