"""Latents2Segments (Tomar & Rajagopalan, paper 000): a Swapping Autoencoder whose structure slices decode ROIs.

The 8 structure channels are cut into slices, one per region of interest (ROI): hair 0:2, skin 2:4, nose 4:6,
eyes 6:7, lips + mouth 7:8 (`PAPER_SLICES`; for HELEN two 4-channel slices, hair 0:4 and skin 4:8, `HELEN_SLICES`).
A slice is a channel mask: the structure tensor with every other channel set to zero. ONE shared generator (the five
"Siamese decoders") decodes each masked structure tensor with the full texture vector, and learns to output the image
with only that ROI kept, black elsewhere (`helpers.data.transforms.ToROI` builds these targets). Per ROI i the loss is
Eq. 1, l_i = L1 + 0.5 GAN_rec + 0.5 GAN_swap + 0.5 co-occurrence, and the total is Eq. 2, sum_i (1/K) l_i (the
paper's 0.2 for K = 5 ROIs). Training starts from a trained SAE (`helpers.models.sae`), as the paper starts from the
SAE's FFHQ weights.

Choices made here, on purpose:

- Normalisation of masked codes. The encoder L2-normalises the full 8-channel structure tensor at every position
  (as the SAE), then the mask zeroes the other channels, and the masked code is NOT renormalised. Renormalising
  over channels would turn a 1-channel slice (eyes, lips) into its sign map (+1 / -1 everywhere) and a 2-channel
  slice into a pure direction, erasing the magnitudes that say where the ROI is. Without it the masked codes are the
  parts of the full code (their sum is the full code) and have norm <= 1 per position.
- Discriminators. One image discriminator and one patch co-occurrence discriminator are shared by all ROIs (as the
  generator is): their reals are the ROI images of the batch, their fakes the ROI decodes and the ROI swaps. The paper
  treats each decoder "as a separate SAE" without saying whether the discriminators are separate; sharing them keeps
  the model the size of one SAE and starts them from the trained SAE's discriminators.
- No loss on the full image (the released code has none); the full-code decode therefore drifts from the input.
- Balanced L1 (`l1_weights`, the book's deviation below the `paper` profile; `l1_pixel_weights`). Eq. 1's L1 is a
  mean over the whole image ("paper"), and the nose, eyes and lips each cover about 1.5 % of a face: a decode that
  stays black costs about 1.5 % of the L1 of a decode that is wrong everywhere, and in a short run those slices learn
  exactly that (black decodes have no activeness and segment nothing). "roi_balanced" gives each ROI image's ROI
  pixels and its other pixels one half of the weight each, so missing the ROI costs as much as painting the
  background. That removes the black decodes but leaves the mirror-image shortcut: the skin decode paints skin over
  the nose, eyes and lips (4 % of the image), so perturbing the skin slice changes those parts more than their
  own slices do. "region_balanced" splits the other half equally among the other labelled regions of the image
  (background, hair, skin, nose, eyes, lips and mouth), so painting over a hole costs as much as missing any
  region; the skin decode still half-paints its holes, and the skin slice then holds most of the activeness map's
  off-diagonal mass. "region_equal" (the rows below `paper`) gives every region present, the ROI included, the same
  share: a pixel weighs the inverse of its region's area, the same map for all K targets of an image, so a hole in
  the skin's target weighs as much as the whole skin instead of a fifth of it. The GAN terms are unchanged. Measured
  against each other in book/training.md. The rows below `paper` also weigh the L1 3 against Eq. 1's 1 (`lambda_l1`,
  as the SAE's rows do): the small ROIs' F1 rises, the ACS does not.
- All ROIs of a batch go through the generator (and the discriminators) as ONE batch of K x B items; in training the
  reconstructions and the swaps of all ROIs are one generator call of 2 K B items (`sae.decode_pair`), and the ROI
  targets take the memory format of the input images (channels_last in the book's loop).

Segmentation by masked decoding (`segment`), from the K decoded ROI images D_i (in [0, 1] units) of an image x:

- "paper": pixel p belongs to ROI i where D_i(p) is non-zero, later ROIs painted over earlier ones in the order
  hair, skin, nose, eyes, lips. For float outputs "non-zero" means max over RGB of |D_i(p)| > `tolerance` (default
  0.05, about 13 grey levels of 255: the decodes of black areas are only approximately black).
- "consistency" (better founded, the default of the chapter): the model was trained so that D_i = x on ROI i and
  D_i = 0 elsewhere. Read as a per-pixel hypothesis test with Laplace (L1) errors, "p in ROI i" predicts D_i(p) = x(p)
  and D_j(p) = 0 for j != i; "background" predicts D_j(p) = 0 for all j. Their L1 errors differ from the background's
  by e_i(p) = |D_i(p) - x(p)|_1 - |D_i(p)|_1 (sum over RGB), so p gets the ROI with the smallest e_i when
  e_i < -`margin`, else background. It uses every decode at once (no painting order) and the image itself, so a
  bright ROI decode is attributed only where it matches the image. `margin` may be one number per ROI, m_i: then p
  gets the ROI with the smallest e_i + m_i when that is < 0. `fit_margins` picks them on labelled training faces
  (the book's calibration of the rule, not the paper's): a slice that decodes its ROI too dark, so that e_i stays
  positive on part of it, gets a negative m_i.
- "argmax": the ROI with the largest decoded magnitude |D_i(p)|_1 / 3, background where that maximum is below
  `tolerance`. Simple, but dark regions (black hair) decode dark in their own ROI image too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..data.labels import ROI_NAMES
from ..data.memory import InMemory
from ..data.transforms import ToROI
from ..metrics import f1_per_class
from ..train import Phase, SharedForward, TrainSpec, Trained
from . import sae as sae_lib

PAPER_SLICES: tuple[tuple[int, int], ...] = ((0, 2), (2, 4), (4, 6), (6, 7), (7, 8))
PAPER_ROIS: tuple[str, ...] = ROI_NAMES  # hair, skin, nose, eyes, lips_mouth
HELEN_SLICES: tuple[tuple[int, int], ...] = ((0, 4), (4, 8))
HELEN_ROIS: tuple[str, ...] = ("hair", "skin")
SEGMENT_RULES = ("paper", "consistency", "argmax")
L1_WEIGHTS = ("paper", "roi_balanced", "region_balanced", "region_equal")


@dataclass(frozen=True)
class L2SConfig:
    """Every setting of Latents2Segments (JSON-able through dataclasses.asdict): the SAE's plus the slicing and Eq. 1."""

    sae: sae_lib.SAEConfig = dataclasses.field(default_factory=sae_lib.SAEConfig)
    slices: tuple[tuple[int, int], ...] = PAPER_SLICES  # [start, stop) channels of each ROI's slice
    roi_names: tuple[str, ...] = PAPER_ROIS  # ROI of each slice, in painting order
    lambda_l1: float = 1.0  # Eq. 1
    lambda_gan_rec: float = 0.5
    lambda_gan_swap: float = 0.5
    lambda_cooccur: float = 0.5
    l1_weights: str = "paper"  # pixel weights of Eq. 1's L1: one of L1_WEIGHTS (see the module doc)

    def __post_init__(self) -> None:
        errors = []
        if len(self.slices) != len(self.roi_names):
            errors.append(f"slices has {len(self.slices)} entries but roi_names has {len(self.roi_names)}")
        unknown = [r for r in self.roi_names if r not in ROI_NAMES]
        if unknown:
            errors.append(f"roi_names={self.roi_names}: unknown {unknown}; allowed {ROI_NAMES}")
        channels = self.sae.structure_channels
        used: set[int] = set()
        for start, stop in self.slices:
            if not 0 <= start < stop <= channels:
                errors.append(f"slices: ({start}, {stop}) is not a non-empty range inside 0..{channels}")
            elif used & set(range(start, stop)):
                errors.append(f"slices: ({start}, {stop}) overlaps another slice")
            used |= set(range(start, stop))
        if self.l1_weights not in L1_WEIGHTS:
            errors.append(f"l1_weights={self.l1_weights!r}: allowed {L1_WEIGHTS}")
        for name in ("lambda_l1", "lambda_gan_rec", "lambda_gan_swap", "lambda_cooccur"):
            if getattr(self, name) < 0:
                errors.append(f"{name}={getattr(self, name)}: must be >= 0")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def channel_lists(self) -> list[list[int]]:
        """The channel indices of each slice (the `slices` argument of helpers.metrics.activeness_map)."""
        return [list(range(start, stop)) for start, stop in self.slices]


