"""BiSeNet V1 for face parsing: the size of Latents2Segments' supervised baseline, for timing (paper 000, Table 2).

Paper 000 compares the time of its segmentation by masked decoding (124.00 ms per image) with a "modified BiSeNet"
(142.69 ms), the BiSeNet V1 (Yu et al., ECCV 2018) that face-parsing work trains on CelebAMask-HQ: a ResNet-18
context path whose 1/8 features also serve as the spatial path, attention refinement modules (ARM) on the 1/16 and
1/32 features with a global-context branch, a feature fusion module (FFM) and a 3x3 + 1x1 output head upsampled x8.
The book uses it only to time the paper's comparison at the paper's sizes: no pretrained weights exist offline, and
segmentation time does not depend on the weights. The book's trained baseline is the U-Net of `segmenter`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18


class ConvBNReLU(nn.Sequential):
    """conv (no bias), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class AttentionRefinement(nn.Module):
    """ARM: a 3x3 conv, re-weighted per channel by a sigmoid of its global average (1x1 conv + BN)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.attention = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x * self.attention(x.mean(dim=(2, 3), keepdim=True))


class FeatureFusion(nn.Module):
    """FFM: concatenated spatial and context features -> 1x1 conv, plus a squeeze-and-excitation re-weighting."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, kernel=1)
        self.attention = nn.Sequential(nn.Conv2d(cout, cout // 4, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(cout // 4, cout, 1), nn.Sigmoid())

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        x = self.conv(torch.cat([spatial, context], dim=1))
        return x + x * self.attention(x.mean(dim=(2, 3), keepdim=True))


class BiSeNet(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> logits [B, num_classes, H, W] (H, W multiples of 32)."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        backbone = resnet18(weights=None)  # untrained: the book downloads nothing
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool, backbone.layer1)
        self.layer2, self.layer3, self.layer4 = backbone.layer2, backbone.layer3, backbone.layer4
        self.global_context = ConvBNReLU(512, 128, kernel=1)
        self.arm32, self.arm16 = AttentionRefinement(512, 128), AttentionRefinement(256, 128)
        self.head32, self.head16 = ConvBNReLU(128, 128), ConvBNReLU(128, 128)
        self.fusion = FeatureFusion(256, 256)
        self.out = nn.Sequential(ConvBNReLU(256, 256), nn.Conv2d(256, num_classes, 1, bias=False))

    def forward(self, image: Tensor) -> Tensor:
        x = (image - 0.45) / 0.225
        feat8 = self.layer2(self.stem(x))  # 1/8, 128 channels: the spatial path
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        context = self.global_context(feat32.mean(dim=(2, 3), keepdim=True))
        up32 = F.interpolate(self.arm32(feat32) + context, size=feat16.shape[2:], mode="nearest")
        up32 = self.head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest")
        up16 = self.head16(up16)
        logits = self.out(self.fusion(feat8, up16))
        return F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=True)


@torch.no_grad()
def segment_images(model: BiSeNet, image: Tensor) -> Tensor:
    """Images [B, 3, H, W] -> label maps [B, H, W] (argmax of the logits)."""
    return model(image).argmax(1)


__all__ = ["BiSeNet", "ConvBNReLU", "AttentionRefinement", "FeatureFusion", "segment_images"]
