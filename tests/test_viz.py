import torch

from helpers import viz
from helpers.data.labels import HELEN_ID, ROI_COLOURS


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
    plt.close("all")
