"""The 32 corpora of the EmoBox benchmark (emo-box/EmoBox, Interspeech 2024), so a user knows
what to download before `peft_ser.corpora.emobox` prepares one with EmoBox's own folds.

Every fact here is read from the EmoBox repository: name, language and download address from
the dataset table of its ``README.md``; classes are the distinct values of
``data/<name>/label_map.json`` (EMOVO's ``data/emovo/label_dict.json``) in the order they
first appear, i.e. the classes a prepared corpus gets; folds are the ``data/<name>/fold_<k>``
folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft_ser.corpora.base import CorpusError
from peft_ser.utils.errors import suggest


@dataclass(frozen=True)
class EmoBoxCorpus:
    """One EmoBox corpus: its folder name under ``data/``, how EmoBox's table names it, its
    language, the classes of its label map, how many folds EmoBox ships, and where its audio
    comes from (some need a licence or registration)."""

    name: str
    title: str
    language: str
    classes: tuple[str, ...]
    folds: int
    source: str


EMOBOX_CORPORA: dict[str, EmoBoxCorpus] = {
    c.name: c
    for c in (
        EmoBoxCorpus(
            "aesdd",
            "AESDD",
            "Greek",
            ("Angry", "Happy", "Fear", "Sad", "Disgust"),
            1,
            "http://m3c.web.auth.gr/research/aesdd-speech-emotion-recognition/",
        ),
        EmoBoxCorpus(
            "ased",
            "ASED",
            "Amharic",
            ("Neutral", "Fear", "Happy", "Sad", "Angry"),
            1,
            "https://github.com/wgwangang/ASED_V1",
        ),
        EmoBoxCorpus(
            "asvpesd",
            "ASVP-ESD",
            "Mix",
            (
                "Boredom",
                "Neutral",
                "Happy",
                "Sad",
                "Angry",
                "Fear",
                "Disgust",
                "Surprise",
                "Excited",
                "pleasure",
                "pain, groan",
                "disappointment, disapproval",
                "breath",
                "UnKnown",
            ),
            1,
            "https://www.kaggle.com/datasets/dejolilandry/asvpesdspeech-nonspeech-emotional-utterances",
        ),
        EmoBoxCorpus(
            "cafe",
            "CaFE",
            "French",
            ("Angry", "Disgust", "Happy", "Neutral", "Fear", "Surprise", "Sad"),
            3,
            "https://zenodo.org/record/1478765",
        ),
        EmoBoxCorpus(
            "casia",
            "CASIA",
            "Mandarin",
            ("Neutral", "Angry", "Surprise", "Sad", "Happy", "Fear"),
            4,
            "https://aistudio.baidu.com/aistudio/datasetdetail/209512",
        ),
        EmoBoxCorpus(
            "cremad",
            "CREMA-D",
            "English",
            ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad"),
            1,
            "https://github.com/CheyneyComputerScience/CREMA-D",
        ),
        EmoBoxCorpus(
            "emns",
            "EMNS",
            "English",
            ("Disgust", "Excited", "Surprise", "Sad", "Sarcastic", "Happy", "Neutral", "Angry"),
            1,
            "https://www.openslr.org/136",
        ),
        EmoBoxCorpus(
            "emodb",
            "EmoDB",
            "German",
            ("Angry", "Boredom", "Disgust", "Fear", "Happy", "Neutral", "Sad"),
            5,
            "https://www.kaggle.com/datasets/piyushagni5/berlin-database-of-emotional-speech-emodb",
        ),
        EmoBoxCorpus(
            "emovdb",
            "EmoV-DB",
            "English",
            ("Amused", "Sleepy", "Angry", "Disgust", "Neutral"),
            1,
            "https://mega.nz/#F!KBp32apT!gLIgyWf9iQ-yqnWFUFuUHg!mYwUnI4K",
        ),
        EmoBoxCorpus(
            "emovo",
            "EMOVO",
            "Italian",
            ("Neutral", "Disgust", "Happy", "Fear", "Angry", "Surprise", "Sad"),
            6,
            "http://voice.fub.it/activities/corpora/emovo/index.html",
        ),
        EmoBoxCorpus(
            "emozionalmente",
            "Emozionalmente",
            "Italian",
            ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
            1,
            "https://zenodo.org/records/6569824#.ZGZQLXZBxPY",
        ),
        EmoBoxCorpus(
            "enterface",
            "eNTERFACE",
            "English",
            ("Angry", "Surprise", "Fear", "Happy", "Sad", "Disgust"),
            1,
            "https://enterface.net/enterface05/main.php?frame=emotion",
        ),
        EmoBoxCorpus(
            "esd",
            "ESD",
            "Mix",
            ("Neutral", "Angry", "Happy", "Sad", "Surprise"),
            5,
            "https://hltsingapore.github.io/ESD/",
        ),
        EmoBoxCorpus(
            "iemocap",
            "IEMOCAP",
            "English",
            ("Neutral", "Happy", "Angry", "Sad"),
            5,
            "https://sail.usc.edu/iemocap/iemocap_release.htm",
        ),
        EmoBoxCorpus(
            "jlcorpus",
            "JL-Corpus",
            "English",
            (
                "Concerned",
                "Apologetic",
                "Angry",
                "Sad",
                "Assertive",
                "Excited",
                "Anxious",
                "Neutral",
                "Happy",
                "Encouraging",
            ),
            4,
            "https://www.kaggle.com/tli725/jl-corpus",
        ),
        EmoBoxCorpus(
            "m3ed",
            "M3ED",
            "Mandarin",
            ("Neutral", "Surprise", "Disgust", "Angry", "Sad", "Happy", "Fear"),
            1,
            "https://github.com/aim3-ruc/rucm3ed",
        ),
        EmoBoxCorpus(
            "mead",
            "MEAD",
            "English",
            ("Neutral", "Angry", "Contempt", "Disgust", "Fear", "Happy", "Sad", "Surprise"),
            1,
            "https://github.com/uniBruce/Mead",
        ),
        EmoBoxCorpus(
            "meld",
            "MELD",
            "English",
            ("Neutral", "Happy", "Sad", "Surprise", "Disgust", "Angry", "Fear"),
            1,
            "https://affective-meld.github.io/",
        ),
        EmoBoxCorpus(
            "mer2023",
            "MER2023",
            "Mandarin",
            ("Neutral", "Angry", "Sad", "Happy", "Worried", "Surprise"),
            1,
            "http://www.merchallenge.cn/datasets",
        ),
        EmoBoxCorpus(
            "mesd",
            "MESD",
            "Spanish",
            ("Angry", "Sad", "Disgust", "Fear", "Neutral", "Happy"),
            1,
            "https://data.mendeley.com/datasets/cy34mh68j9/5",
        ),
        EmoBoxCorpus(
            "msppodcast",
            "MSP-Podcast",
            "English",
            (
                "Surprise",
                "Fear",
                "Disgust",
                "Angry",
                "Sad",
                "No-agreement",
                "Contempt",
                "Neutral",
                "Other",
                "Happy",
            ),
            1,
            "https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html",
        ),
        EmoBoxCorpus(
            "oreau",
            "Oreau",
            "French",
            ("Angry", "Sad", "Happy", "Fear", "Disgust", "Surprise", "Neutral"),
            1,
            "https://zenodo.org/records/4405783",
        ),
        EmoBoxCorpus(
            "pavoque",
            "PAVOQUE",
            "German",
            ("Angry", "Neutral", "Sad", "Happy", "Poker"),
            1,
            "https://github.com/marytts/pavoque-data/releases",
        ),
        EmoBoxCorpus(
            "polish",
            "Polish",
            "Polish",
            ("Angry", "Neutral", "Fear"),
            5,
            "https://mostwiedzy.pl/en/open-research-data/emotions-in-polish-speech-recordings,11190523461146169-0",
        ),
        EmoBoxCorpus(
            "ravdess",
            "RAVDESS",
            "English",
            ("Angry", "Surprise", "Sad", "Disgust", "Happy", "Calm", "Neutral", "Fear"),
            6,
            "https://www.kaggle.com/datasets/uwrfkaggler/ravdess-emotional-speech-audio",
        ),
        EmoBoxCorpus(
            "resd",
            "RESD",
            "Russian",
            ("Happy", "Disgust", "Angry", "Fear", "Enthusiastic", "Neutral", "Sad"),
            1,
            "https://huggingface.co/datasets/Aniemore/resd_annotated",
        ),
        EmoBoxCorpus(
            "savee",
            "SAVEE",
            "English",
            ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
            4,
            "https://www.kaggle.com/datasets/ejlok1/surrey-audiovisual-expressed-emotion-savee",
        ),
        EmoBoxCorpus(
            "shemo",
            "ShEMO",
            "Persian",
            ("Sad", "Neutral", "Fear", "Angry", "Happy", "Surprise"),
            1,
            "https://github.com/mansourehk/ShEMO",
        ),
        EmoBoxCorpus(
            "subesco",
            "SUBESCO",
            "Bangla",
            ("Fear", "Disgust", "Surprise", "Neutral", "Happy", "Angry", "Sad"),
            5,
            "https://zenodo.org/records/4526477",
        ),
        EmoBoxCorpus(
            "tess",
            "TESS",
            "English",
            ("Fear", "Disgust", "Angry", "Sad", "Surprise", "Neutral", "Happy"),
            1,
            "https://tspace.library.utoronto.ca/handle/1807/24487",
        ),
        EmoBoxCorpus(
            "turevdb",
            "TurEV-DB",
            "Turkish",
            ("Calm", "Happy", "Sad", "Angry"),
            1,
            "https://github.com/Xeonen/TurEV-DB",
        ),
        EmoBoxCorpus(
            "urdu",
            "URDU",
            "Urdu",
            ("Angry", "Happy", "Neutral", "Sad"),
            1,
            "https://github.com/siddiquelatif/urdu-dataset",
        ),
    )
}
"""EmoBox's 32 corpora by folder name, in the order of its ``data/`` folder."""


def emobox_corpus(name: str) -> EmoBoxCorpus:
    """The EmoBox corpus whose ``data/`` folder is ``name``; `CorpusError` for any other."""
    if name in EMOBOX_CORPORA:
        return EMOBOX_CORPORA[name]
    raise CorpusError(
        f"{name!r} is not one of EmoBox's 32 corpora{suggest(name, EMOBOX_CORPORA)} "
        "(see `peft-ser prepare emobox --list`)"
    )


def corpus_table() -> str:
    """The 32 corpora as a fixed-width table: name, language, folds, classes, audio source."""
    lines = [f"{'name':<15}{'language':<10}{'folds':>5}  {'classes':<60}  audio"]
    for c in EMOBOX_CORPORA.values():
        classes = f"{len(c.classes)}: {' / '.join(c.classes)}"
        lines.append(f"{c.name:<15}{c.language:<10}{c.folds:>5}  {classes:<60}  {c.source}")
    return "\n".join(lines) + "\n"