def paper_config() -> L2SConfig:
    """The paper's model: the SAE's paper sizes (128 px) and the five CelebAMask-HQ slices."""
    return L2SConfig(sae=sae_lib.paper_config())


def scaled_config(resolution: int, width: int, dataset: str = "synthfaces") -> L2SConfig:
    """The model of a profile: a scaled SAE, and the HELEN slicing (hair 0:4, skin 4:8) when dataset == 'helen'."""
    slices, rois = (HELEN_SLICES, HELEN_ROIS) if dataset == "helen" else (PAPER_SLICES, PAPER_ROIS)
    return L2SConfig(sae=sae_lib.scaled_config(resolution, width), slices=slices, roi_names=rois)


def roi_targets(roi_labels: Tensor, cfg: L2SConfig) -> Tensor:
    """ROI ids [..., H, W] of `ToROI` restricted to the config's ROIs: 0 elsewhere, i + 1 for slice i's ROI."""
    out = torch.zeros_like(roi_labels)
    for i, name in enumerate(cfg.roi_names):
        out[roi_labels == ROI_NAMES.index(name) + 1] = i + 1
    return out


def slice_masks(cfg: L2SConfig) -> Tensor:
    """Channel masks [K, C]: row i is 1 on the channels of slice i and 0 elsewhere."""
    masks = torch.zeros(len(cfg.slices), cfg.sae.structure_channels)
    for i, (start, stop) in enumerate(cfg.slices):
        masks[i, start:stop] = 1.0
    return masks


