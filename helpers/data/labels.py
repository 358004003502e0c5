"""Label sets of the book: HELEN's 11 classes, CelebAMask-HQ's 19, the five Latents2Segments ROIs, and colours.

Every label map in the book (SynthFaces, HELEN) uses HELEN's class ids. CelebAMask-HQ maps are stored with their
official ids and converted by the tables below when a chapter needs HELEN classes or ROIs.
"""
from __future__ import annotations

import torch

# HELEN (relabelled face-parsing version), in the order of its lbl00..lbl10 files.
HELEN_CLASSES: tuple[str, ...] = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye",
    "nose", "upper_lip", "inner_mouth", "lower_lip", "hair",
)
HELEN_ID = {name: i for i, name in enumerate(HELEN_CLASSES)}

# CelebAMask-HQ: background 0, then the 18 parts in the official painting order (label = position + 1).
CELEBAMASK_HQ_PARTS: tuple[str, ...] = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
CELEBAMASK_HQ_CLASSES: tuple[str, ...] = ("background",) + CELEBAMASK_HQ_PARTS

# HELEN class -> CelebAMask-HQ class of the same meaning (all eleven have one).
HELEN_TO_CELEBAMASK_HQ: dict[str, str] = {
    "background": "background", "skin": "skin", "left_brow": "l_brow", "right_brow": "r_brow",
    "left_eye": "l_eye", "right_eye": "r_eye", "nose": "nose", "upper_lip": "u_lip",
    "inner_mouth": "mouth", "lower_lip": "l_lip", "hair": "hair",
}

# CelebAMask-HQ class -> HELEN class, for reading CelebAMask-HQ as HELEN-like maps. Ears and the eyeglasses frame
# sit on the face, so they become skin; accessories, neck and clothes are not face parts in HELEN: background.
CELEBAMASK_HQ_TO_HELEN: dict[str, str] = {
    "background": "background", "skin": "skin", "nose": "nose", "eye_g": "skin",
    "l_eye": "left_eye", "r_eye": "right_eye", "l_brow": "left_brow", "r_brow": "right_brow",
    "l_ear": "skin", "r_ear": "skin", "mouth": "inner_mouth", "u_lip": "upper_lip", "l_lip": "lower_lip",
    "hair": "hair", "hat": "background", "ear_r": "background", "neck_l": "background",
    "neck": "background", "cloth": "background",
}

# The five regions of interest of Latents2Segments (paper 000), in slice order. Which HELEN classes make each ROI:
#   hair       = hair
#   skin       = skin
#   nose       = nose
#   eyes       = both eyes and both brows (the periocular region: the paper names no brow ROI, and brows must
#                belong to some ROI so that the five ROIs and the background partition every pixel)
#   lips_mouth = upper lip, inner mouth, lower lip
ROI_NAMES: tuple[str, ...] = ("hair", "skin", "nose", "eyes", "lips_mouth")
ROI_HELEN_CLASSES: dict[str, tuple[str, ...]] = {
    "hair": ("hair",),
    "skin": ("skin",),
    "nose": ("nose",),
    "eyes": ("left_eye", "right_eye", "left_brow", "right_brow"),
    "lips_mouth": ("upper_lip", "inner_mouth", "lower_lip"),
}
# The paper's colour code for ROI maps: hair blue, skin green, nose red, eyes orange, lips+mouth grey.
ROI_COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "hair": (40, 90, 230), "skin": (40, 180, 60), "nose": (220, 40, 40),
    "eyes": (250, 160, 20), "lips_mouth": (150, 150, 150),
}
# Per-class colours for HELEN maps, shades of their ROI's colour so both views read alike.
HELEN_COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "skin": (40, 180, 60), "left_brow": (170, 100, 10), "right_brow": (200, 120, 20),
    "left_eye": (250, 160, 20), "right_eye": (255, 200, 80), "nose": (220, 40, 40), "upper_lip": (180, 180, 180),
    "inner_mouth": (90, 90, 90), "lower_lip": (130, 130, 130), "hair": (40, 90, 230),
}


def lookup_table(source: tuple[str, ...], mapping: dict[str, str], target: tuple[str, ...]) -> torch.Tensor:
    """Integer table t with t[source id] = target id, to convert label maps by indexing: t[labels]."""
    missing = [name for name in source if name not in mapping]
    if missing:
        raise ValueError(f"no target class for source classes {missing}")
    index = {name: i for i, name in enumerate(target)}
    return torch.tensor([index[mapping[name]] for name in source], dtype=torch.long)


def helen_to_roi_table() -> torch.Tensor:
    """Table from HELEN ids to ROI ids, 0 = background and 1..5 = ROI_NAMES in order."""
    table = torch.zeros(len(HELEN_CLASSES), dtype=torch.long)
    for roi_id, roi in enumerate(ROI_NAMES, start=1):
        for name in ROI_HELEN_CLASSES[roi]:
            table[HELEN_ID[name]] = roi_id
    return table


def celebamask_hq_to_helen_table() -> torch.Tensor:
    """Table from CelebAMask-HQ ids (0..18) to HELEN ids (0..10)."""
    return lookup_table(CELEBAMASK_HQ_CLASSES, CELEBAMASK_HQ_TO_HELEN, HELEN_CLASSES)


def colourise(labels: torch.Tensor, colours: list[tuple[int, int, int]]) -> torch.Tensor:
    """Label map [..., H, W] -> float RGB image [..., 3, H, W] in [0, 1] with one colour per id."""
    palette = torch.tensor(colours, dtype=torch.float32) / 255.0
    return palette[labels.long()].movedim(-1, -3)
