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