def masked_structures(structure: Tensor, masks: Tensor) -> Tensor:
    """S_s [B, C, h, w] and masks [K, C] -> the K masked codes, ROI-major [K * B, C, h, w] (no renormalisation)."""
    masks = masks.to(structure.device, structure.dtype)
    return (masks[:, None, :, None, None] * structure[None]).flatten(0, 1)


def roi_major(rois: Tensor, like: Tensor) -> Tensor:
    """ROI images [B, K, 3, H, W] -> ROI-major [K * B, 3, H, W], in the memory format of `like` (e.g. channels_last)."""
    out = rois.transpose(0, 1).flatten(0, 1)
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def decode_rois(model: sae_lib.SwappingAutoencoder, structure: Tensor, texture: Tensor, masks: Tensor) -> Tensor:
    """The K ROI decodes of each image in one generator call: [B, K, 3, H, W] in [0, 1] units."""
    k, b = masks.shape[0], structure.shape[0]
    out = model.decode(masked_structures(structure, masks), texture.repeat(k, 1))
    return out.view(k, b, *out.shape[1:]).transpose(0, 1)


@torch.no_grad()
def roi_images(model: sae_lib.SwappingAutoencoder, image: Tensor, cfg: L2SConfig) -> Tensor:
    """Encode images [B, 3, H, W] and decode their K ROI images [B, K, 3, H, W]."""
    structure, texture = model.encode(image)
    return decode_rois(model, structure, texture, slice_masks(cfg))


