"""helpers.models.bisenet: the face-parsing BiSeNet V1, sized like the paper's baseline."""
import torch

from helpers.models import bisenet
from helpers.train import count_parameters


def test_shapes_and_size():
    model = bisenet.BiSeNet(num_classes=6).eval()
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, 6, 64, 64)
    assert bisenet.segment_images(model, x).shape == (2, 64, 64)
    # ResNet-18 without its classifier (11.2 M) plus the ARMs, FFM and head: the face-parsing BiSeNet's ~12-13 M
    assert 12.0e6 < count_parameters(model) < 13.5e6
