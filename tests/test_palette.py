"""Label colours follow the label's name: conventional for the common emotions, the same for a
label set in any order, and the timeline draws with them (its label strip below every line)."""

from __future__ import annotations

from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from peft_ser.inference.palette import CONVENTIONAL, palette
from peft_ser.inference.predict import Prediction, WindowPrediction
from peft_ser.inference.timeline import timeline_figure


def test_the_paper_emotions_get_their_conventional_colours_in_any_spelling_or_order() -> None:
    paper = palette(["Neutral", "Angry", "Sad", "Happy"])
    assert paper == {
        "Neutral": CONVENTIONAL["neutral"], "Angry": "#d62728", "Sad": "#1f77b4",
        "Happy": CONVENTIONAL["happy"],
    }  # fmt: skip
    assert palette(["hap", "ang", "neu", "sad"])["ang"] == paper["Angry"]
    assert palette(["anger", "sadness"]) == {"anger": paper["Angry"], "sadness": paper["Sad"]}


def test_other_labels_keep_their_colour_whatever_their_position() -> None:
    first = palette(["tense", "calm", "bored", "Happy"])
    second = palette(["Happy", "bored", "tense", "calm"])
    assert first == second
    assert first["calm"] == CONVENTIONAL["calm"]
    assert len(set(first.values())) == 4
    assert set(palette([f"x{i}" for i in range(20)])) == {f"x{i}" for i in range(20)}


def test_the_timeline_draws_in_the_palette_with_its_strip_below_zero() -> None:
    labels = ["calm", "Angry"]
    windows = [
        WindowPrediction(0.0, 2.0, "calm", {"calm": 0.9, "Angry": 0.1}),
        WindowPrediction(2.0, 4.0, "Angry", {"calm": 0.0, "Angry": 1.0}),
    ]
    figure = timeline_figure([Prediction("a.wav", 4.0, "Angry", windows[1].probabilities, windows)])
    (panel,) = figure.axes
    colours = palette(labels)
    assert {line.get_label(): to_hex(line.get_color()) for line in panel.lines} == colours
    strips = [c for c in panel.collections if isinstance(c, PolyCollection)]
    assert [to_hex(s.get_facecolor()[0]) for s in strips] == [colours["calm"], colours["Angry"]]
    assert all(s.get_paths()[0].vertices[:, 1].max() < 0 for s in strips)
    assert panel.get_ylim()[0] < 0 and min(panel.get_yticks()) == 0