def segment(decoded: Tensor, image: Tensor | None = None, rule: str = "consistency", tolerance: float = 0.05,
            margin: float | Tensor = 0.0) -> Tensor:
    """ROI label map [B, H, W] (0 background, i + 1 = ROI i) from decodes [B, K, 3, H, W] by `rule` (see module doc)."""
    if rule not in SEGMENT_RULES:
        raise ValueError(f"rule={rule!r}: allowed {SEGMENT_RULES}")
    decoded = decoded.float()
    if rule == "paper":
        labels = torch.zeros(decoded.shape[0], *decoded.shape[-2:], dtype=torch.long, device=decoded.device)
        for i in range(decoded.shape[1]):  # painting order: later ROIs over earlier ones
            labels[decoded[:, i].abs().amax(1) > tolerance] = i + 1
        return labels
    if rule == "argmax":
        magnitude = decoded.abs().mean(2)  # [B, K, H, W]
        best, index = magnitude.max(1)
        return torch.where(best > tolerance, index + 1, torch.zeros_like(index))
    if image is None:
        raise ValueError("rule='consistency' needs the input image")
    return _label_by_evidence(consistency_evidence(decoded, image), margin)


def consistency_evidence(decoded: Tensor, image: Tensor) -> Tensor:
    """e_i(p) = |D_i(p) - x(p)|_1 - |D_i(p)|_1 [B, K, H, W]: the consistency rule's evidence against ROI i (module doc)."""
    return (decoded.float() - image.float()[:, None]).abs().sum(2) - decoded.float().abs().sum(2)


def _label_by_evidence(evidence: Tensor, margin: float | Tensor) -> Tensor:
    margin = torch.as_tensor(margin, dtype=evidence.dtype, device=evidence.device)
    if margin.dim() == 1:
        if len(margin) != evidence.shape[1]:
            raise ValueError(f"margin: one value per ROI expected ({evidence.shape[1]}), got {len(margin)}")
        margin = margin.view(1, -1, 1, 1)
    elif margin.dim() != 0:
        raise ValueError(f"margin: a number or one value per ROI, got shape {tuple(margin.shape)}")
    best, index = (evidence + margin).min(1)
    return torch.where(best < 0, index + 1, torch.zeros_like(index))


@torch.no_grad()
def fit_margins(decoded: Tensor, image: Tensor, truth: Tensor, grid: Tensor | None = None,
                sweeps: int = 3) -> Tensor:
    """Per-ROI margins [K] of the consistency rule that maximise the mean F1 over the ROIs on labelled faces.

    Coordinate ascent from all-zero margins (the plain rule): each sweep sets each m_i in turn to the value of `grid`
    (default -1 to 1 in steps of 0.02, in units of e, an L1 over RGB: a margin of -0.4, the edge of an
    earlier -0.4..0.4 grid, was picked for hair) with the best mean F1, the others held;
    ties keep the value nearest 0. `truth` [B, H, W] holds 0 for background and i + 1 for ROI i, as `segment` returns.
    Fit on training faces, score on others: the margins are K numbers picked for F1 on these faces.
    """
    evidence = consistency_evidence(decoded, image)
    k = evidence.shape[1]
    if truth.shape != (evidence.shape[0], *evidence.shape[2:]):
        raise ValueError(f"truth must be [B, H, W] = {(evidence.shape[0], *evidence.shape[2:])}, got "
                         f"{tuple(truth.shape)}")
    grid = torch.arange(-50, 51) * 0.02 if grid is None else torch.as_tensor(grid, dtype=torch.float32)
    grid = grid[grid.abs().argsort(stable=True)].to(evidence.dtype)  # nearest 0 first: ties keep the smallest margin
    margins = torch.zeros(k, dtype=evidence.dtype)
    for _ in range(sweeps):
        for i in range(k):
            scores = _mean_f1_over_margins(evidence, truth, margins, i, grid)
            margins[i] = grid[int(scores.argmax())]
    return margins


