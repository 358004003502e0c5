import pytest
import torch

from helpers import viz
from helpers.data.labels import HELEN_COLOURS, HELEN_ID, ROI_COLOURS


def test_roi_colours_from_roi_ids_and_from_helen_labels_agree():
    roi_ids = torch.tensor([[0, 1, 2, 3, 4, 5]])
    rgb = viz.roi_ids_colour_map(roi_ids)
    assert rgb.shape == (3, 1, 6)
    assert [round(float(v) * 255) for v in rgb[:, 0, 1]] == list(ROI_COLOURS["hair"])
    helen = torch.tensor([[HELEN_ID["background"], HELEN_ID["hair"], HELEN_ID["skin"], HELEN_ID["nose"],
                           HELEN_ID["left_eye"], HELEN_ID["upper_lip"]]])
    assert torch.equal(viz.roi_colour_map(helen), rgb)


def test_player_loads_nothing_from_the_network():
    frames = torch.rand(3, 3, 8, 8)
    html = viz.player(frames, captions=["a", "b", "c"]).data
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert 'class="fa' not in html and "\u25b6" in html  # play button as a character
    assert html.count("<button") == 9
    assert viz.player(frames, captions=["a", "b", "c"]).data == html  # stable ids


def test_show_rows_draws_the_roi_colour_key():
    import matplotlib.pyplot as plt

    rows = [("ROIs", viz.roi_ids_colour_map(torch.tensor([[[0, 1], [2, 3]], [[4, 5], [0, 0]]])))]
    fig = viz.show_rows(rows, legend=ROI_COLOURS)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == list(ROI_COLOURS)
    assert viz.show_rows(rows).legends == []
    narrow = viz.show_rows(rows[:1] * 3, size=1.0, legend=HELEN_COLOURS)  # 11 entries under a 2-in figure
    narrow.canvas.draw()
    box = narrow.legends[0].get_window_extent().transformed(narrow.transFigure.inverted())
    assert box.x0 >= 0 and box.x1 <= 1  # wrapped to the figure's width, not wider
    titled = viz.show_rows(rows, columns=["first", "second"])
    assert [ax.get_title() for ax in titled.axes] == ["first", "second"]
    with pytest.raises(ValueError, match="columns: 1 names for 2 images"):
        viz.show_rows(rows, columns=["one"])
    plt.close("all")


def test_player_tiles_labels_key_and_wrapped_captions():
    import matplotlib.pyplot as plt

    frames = torch.rand(2, 5, 3, 8, 16)  # 2 frames of 5 tiles, twice as wide as tall
    captions = ["short", "a much longer caption that must wrap onto a second line rather than run off the figure"]
    fig, draw = viz._player_figure(frames, captions, nrow=3, labels=list("abcde"), legend=ROI_COLOURS, tile=2.0,
                                   size=None)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 5 and len(fig.axes) == 6  # 2 rows of 3, the sixth empty
    assert [ax.get_title() for ax in images] == list("abcde")
    assert fig.get_figwidth() == 6.0
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == list(ROI_COLOURS)
    fig.canvas.draw()  # the key fits inside the figure (players are saved without a tight bounding box)
    box = legend.get_window_extent().transformed(fig.transFigure.inverted())
    assert box.x0 >= 0 and box.x1 <= 1 and box.y0 >= 0
    first = fig._suptitle.get_text()
    draw(1)
    second = fig._suptitle.get_text()
    assert second.count("\n") >= 1 and first.count("\n") == second.count("\n")  # same layout on every frame
    assert max(len(line) for line in second.split("\n")) <= 6.0 * 12
    assert (images[0].images[0].get_array() == viz.to_numpy_image(frames[1, 0])).all()
    plt.close("all")


def test_player_refuses_mismatched_labels_and_captions():
    with pytest.raises(ValueError, match="labels: 2 names for 3 tiles"):
        viz.player(torch.rand(2, 3, 3, 8, 8), labels=["a", "b"])
    with pytest.raises(ValueError, match="captions: 1 for 2 frames"):
        viz.player(torch.rand(2, 3, 3, 8, 8), captions=["a"])


def test_player_key_with_many_entries_wraps_inside_a_narrow_figure():
    import matplotlib.pyplot as plt

    fig, _ = viz._player_figure(torch.rand(1, 3, 3, 8, 8), None, None, None, HELEN_COLOURS, 1.5, None)
    fig.canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent().transformed(fig.transFigure.inverted())
    assert len(legend.get_texts()) == len(HELEN_COLOURS) and box.x0 >= 0 and box.x1 <= 1 and box.y0 >= 0
    plt.close("all")
