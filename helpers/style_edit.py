"""Latents2Semantics (Tomar & Rajagopalan, paper 002): localized style editing with two autoencoders.

The SMN is a plain Swapping Autoencoder (global style); the SMPN is the sliced Latents2Segments model, whose ROI
decodes give the ROI masks (`helpers.models.l2s`). Algorithm 1: add mu * N(0, I) to the SMN's texture vector S_t and
decode with the unchanged structure S_s (a globally edited image y); decode the chosen ROI's slice with the SMPN and
call the ROI mask m where that decode is positive; then Algorithm 2 (alpha matting): alpha = m (x) sigma(3, 3),
x_hat = (1 - alpha) x + alpha y, x_hat = x_hat (x) sigma(3, 3). The same pieces give the paper's style swap (Fig. 4:
the texture of a reference image inside the ROI) and ROI-wise structure editing (Fig. 5: noise in one slice of S_s).
Every function is batched: images, ROIs and noise draws go through each network as one batch.

Choices made here, on purpose:

- Kernel. The paper's sigma(3, 3) is "a standard 3x3 Gaussian convolution kernel"; its printed formula
  (1 / sqrt(2 pi)) exp(-(i^2 + j^2) / 2) is unnormalised (for offsets i, j in {-1, 0, 1} its taps sum to 1.95)
  and indexes i, j in [0, 3]. We use the binomial kernel [1, 2, 1] (x) [1, 2, 1] / 16 (sums to 1, so a flat image
  stays flat), with replicate padding (a flat image stays flat up to its border too, and an all-ones mask gives
  alpha = 1 everywhere).
- Final blur. Algorithm 2, line 3 ("x_hat = x_hat (x) sigma(3, 3)") blurs the WHOLE blended image, not only the
  matte's edge: outside the ROI the output is blur3(x), not x. We do as the paper (`final_blur=True`);
  `final_blur=False` is the ablation. Measure localisation against blur3(x) when the final blur is on
  (`helpers.metrics.change_inside_share`).
- Kernel width at other resolutions (`scale`, the book's scaling below the paper's 128 px). sigma(3, 3) is a width in
  pixels of the paper's faces: its SMPN is paper 000's L2S, trained on CelebAMask-HQ at 128 x 128, and paper 002
  names no other size (were its edits made larger, its blur would be narrower in face units still, and the scaled
  kernel the more conservative). At 64 px the same kernel blurs twice as much of
  the face: a 1-px matte edge plus a 1-px final blur is 2 of 64 px, and for the eyes (about 1.5 % of the image) even a
  perfect mask then keeps only about 80 % of the edit's change inside the ROI. `gaussian_kernel3(scale)` keeps the
  3 x 3 support and the paper's blur in face units: taps [a, 1 - 2a, a] per axis with a = scale^2 / 4, whose
  variance scale^2 / 2 px^2 is the binomial kernel's 1/2 px^2 at 128 px seen at resolution 128 * scale
  (`matte_scale(resolution)` = resolution / 128, at most 1: the paper's kernel at 128 px and above).
- Noise. The draws are N(0, I) of shape [n_draws, D], shared by every image of the batch and drawn from a CPU
  generator seeded with `seed`: draw j is the same style perturbation for every face, and the result for an image
  does not depend on the batch it was processed in. Per-image draws [B, n_draws, D] can be passed as `noise`.
  The noisy texture is decoded as it is (the paper); the noise's norm is about mu * sqrt(D) against 1 for the
  encoder's unit-norm codes, so mu = 1 / sqrt(D) already perturbs the code by as much as its own length.
  `renormalize=True` projects the noisy texture back onto the unit sphere the decoder was trained on.
- Noise shape (`texture_noise_basis`, the book's deviation below the `paper` profile). A small SMN uses few of its
  texture vector's D directions: the codes of real faces vary mostly along a handful of them, and isotropic noise puts
  almost all of its length into directions the decoder ignores, so the edit barely shows until the code leaves the
  faces' distribution. `noise_basis=B` draws the noise as mu * z B with z ~ N(0, I) and B = Sigma^(1/2) sqrt(D / tr
  Sigma), Sigma the covariance of the texture codes of real faces: the same mean squared length as N(0, I), spread
  like the faces' own styles. `noise_basis=None` is Algorithm 1's N(0, I).
- ROI masks (`roi_masks`). "positive" is Algorithm 1, line 9 literally: a pixel is in ROI i where the SMPN's decode of
  slice i is > 0 in any RGB channel (ROIs may overlap). We read "> 0" in the book's [0, 1] image units, where the
  black of the ROI targets is 0 (in the SAE code's [-1, 1] units "> 0" would mean brighter than mid-grey), so any
  slightly positive decode of a black area counts. The rules of `l2s.SEGMENT_RULES` ("paper": |decode| > 0.05 with
  painting order, "consistency", "argmax") give one ROI per pixel; "consistency" is the default, as in chapter 2.
- Inversion baseline (`invert_latent`). The optimisation-based inversion the paper avoids: Adam on the L1 of the
  decode to the image, over raw codes that are L2-normalised as the encoder normalises its outputs (per position
  for the structure, the whole vector for the texture), so the codes stay on the sphere the decoder was trained on;
  it starts from the mean code of a set of images (`mean_codes`), as GAN inversions start from the mean latent.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import l1_per_image
from .models import l2s
from .models.sae import SwappingAutoencoder, l2_normalize

MASK_RULES: tuple[str, ...] = (*l2s.SEGMENT_RULES, "positive")
Roi = str | Sequence[str]


# ----------------------------------------------------------------------------------------------------------------
# Algorithm 2: alpha matting and blending


PAPER_RESOLUTION = 128  # the SMPN's faces (paper 000: CelebAMask-HQ at 128 x 128): sigma(3, 3) is in these pixels


def matte_scale(resolution: int) -> float:
    """Algorithm 2's kernel width at `resolution` in units of the paper's: resolution / 128, at most 1."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution={resolution!r}: must be a positive number of pixels")
    return min(1.0, resolution / PAPER_RESOLUTION)


