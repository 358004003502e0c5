"""helpers.widgets: every control is moved and redrawn headless; the live view is labelled, wraps, and redraws."""
import ipywidgets as W
import pytest
import torch

from helpers import widgets


def controls():
    return {"face": W.IntSlider(0, 0, 3), "gain": W.FloatSlider(value=0.5, min=0.0, max=1.0, description="gain g"),
            "colour": W.Dropdown(options=[("red", 0), ("green", 1), ("blue", 2)], value=0),
            "flip": W.Checkbox(value=False), "unused": W.IntSlider(2, 0, 5)}


def draw(face, gain, colour, flip, unused=0):
    image = torch.zeros(3, 4, 4)
    image[colour, face, 0] = gain
    return image.flip(-1) if flip else image


def test_check_controls_names_what_changes_nothing_and_restores_values():
    c = controls()
    assert widgets.check_controls(draw, c) == ["unused"]
    assert [control.value for control in c.values()] == [0, 0.5, 0, False, 2]


def test_check_controls_reports_the_value_that_breaks_draw():
    def broken(face, **_):  # chapter 00's old bug: a batch of one face sliced again at [face:face + 1]
        return torch.ones(1, 3, 2, 2)[face:face + 1].max(0).values

    c = controls()
    with pytest.raises(RuntimeError, match=r"draw failed with face=3 \(the others at their start values\)"):
        widgets.check_controls(broken, c)
    assert c["face"].value == 0


def test_live_view_labels_wraps_and_redraws():
    c = controls()
    box = widgets.live_view(draw, c, scale=2)
    row, view = box.children
    assert row.layout.flex_flow == "row wrap" and list(row.children) == list(c.values())
    assert c["face"].description == "face" and c["gain"].description == "gain g"  # given labels are kept
    assert all(control.layout.width == widgets.CONTROL_WIDTH for control in c.values())
    first = view.value
    c["face"].value = 2
    assert view.value != first


def test_live_images_headless_prints_the_note_and_the_check(capsys, monkeypatch):
    monkeypatch.setenv("BOOK_HEADLESS", "1")
    c = controls()
    del c["unused"]
    assert widgets.live_images(draw, c) is None
    out = capsys.readouterr().out
    assert out.startswith("(live widget: open this notebook in JupyterLab")
    assert "each of its 4 controls redraws the picture" in out