def _mean_f1_over_margins(evidence: Tensor, truth: Tensor, margins: Tensor, i: int, values: Tensor) -> Tensor:
    """Mean F1 over the ROIs of the consistency rule for each value of m_i in `values`, the other margins held.

    The labels are `_label_by_evidence`'s (ties to the lower ROI index, as torch.min's first minimum) without labelling
    the image once per value: a pixel takes ROI i when e_i + m_i < 0 and beats the others' best e_j + m_j, which holds
    for every m_i below a per-pixel threshold; otherwise it keeps the label the other ROIs give it. So one count of
    pixels by (threshold, truth, fallback label) gives every candidate's confusion matrix.
    """
    k = evidence.shape[1]
    shifted = evidence + margins.view(1, -1, 1, 1).to(evidence)
    others = [j for j in range(k) if j != i]
    other_best, other_pick = shifted[:, others].min(1)
    other_index = torch.tensor(others, device=evidence.device)[other_pick]
    fallback = torch.where(other_best < 0, other_index + 1, 0).reshape(-1)
    own, other_best, wins_ties = evidence[:, i].reshape(-1), other_best.reshape(-1), (i < other_index).reshape(-1)
    ascending, order = values.to(evidence).sort()
    below = torch.zeros_like(own, dtype=torch.long)  # how many of the ascending values give the pixel to ROI i
    for value in ascending:
        candidate = own + value
        below += (candidate < 0) & ((candidate < other_best) | ((candidate == other_best) & wins_ties))
    n, truth = k + 1, truth.reshape(-1).long().cpu()
    code = truth * n + fallback.cpu()
    kept = torch.bincount(code, minlength=n * n).view(n, n)  # every pixel at its fallback label
    by_threshold = torch.bincount(below.cpu() * n * n + code, minlength=(len(values) + 1) * n * n)
    taken = by_threshold.view(-1, n * n).flip(0).cumsum(0).flip(0)[1:].view(-1, n, n)  # [value, truth, fallback]
    confusion = kept - taken
    confusion[:, :, i + 1] += taken.sum(2)
    scores = torch.stack([f1_per_class(c)[1:].nanmean() for c in confusion])
    return scores[order.argsort()]