def gaussian_kernel3(scale: float = 1.0) -> Tensor:
    """The 3x3 Gaussian sigma(3, 3) of Algorithm 2, t (x) t with t = [a, 1 - 2a, a], a = scale^2 / 4 (variance
    scale^2 / 2 px^2 per axis, sums to 1): scale 1 is the binomial [1, 2, 1] (x) [1, 2, 1] / 16."""
    _check_scale(scale)
    a = scale * scale / 4
    taps = torch.tensor([a, 1 - 2 * a, a])
    return torch.outer(taps, taps)


def blur3(images: Tensor, scale: float = 1.0) -> Tensor:
    """Every [H, W] plane of `images` [..., H, W] convolved with `gaussian_kernel3(scale)` (depthwise, replicate
    padding)."""
    if images.dim() < 2:
        raise ValueError(f"images must have at least 2 dims [..., H, W], got shape {tuple(images.shape)}")
    x = images if images.is_floating_point() else images.float()
    planes = F.pad(x.reshape(-1, 1, *x.shape[-2:]), (1, 1, 1, 1), mode="replicate")
    kernel = gaussian_kernel3(scale).to(x.device, x.dtype).view(1, 1, 3, 3)
    return F.conv2d(planes, kernel).view(x.shape)


def alpha_matte(mask: Tensor, scale: float = 1.0) -> Tensor:
    """Algorithm 2, line 1: alpha = m (x) sigma(3, 3), a soft matte [..., H, W] in [0, 1] from a bool/0-1 mask."""
    return blur3(mask, scale)


def blend(x: Tensor, y: Tensor, alpha: Tensor) -> Tensor:
    """Algorithm 2, line 2: (1 - alpha) x + alpha y (alpha broadcast against the images)."""
    return (1 - alpha) * x + alpha * y


def alpha_matting(x: Tensor, y: Tensor, mask: Tensor, final_blur: bool = True, scale: float = 1.0) -> Tensor:
    """Algorithm 2 (AlphaMatting): y [..., 3, H, W] over x inside mask [..., H, W] (soft edge), then blur it all;
    `scale` is the kernel's width (`matte_scale`)."""
    out = blend(x, y, alpha_matte(mask, scale).unsqueeze(-3))
    return blur3(out, scale) if final_blur else out


# ----------------------------------------------------------------------------------------------------------------
# Argument checks


def roi_index(l2s_cfg: l2s.L2SConfig, roi: str) -> int:
    """The slice index of ROI `roi`, with a clear error for unknown names."""
    if not isinstance(roi, str) or roi not in l2s_cfg.roi_names:
        raise ValueError(f"roi={roi!r}: allowed {l2s_cfg.roi_names}")
    return l2s_cfg.roi_names.index(roi)