@torch.no_grad()
def segment_images(model: sae_lib.SwappingAutoencoder, image: Tensor, cfg: L2SConfig, rule: str = "consistency",
                   **kwargs: Any) -> Tensor:
    """Images [B, 3, H, W] -> ROI label maps [B, H, W] by masked decoding (one encoder and one generator call)."""
    return segment(roi_images(model, image, cfg), image, rule=rule, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Training


def l1_pixel_weights(roi_labels: Tensor, cfg: L2SConfig) -> Tensor | None:
    """Per-pixel weights of Eq. 1's L1, ROI-major [K * B, 1, H, W], mean 1 per item (None for the paper's plain mean).

    From the ROI ids [B, H, W] (0 background, 1..5 = ROI_NAMES) of the batch. For ROI i of image b, "roi_balanced"
    and "region_balanced" give its pixels one half of the weight; "roi_balanced" spreads the other half over the
    other pixels, "region_balanced" splits it equally among the other regions present in image b (each ROI id and
    the background is a region). An image without ROI i spreads the whole weight the same way over its pixels
    ("roi_balanced": every pixel 1; "region_balanced": every region present an equal share). "region_equal": every
    region present, ROI i included, an equal share (the same weights for all K targets).
    """
    if cfg.l1_weights == "paper":
        return None
    ids = torch.tensor([ROI_NAMES.index(name) + 1 for name in cfg.roi_names], device=roi_labels.device)
    inside = (roi_labels[None] == ids.view(-1, 1, 1, 1)).float()  # [K, B, H, W]
    if cfg.l1_weights == "roi_balanced":
        regions = torch.stack([1 - inside, inside], 2)  # [K, B, 2, H, W]: the rest, the ROI
    else:
        onehot = nn.functional.one_hot(roi_labels, len(ROI_NAMES) + 1).permute(0, 3, 1, 2).float()  # [B, R, H, W]
        rest = onehot[None] * (1 - inside[:, :, None])  # [K, B, R, H, W]: the other regions, ROI i removed
        regions = torch.cat([rest, inside[:, :, None]], 2)
    area = regions.mean(dim=(3, 4), keepdim=True)  # [K, B, n, 1, 1]
    present = (area > 0).float()
    roi_present = present[:, :, -1:]
    rest_count = present[:, :, :-1].sum(2, keepdim=True)
    if cfg.l1_weights == "region_equal":
        share = present / (rest_count + roi_present).clamp_min(1)
    else:
        share = torch.cat([torch.where(roi_present > 0, 0.5, 1.0) / rest_count.clamp_min(1) * present[:, :, :-1],
                           torch.where(rest_count > 0, 0.5, 1.0) * roi_present], 2)  # each region's share
    weights = (regions * share / area.clamp_min(1e-12)).sum(2)  # [K, B, H, W]
    return weights.flatten(0, 1)[:, None]


def losses(cfg: L2SConfig):
    """The step of Eq. 1-2 as functions (nets, batch, step): the shared forward (the K ROI decodes of each image, made
    once per step with the generator's gradients) and the phase losses (d, r1, g) -> (loss, logs).

    Batches hold "image" [B, 3, H, W] and "roi_images" [B, K, 3, H, W] (the targets Y_i, in the order of the slices).
    The K ROIs of a batch are stacked ROI-major into one batch of K * B items; the swap partner of item (i, b) is
    (i, b ^ 1), the same ROI of the neighbouring image, since B is even.
    """
    scfg = cfg.sae

    def decodes(nets, batch, step):
        image, rois = batch["image"], batch["roi_images"]
        k = len(cfg.slices)
        if rois.shape[1] != k:
            raise ValueError(f"roi_images has {rois.shape[1]} ROIs, the config has {k} slices")
        structure, texture = nets["sae"].encode(image)
        codes = masked_structures(structure, slice_masks(cfg))
        rec, swap = sae_lib.decode_pair(nets["sae"], codes, texture.repeat(k, 1))  # one generator call
        return {"targets": roi_major(rois, image), "rec": rec, "swap": swap}  # ROI-major [K * B, 3, H, W]

    def d_loss(nets, batch, step):
        image_loss, patch_loss = sae_lib.discriminator_terms(scfg, nets, batch["targets"], batch["rec"].detach(),
                                                             batch["swap"].detach())
        return image_loss + patch_loss, {"d": image_loss.detach(), "d_patch": patch_loss.detach()}

    def r1_loss(nets, batch, step):
        r1, r1_patch = sae_lib.r1_terms(scfg, nets, batch["targets"])
        loss = (scfg.r1_gamma / 2 * r1 + scfg.r1_gamma_patch / 2 * r1_patch) * scfg.r1_every
        return loss, {"r1": r1.detach(), "r1_patch": r1_patch.detach()}

    def g_loss(nets, batch, step):
        weights = l1_pixel_weights(batch["roi_labels"], cfg)
        # every term is a mean over the K * B items: the mean over ROIs of l_i, i.e. Eq. 2 with weights 1/K
        l1, gan_rec, gan_swap, cooccur = sae_lib.decoded_generator_terms(scfg, nets, batch["targets"], batch["rec"],
                                                                         batch["swap"], pixel_weights=weights)
        loss = (cfg.lambda_l1 * l1 + cfg.lambda_gan_rec * gan_rec + cfg.lambda_gan_swap * gan_swap
                + cfg.lambda_cooccur * cooccur)
        return loss, {"l1": l1.detach(), "g_rec": gan_rec.detach(), "g_swap": gan_swap.detach(),
                      "g_cooccur": cooccur.detach()}

    return decodes, d_loss, r1_loss, g_loss


def build(cfg: L2SConfig, init: Mapping[str, Mapping[str, Tensor]] | None) -> dict[str, nn.Module]:
    """The SAE's networks ('sae', 'disc', 'patch_disc'), loaded from the state dicts `init` of a trained SAE."""
    nets = sae_lib.build(cfg.sae)
    for name, state in (init or {}).items():
        nets[name].load_state_dict(state)
    return nets


def training_spec(cfg: L2SConfig, data, init: Mapping[str, Mapping[str, Tensor]] | None, steps: int,
                  batch_size: int, seed: int, init_id: Mapping[str, Any] | None = None, **loop: Any) -> TrainSpec:
    """The TrainSpec "l2s": the shared decodes, D phase, lazy R1 and G phase of Eq. 1-2, from the trained SAE's weights.

    `init` maps 'sae', 'disc', 'patch_disc' to state dicts (e.g. {k: v.state_dict() for k, v in trained.nets.items()}
    of the SAE's `Trained`); None starts from scratch. `init_id` names that SAE in the cache key (e.g. its checkpoint);
    the items of `data` hold "image" and "roi_images" (ToROI(cfg.roi_names)). Extra keyword arguments go to TrainSpec.
    """
    if batch_size % 2:
        raise ValueError(f"batch_size={batch_size}: must be even (swap pairs 2i <-> 2i+1)")
    if init is not None:
        missing = [k for k in ("sae", "disc", "patch_disc") if k not in init]
        if missing:
            raise ValueError(f"init lacks the state dicts {missing} (need 'sae', 'disc', 'patch_disc')")
    decodes, d_loss, r1_loss, g_loss = losses(cfg)
    scfg = cfg.sae
    phases = [Phase("d", d_loss, "d"), Phase("r1", r1_loss, "d", every=scfg.r1_every), Phase("g", g_loss, "g")]
    config = {"model": dataclasses.asdict(cfg), "init": None if init is None else dict(init_id or {})}
    return TrainSpec(name="l2s", config=config, build=lambda: build(cfg, init),
                     optimizers=lambda n: sae_lib.optimizers(n, scfg), phases=phases, steps=steps,
                     batch_size=batch_size, seed=seed, data=data, shared=SharedForward("decodes", decodes, "g"),
                     **loop)


# ----------------------------------------------------------------------------------------------------------------
# The book's model (chapters 02 and 03 train or load the same checkpoints through helpers.book_models)

EVALUATED_NETS = ("sae",)


def book_config(run: Any) -> L2SConfig:
    """The model of a run (helpers.config.RunConfig): the SAE of the profile's `sae` row, the dataset's slicing, and
    the `l2s` row's deviations from the paper (`model`, e.g. the ROI-balanced L1 below the paper profile)."""
    cfg = L2SConfig(sae=sae_lib.book_config(run.family("sae")), slices=HELEN_SLICES if run.dataset == "helen"
                    else PAPER_SLICES, roi_names=HELEN_ROIS if run.dataset == "helen" else PAPER_ROIS)
    return dataclasses.replace(cfg, **run.family("l2s").model)


def book_spec(row: Any, split: Mapping[str, Tensor], seed: int, sae: Trained,
              config: L2SConfig | None = None) -> TrainSpec:
    """Latents2Segments fine-tuned from the trained SAE `sae` (its checkpoint names it in the key) on the split's
    "image" and "labels" (ROI targets built by ToROI); `config` (e.g. `book_config(run)`) or the row's size with the
    paper's five slices and the row's deviations."""
    cfg = config or dataclasses.replace(scaled_config(row.resolution, row.width), **row.model)
    if row.lr is not None:
        cfg = dataclasses.replace(cfg, sae=dataclasses.replace(cfg.sae, lr=row.lr))
    init = {name: net.state_dict() for name, net in sae.nets.items()}
    data = InMemory({"image": split["image"], "labels": split["labels"]}, transform=ToROI(cfg.roi_names))
    return training_spec(cfg, data, init, steps=row.steps, batch_size=row.batch_size, seed=seed,
                         init_id={"sae": sae.path.stem})


__all__ = [
    "PAPER_SLICES", "PAPER_ROIS", "HELEN_SLICES", "HELEN_ROIS", "SEGMENT_RULES", "L2SConfig", "paper_config",
    "L1_WEIGHTS", "l1_pixel_weights",
    "scaled_config", "slice_masks", "masked_structures", "roi_major", "decode_rois", "roi_images", "segment",
    "consistency_evidence", "fit_margins",
    "segment_images", "losses", "build", "training_spec", "roi_targets", "book_config", "EVALUATED_NETS",
    "book_spec",
]