def _roi_indices(l2s_cfg: l2s.L2SConfig, roi: Roi) -> tuple[list[int], bool]:
    """Slice indices of one ROI name or a sequence of them, and whether a single name was given."""
    if isinstance(roi, str):
        return [roi_index(l2s_cfg, roi)], True
    if not roi:
        raise ValueError(f"roi={roi!r}: give a name or a non-empty sequence of names from {l2s_cfg.roi_names}")
    return [roi_index(l2s_cfg, r) for r in roi], False


def _check_scale(scale: float) -> None:
    """The kernel width of `gaussian_kernel3`: a number in (0, 1] (its 3 taps hold at most the paper's width)."""
    if not (isinstance(scale, numbers.Real) and not isinstance(scale, bool) and 0 < scale <= 1):
        raise ValueError(f"scale={scale!r}: must be a number in (0, 1] (matte_scale(resolution) gives it)")


def _check_number(name: str, value: float, positive: bool = False) -> None:
    """Refuse anything but a finite real number >= 0 (> 0 when `positive`)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name}={value!r}: must be a finite number {'>' if positive else '>='} 0")


def _check_eval(model: SwappingAutoencoder, name: str) -> None:
    if model.training:
        raise ValueError(f"{name} is in training mode (its decoder injects random noise): call {name}.eval() first")


def _normal(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """N(0, 1) draws from `generator` (on its device), moved to `device`."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=where).to(device)


def _draws(noise: Tensor | None, n_draws: int, code_shape: Sequence[int], batch: int,
           generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Noise [B, n, *code_shape]: `noise` ([n, *code] shared or [B, n, *code]) or n_draws shared draws."""
    if noise is None:
        if not isinstance(n_draws, int) or n_draws < 1:
            raise ValueError(f"n_draws={n_draws!r}: must be an int >= 1")
        noise = _normal((n_draws, *code_shape), generator, device)
    code_shape = tuple(code_shape)
    if noise.dim() == len(code_shape) + 1 and tuple(noise.shape[1:]) == code_shape:
        noise = noise.expand(batch, *noise.shape)
    if noise.dim() != len(code_shape) + 2 or noise.shape[0] != batch or tuple(noise.shape[2:]) != code_shape:
        raise ValueError(f"noise must be [n, {', '.join(map(str, code_shape))}] or [B={batch}, n, ...], "
                         f"got {tuple(noise.shape)}")
    return noise.to(device)


# ----------------------------------------------------------------------------------------------------------------
# Algorithm 1 and its applications


def texture_noise_basis(textures: Tensor) -> Tensor:
    """B [D, D] = Sigma^(1/2) sqrt(D / tr Sigma), Sigma the covariance of `textures` [N, D] (the SMN's codes of real
    faces): z B with z ~ N(0, I) is spread like the faces' styles, with N(0, I)'s mean squared norm D."""
    if textures.dim() != 2 or textures.shape[0] < 2:
        raise ValueError(f"textures must be [N >= 2, D] (texture codes of real faces), got {tuple(textures.shape)}")
    values, vectors = torch.linalg.eigh(torch.cov(textures.double().T))
    values = values.clamp(min=0)
    if values.sum() <= 0:
        raise ValueError("textures: all codes are equal, their covariance is 0 (no direction to draw noise along)")
    root = (vectors * values.sqrt()) @ vectors.T
    return (root * math.sqrt(textures.shape[1] / values.sum().item())).to(textures.dtype)


@torch.no_grad()
def global_style_edit(smn: SwappingAutoencoder, image: Tensor | None, mu: float,
                      generator: torch.Generator | None = None, n_draws: int = 1, noise: Tensor | None = None,
                      codes: tuple[Tensor, Tensor] | None = None, renormalize: bool = False,
                      noise_basis: Tensor | None = None) -> Tensor:
    """Algorithm 1, lines 2 and 4-6: Decoder_SMN(S_s, S_t + mu N(0, I)) -> globally edited images [B, n, 3, H, W].

    `noise`: N(0, I) draws [n, D] shared by the batch or [B, n, D] per image (default: `n_draws` shared draws from
    `generator`); `codes`: the SMN's (S_s, S_t) of `image` when already computed (then `image` may be None);
    `noise_basis`: B [D, D] (`texture_noise_basis`): the texture moves by mu * draws @ B instead of mu * draws.
    """
    _check_number("mu", mu)
    _check_eval(smn, "smn")
    structure, texture = codes if codes is not None else smn.encode(image)
    b, d = texture.shape
    draws = _draws(noise, n_draws, (d,), b, generator, texture.device)
    if noise_basis is not None:
        if tuple(noise_basis.shape) != (d, d):
            raise ValueError(f"noise_basis must be [D, D] = [{d}, {d}] (texture_noise_basis), got "
                             f"{tuple(noise_basis.shape)}")
        draws = draws @ noise_basis.to(draws)
    n = draws.shape[1]
    noisy = (texture[:, None] + mu * draws.to(texture.dtype)).flatten(0, 1)  # [B * n, D]
    if renormalize:
        noisy = l2_normalize(noisy)
    out = smn.decode(structure.repeat_interleave(n, 0), noisy)
    return out.view(b, n, *out.shape[1:])


@torch.no_grad()
def roi_masks(smpn: SwappingAutoencoder, l2s_cfg: l2s.L2SConfig, image: Tensor, rule: str = "consistency",
              **segment_kwargs: float | Tensor) -> Tensor:
    """Algorithm 1, lines 7-9: ROI masks bool [B, K, H, W] from the SMPN's K slice decodes, by `rule` (MASK_RULES)."""
    if rule not in MASK_RULES:
        raise ValueError(f"rule={rule!r}: allowed {MASK_RULES}")
    _check_eval(smpn, "smpn")
    return masks_from_decodes(l2s.roi_images(smpn, image, l2s_cfg), image, rule, **segment_kwargs)


def masks_from_decodes(decoded: Tensor, image: Tensor, rule: str = "consistency",
                       **segment_kwargs: float | Tensor) -> Tensor:
    """ROI masks bool [B, K, H, W] from the K slice decodes [B, K, 3, H, W] of `image` (one decode serves every rule).

    "positive" is the paper's Decoder_SMPN(Sroi_s, S_t) > 0 in any RGB channel (ROIs may overlap); the other rules
    are `l2s.segment`'s (one ROI per pixel; `segment_kwargs` are its tolerance and margin).
    """
    if rule not in MASK_RULES:
        raise ValueError(f"rule={rule!r}: allowed {MASK_RULES}")
    if rule == "positive":
        return (decoded > 0).any(dim=2)
    labels = l2s.segment(decoded, image, rule=rule, **segment_kwargs)
    ids = torch.arange(1, decoded.shape[1] + 1, device=labels.device)
    return labels[:, None] == ids[None, :, None, None]


def _masks_of(smpn: SwappingAutoencoder | None, l2s_cfg: l2s.L2SConfig, image: Tensor, rule: str,
              masks: Tensor | None, margin: float | Tensor) -> Tensor:
    """`masks` when given (checked: bool [B, K, H, W]), else `roi_masks(smpn, l2s_cfg, image, rule, margin=margin)`."""
    if rule not in MASK_RULES:
        raise ValueError(f"rule={rule!r}: allowed {MASK_RULES}")
    if masks is None:
        if smpn is None:
            raise ValueError("smpn=None: give the SMPN or precomputed masks")
        return roi_masks(smpn, l2s_cfg, image, rule, margin=margin)
    expected = (image.shape[0], len(l2s_cfg.roi_names), *image.shape[-2:])
    if tuple(masks.shape) != expected:
        raise ValueError(f"masks must be bool {list(expected)} (roi_masks of image), got {tuple(masks.shape)}")
    return masks.to(image.device)


@torch.no_grad()
def localized_style_edit(smn: SwappingAutoencoder, smpn: SwappingAutoencoder | None, l2s_cfg: l2s.L2SConfig,
                         image: Tensor, roi: Roi, mu: float, n_draws: int = 1, seed: int = 0,
                         rule: str = "consistency", noise: Tensor | None = None, masks: Tensor | None = None,
                         renormalize: bool = False, final_blur: bool = True, margin: float | Tensor = 0.0,
                         noise_basis: Tensor | None = None, blur_scale: float = 1.0) -> Tensor:
    """Algorithms 1 + 2 end to end: the style of ROI `roi` edited by mu N(0, I) -> images [B, n_draws, 3, H, W].

    A sequence of ROI names gives [B, R, n_draws, 3, H, W] (one global edit per draw, matted into each ROI).
    `noise` and `noise_basis` as in `global_style_edit` (default: n_draws shared draws seeded by `seed`); `masks`:
    precomputed `roi_masks(smpn, l2s_cfg, image, rule)` (then `smpn` may be None); `margin`: the consistency rule's
    margin, one number or one per ROI (`l2s.fit_margins`); `blur_scale`: Algorithm 2's kernel width (`matte_scale`).
    """
    indices, single = _roi_indices(l2s_cfg, roi)
    generator = torch.Generator().manual_seed(seed)
    y = global_style_edit(smn, image, mu, generator, n_draws, noise, renormalize=renormalize,
                          noise_basis=noise_basis)  # [B, n, 3, H, W]
    chosen = _masks_of(smpn, l2s_cfg, image, rule, masks, margin)[:, indices]  # [B, R, H, W]
    out = alpha_matting(image[:, None, None], y[:, None], chosen[:, :, None], final_blur, blur_scale)  # [B,R,n,3,H,W]
    return out[:, 0] if single else out


@torch.no_grad()
def style_swap(smn: SwappingAutoencoder, smpn: SwappingAutoencoder | None, l2s_cfg: l2s.L2SConfig, image: Tensor,
               reference: Tensor, roi: Roi, rule: str = "consistency", masks: Tensor | None = None,
               final_blur: bool = True, margin: float | Tensor = 0.0, blur_scale: float = 1.0) -> Tensor:
    """Fig. 4's selective style swap: Decoder_SMN(S_s(x), S_t(ref)) matted into x inside x's ROI -> [B, 3, H, W].

    `reference` [B, 3, H, W] pairs with `image`; a sequence of ROI names gives [B, R, 3, H, W]; `masks`, `margin` and
    `blur_scale` as in `localized_style_edit`.
    """
    indices, single = _roi_indices(l2s_cfg, roi)
    _check_eval(smn, "smn")
    if reference.shape != image.shape:
        raise ValueError(f"reference {tuple(reference.shape)} must have the shape of image {tuple(image.shape)}")
    structure, _ = smn.encode(image)
    _, texture = smn.encode(reference)
    y = smn.decode(structure, texture)
    chosen = _masks_of(smpn, l2s_cfg, image, rule, masks, margin)[:, indices]  # [B, R, H, W]
    out = alpha_matting(image[:, None], y[:, None], chosen, final_blur, blur_scale)
    return out[:, 0] if single else out


STRUCTURE_DECODES = ("full", "rois")


@torch.no_grad()
def structure_edit(model: SwappingAutoencoder, l2s_cfg: l2s.L2SConfig, image: Tensor, roi: Roi, strength: float,
                   generator: torch.Generator | None = None, n_draws: int = 1,
                   noise: Tensor | None = None, decode: str = "full") -> Tensor:
    """Fig. 5's ROI-wise structure editing: S_s + strength N(0, I) on the ROI's slice only, decoded with the unchanged
    S_t (no renormalisation, as l2s's masked codes) -> [B, n_draws, 3, H, W] ([B, R, n, 3, H, W] for several ROIs).

    `decode`: "full" decodes the whole edited code (the paper's Fig. 5); "rois" decodes every slice alone and sums the
    K ROI decodes (`roi_composite`), so only the edited slice's decode changes: the reconstruction of an SMPN that
    was trained on ROI images only, with no loss on the whole image (chapter 2).
    `noise`: N(0, I) draws [n, C, h, w] shared by the batch or [B, n, C, h, w] (default: n_draws from `generator`).
    """
    if decode not in STRUCTURE_DECODES:
        raise ValueError(f"decode={decode!r}: allowed {STRUCTURE_DECODES}")
    indices, single = _roi_indices(l2s_cfg, roi)
    _check_number("strength", strength)
    _check_eval(model, "model")
    structure, texture = model.encode(image)
    b = structure.shape[0]
    draws = _draws(noise, n_draws, structure.shape[1:], b, generator, structure.device)  # [B, n, C, h, w]
    n, r = draws.shape[1], len(indices)
    masks = l2s.slice_masks(l2s_cfg).to(structure)
    channels = masks[indices]  # [R, C]
    edited = structure[:, None, None] + strength * channels[None, :, None, :, None, None] * draws[:, None]
    if decode == "rois":  # only the edited slice is decoded again; the other K - 1 decodes stay as they were
        edited = edited * channels[None, :, None, :, None, None]
    out = model.decode(edited.flatten(0, 2), texture.repeat_interleave(r * n, 0))
    out = out.view(b, r, n, *out.shape[1:])
    if decode == "rois":
        rois = l2s.decode_rois(model, structure, texture, masks)  # [B, K, 3, H, W]
        out = out + (rois.sum(1)[:, None] - rois[:, indices])[:, :, None]
    return out[:, 0] if single else out


@torch.no_grad()
def roi_composite(model: SwappingAutoencoder, l2s_cfg: l2s.L2SConfig, image: Tensor) -> Tensor:
    """The sum of an image's K ROI decodes [B, 3, H, W]: an SMPN's reconstruction by its slices (Eq. 2's targets
    partition the face, so their sum is the face on a black background)."""
    _check_eval(model, "model")
    return l2s.roi_images(model, image, l2s_cfg).sum(1)


# ----------------------------------------------------------------------------------------------------------------
# Optimisation-based inversion (the baseline the paper avoids)


@dataclass(frozen=True)
class Inversion:
    """Result of `invert_latent`: codes on the encoder's unit sphere, Adam steps used and final L1, per image."""

    structure: Tensor  # [B, C, h, w]
    texture: Tensor  # [B, D]
    steps: Tensor  # [B] int64: steps taken until the L1 first reached target_error (max_steps if it never did)
    error: Tensor  # [B] float: L1 of the decode of (structure, texture) to the image


@torch.no_grad()
def mean_codes(model: SwappingAutoencoder, images: Tensor) -> tuple[Tensor, Tensor]:
    """Start of `invert_latent`: the mean structure [C, h, w] and texture [D] codes of `images`, L2-normalised."""
    _check_eval(model, "model")
    structure, texture = model.encode(images)
    return l2_normalize(structure.mean(0, keepdim=True))[0], l2_normalize(texture.mean(0, keepdim=True))[0]


def invert_latent(model: SwappingAutoencoder, image: Tensor, target_error: float | Tensor, max_steps: int = 200,
                  lr: float = 0.01, *, init: tuple[Tensor, Tensor]) -> Inversion:
    """Codes of `image` [B, 3, H, W] by Adam on L1(decode(codes), image) from `init` (`mean_codes`), per image until
    the L1 reaches `target_error` (a float or [B], e.g. the encoder's own L1) or after `max_steps` steps.

    The optimised raw codes are L2-normalised as the encoder normalises its outputs; the loss is the sum of the
    per-image L1s, so every image's codes follow their own gradient (Adam is element-wise): batching changes nothing
    but float rounding.
    """
    if not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps={max_steps!r}: must be an int >= 0")
    _check_number("lr", lr, positive=True)
    _check_eval(model, "model")
    b = image.shape[0]
    target = torch.as_tensor(target_error, dtype=torch.float32, device=image.device).expand(b)
    raw = [code.to(image.device, torch.float32).expand(b, *code.shape).clone().requires_grad_(True) for code in init]
    optimizer = torch.optim.Adam(raw, lr=lr)
    structure, texture = (torch.empty_like(code.detach()) for code in raw)
    steps = torch.full((b,), max_steps, dtype=torch.long, device=image.device)
    error = torch.empty(b, device=image.device)
    done = torch.zeros(b, dtype=torch.bool, device=image.device)
    with torch.enable_grad():
        for step in range(max_steps + 1):
            codes = l2_normalize(raw[0]), l2_normalize(raw[1])
            loss = l1_per_image(model.decode(*codes), image)
            new = ~done & ((loss.detach() <= target) | (step == max_steps))
            structure[new], texture[new] = codes[0].detach()[new], codes[1].detach()[new]
            steps[new], error[new] = step, loss.detach()[new]
            done |= new
            if done.all():
                break
            grads = torch.autograd.grad(loss.sum(), raw)
            for param, grad in zip(raw, grads):
                param.grad = grad
            optimizer.step()
    return Inversion(structure, texture, steps, error)


__all__ = [
    "MASK_RULES", "PAPER_RESOLUTION", "matte_scale", "gaussian_kernel3", "blur3", "alpha_matte", "blend",
    "alpha_matting", "roi_index",
    "texture_noise_basis", "global_style_edit", "roi_masks", "masks_from_decodes", "localized_style_edit",
    "style_swap", "structure_edit", "roi_composite", "STRUCTURE_DECODES", "Inversion", "mean_codes", "invert_latent",
]
