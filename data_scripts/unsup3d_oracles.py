"""Why unsup3d does not find the view at the cpu profile: the same training with parts of its decomposition replaced by
SynthFaces' truth ("oracles"), on real 32-px renders, scored by the correlation of the predicted yaw and pitch with the
true ones on held-out renders.

Each variant trains `helpers.models.unsup3d.Unsup3d` (the cpu row's size: width 32, zdim 128) with unsup3d's loss
(`symmetric_loss`: the reconstruction and its flipped twin, confidence maps from the model) for `--steps` steps of
`--batch`, but takes the named parts from the truth instead of the networks:
- depth: SynthFaces' canonical depth, clamped to unsup3d's range [0.9, 1.1];
- albedo: SynthFaces' canonical albedo over its background (unsup3d's surface is opaque everywhere);
- light: the true ambient and diffuse RGB and direction (`semantics.true_semantics`).
A first row scores the truth itself in its true view (no training), a last row fits the view alone per image (no
network: six numbers per face from the frontal view, Adam, lr 0.01, 200 steps) with all three given. Every evaluation
gives the reconstruction's and the flipped reconstruction's plain L1 (unsup3d's two photometric terms without the
confidence maps, which the truth does not have) and their sum with unsup3d's weights, so the truth and each trained
model can be compared on the objective; after training, each model's own objective (confidence-weighted, as trained)
is scanned over an added x-translation of -1 to 1 pixel (`translation_profile`): how the loss changes when the
rendered face moves by a fraction of a pixel. `--neutral-light-steps` tests a curriculum instead of an oracle: the
light held at the light network's neutral start (ambient and diffuse 0.5, frontal) for the first N steps, learned
after that. `--lever` runs unsup3d (nothing given, or the `--given` parts) with one change of its training each
(`name:key=value,...`): per-network learning-rate multipliers (`lr_depth`, `lr_albedo`, `lr_light`, `lr_view`,
`lr_confidence`), the flip term's weight (`lam_flip`), the canonical depth and albedo made exactly symmetric
(`symmetric=1`), a fixed face-shaped bump of the given height subtracted from the canonical depth (`depth_bump`),
uniform noise added to the predicted view during training only, up to `view_noise_deg` degrees on each angle and
`view_noise_px` image pixels on the x and y translation (`unsup3d.view_noise`: the objective averaged over nearby
views, randomised smoothing of the sharp minimum `translation_profile` shows), and canonical depth and albedo decoded
at `canonical_scale` times the image's resolution, rendered one ray per canonical pixel and area-averaged to the
image (so that no view samples the canonical maps pixel-exactly at the image's resolution), the pixels near the edges
left out of the loss (`loss_border`), the confidence maps replaced by 1 (`fixed_sigma=1`, unsup3d's ablation without
confidence), paper 004's mutual reconstruction with the next image of the batch (`mutual`, its probability), the
same with each face's partner the same face rendered in another view (`twin_mutual`: a multi-view signal no
single-image method has, an oracle of its own kind), the loss counted on the head's pixels only (`head_loss=1`:
the true foreground mask, an oracle) or on the pixels that are head in at least half the training renders
(`average_head_loss=1`: one fixed window, no per-image truth), the training and test renders framed as unsup3d frames
its faces, their central `crop` pixels resized to the resolution (`centre_crop`: the head fills the image), and
unsup3d's perceptual term with the book's features in place of VGG16 (`lam_perc`, its weight; the feature network of
the cpu features row's width and steps trained on the training renders, `perceptual_features`), and a static
background behind the head, which unsup3d does not have (`background_layer=G`: a G x G background from the image and
a canonical opacity that turns with the head, `BackgroundLayer`; the loss on every pixel; `opacity_prior` adds its
weight x the mean transparency of the canonical opacity, unsup3d's surface being opaque everywhere); with
`--resolution` the renders and the model are at that size. Every evaluation also gives the yaw signal
(`yaw_signal`): how well the gradient of the objective with respect to each face's predicted yaw points to its true
yaw; and each run scores it for the truth itself by pixel group (`truth_signal`), from the frontal view and from half
the true one.

    python data_scripts/unsup3d_oracles.py                     # the ladder, ~10 min on 2 cores
    python data_scripts/unsup3d_oracles.py --steps 100 --train 256 --test 64 --out /tmp/oracles   # quick look
    python data_scripts/unsup3d_oracles.py --given depth,albedo,light --steps 2400 --evals 8 \
        --out book/figures/curves/unsup3d_view_only                 # how long the view network alone needs
    python data_scripts/unsup3d_oracles.py --given '' --neutral-light-steps 300,600 \
        --out book/figures/curves/unsup3d_neutral_light             # the light held frontal for 300 / 600 steps
    python data_scripts/unsup3d_oracles.py --lever "view lr x10:lr_view=10" --lever "flip 2:lam_flip=2" \
        --out book/figures/curves/unsup3d_levers                    # levers of the training itself
    python data_scripts/unsup3d_oracles.py --device cuda --threads 16 --resolution 64 --width 64 --batch 64 \
        --train 8192 --given '' --steps 20000 --evals 20 --out $OUT/unsup3d_64px_unsup3d_size   # on a GPU

The tables are saved after every evaluation, so a run stopped early keeps what it measured.

Writes <out>/unsup3d_oracles.json and .md (default book/figures/curves/).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch

from helpers import render
from helpers.config import resolve_device
from helpers.data.memory import InMemory
from helpers.data.synthfaces import SynthFaces
from helpers.models import features, unsup3d
from helpers.train import train as train_spec
from helpers.models.semantics import true_semantics

PARTS = ("depth", "albedo", "light")
NETWORKS = ("depth", "albedo", "light", "view", "confidence")
LEVERS = {**{f"lr_{n}": float for n in NETWORKS}, "lam_flip": float, "symmetric": int, "depth_bump": float,
          "view_noise_deg": float, "view_noise_px": float, "canonical_scale": int,
          "loss_border": int, "fixed_sigma": int, "mutual": float, "twin_mutual": float,
          "head_loss": int, "average_head_loss": int, "crop": int, "lam_perc": float, "background_layer": int,
          "opacity_prior": float}
CONFIG_LEVERS = ("lam_flip", "view_noise_deg", "view_noise_px", "canonical_scale", "loss_border", "mutual", "lam_perc")
TRAIN_SEED, TEST_SEED = 11, 12  # SynthFaces seeds of the training and held-out renders
FEATURE_WIDTH, FEATURE_STEPS, FEATURE_BATCH = 16, 400, 64  # the perceptual term's network: the cpu features row
NEUTRAL_LIGHT = torch.tensor([0.5] * 6 + [0.0, 0.0])  # the light network's output at 0: ambient, diffuse, frontal
LINE_STEPS = tuple(i / 10 for i in range(11))  # line_to_truth's points
SHIFTS_PX = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)  # translation_profile's offsets
TRUTH_ROW = "the truth in its true view (no training)"
FIT_ROW = "per-image view fit (no network, from frontal), true depth, albedo and light"
FIT_WINDOW_PX = 3
FIT_VARIANTS = {FIT_ROW: "rendered",  # fit_views' `pixels`: which pixels its loss counts
                "the same fit, loss on the pixels the true view renders (an oracle mask)": "true view",
                f"the same fit, loss without the {FIT_WINDOW_PX} px along each edge": FIT_WINDOW_PX}
LADDER = (("unsup3d, nothing given", ()), ("true depth", ("depth",)), ("true depth and albedo", ("depth", "albedo")),
          ("true depth and light", ("depth", "light")), ("true depth, albedo and light", PARTS))


def clock() -> float:
    """Seconds (time.perf_counter), after the GPU's queued work where there is one."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def true_parts(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SynthFaces' truth in unsup3d's terms: canonical depth [B,1,R,R], opaque albedo [B,3,R,R], light [B,8]."""
    alpha = batch["canonical_mask"]
    return {"depth": batch["depth"].clamp(0.9, 1.1),
            "albedo": batch["albedo"] * alpha + batch["background"] * (1 - alpha),
            "light": true_semantics(batch["view"], batch["light"])[:, 6:14]}


def parse_lever(text: str) -> tuple[str, dict]:
    """"name:key=value,..." -> (name, {key: value}) with keys from LEVERS."""
    name, _, settings = text.partition(":")
    lever = {}
    for item in filter(None, settings.split(",")):
        key, eq, value = item.partition("=")
        if key not in LEVERS or not eq:
            raise SystemExit(f"--lever {text!r}: {item!r} is not key=value with a key in {sorted(LEVERS)}")
        lever[key] = LEVERS[key](value)
    if not name or not lever:
        raise SystemExit(f"--lever {text!r}: expected 'name:key=value,...'")
    return name, lever


def face_bump(resolution: int) -> torch.Tensor:
    """A fixed face-shaped bump [1, 1, R, R], 1 at the centre of an upright ellipse, ~0 at the border."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, resolution), torch.linspace(-1, 1, resolution), indexing="ij")
    return torch.exp(-2 * (x ** 2 / 0.45 + (y + 0.05) ** 2 / 0.7))[None, None]


def constrain(parts: dict[str, torch.Tensor], lever: dict, cfg: unsup3d.Unsup3dConfig) -> dict[str, torch.Tensor]:
    """The lever's changes to the networks' depth and albedo: a bump towards the camera (within the config's depth
    range), exact symmetry."""
    if lever.get("depth_bump"):
        bump = face_bump(parts["depth"].shape[-1]).to(parts["depth"])
        parts["depth"] = (parts["depth"] - lever["depth_bump"] * bump).clamp(cfg.min_depth, cfg.max_depth)
    if lever.get("symmetric"):
        parts["depth"] = (parts["depth"] + parts["depth"].flip(3)) / 2
        parts["albedo"] = (parts["albedo"] + parts["albedo"].flip(3)) / 2
    return parts


def centre_crop(batch: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    """The renders' central `keep` x `keep` pixels resized back to their resolution (bilinear): image, twin image,
    mask and view depth, as unsup3d frames its faces (synface: the central 170 px of each render; CelebA: tight face
    crops), so that the head fills the image. Canonical truths are left as they are (not with --given)."""
    size = batch["image"].shape[-1]
    if not 8 <= keep <= size:
        raise SystemExit(f"crop={keep}: expected the pixels kept, 8..{size}")
    o = (size - keep) // 2

    def resized(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x[..., o:o + keep, o:o + keep].float(), size=size, mode="bilinear",
                                               align_corners=False)
    return {**batch, **{k: resized(batch[k]) for k in ("image", "twin_image", "mask", "view_depth") if k in batch}}


def twin_images(args, views: torch.Tensor) -> torch.Tensor:
    """The training faces, each rendered in the view of another training face (a fixed shuffle): the same
    identity, expression, light and background seen from two views."""
    other = torch.randperm(len(views), generator=torch.Generator().manual_seed(args.seed))
    return training_faces(args).batch(range(args.train), views=views[other])["image"]


def training_faces(args) -> SynthFaces:
    """The training renders' dataset (seed TRAIN_SEED; the test renders use TEST_SEED)."""
    return SynthFaces(resolution=args.resolution, seed=TRAIN_SEED, length=args.train)


def average_head(train: dict) -> torch.Tensor:
    """[1, 1, R, R] the pixels that are head in at least half the training renders: one fixed window for every
    face, no per-image truth (`average_head_loss`)."""
    return ((train["mask"] > 0.5).float().mean(0, keepdim=True) >= 0.5).float()


def perceptual_features(train: dict, args, crop: int = 0) -> unsup3d.PerceptualFeatures:
    """The perceptual term's features (`lam_perc`): a FeatureNet of the cpu features row's width and steps trained on
    the training renders' attributes (as chapter 4 trains its own; framed by `crop` if any), in the checkpoint cache."""
    cfg = features.scaled_config(args.resolution, FEATURE_WIDTH, train["attributes"].shape[1])
    spec = features.training_spec(cfg, InMemory({"image": train["image"], "attributes": train["attributes"]}),
                                  steps=FEATURE_STEPS, batch_size=min(FEATURE_BATCH, len(train["image"])),
                                  seed=args.seed)
    spec.precision, spec.channels_last = "fp32", False
    spec.data_id = {"dataset": "synthfaces", "seed": TRAIN_SEED, "length": args.train, "resolution": args.resolution,
                    "crop": crop}
    return unsup3d.PerceptualFeatures(train_spec(spec, device=train["image"].device, progress=False).nets["features"])


class BackgroundLayer(torch.nn.Module):
    """Not in unsup3d (the `background_layer` lever): a static background behind the head. From the image, a
    `grid` x `grid` RGB background bilinearly upsampled to the image (too coarse to draw a face) and a canonical
    opacity map, which turns with the head (warped by the renderer like the albedo) and is flipped with it; the
    reconstruction is opacity x unsup3d's rendering + (1 - opacity) x the background, on every pixel."""

    def __init__(self, cfg: unsup3d.Unsup3dConfig, grid: int):
        super().__init__()
        if not 1 <= grid <= cfg.resolution // 4:
            raise SystemExit(f"background_layer={grid}: expected the background's grid size, 1..{cfg.resolution // 4}")
        self.grid, self.resolution = grid, cfg.resolution
        self.background_net = unsup3d.Encoder(3, 3 * grid * grid, cfg.resolution, cfg.width)
        self.opacity_net = unsup3d.EncoderDecoder(3, 1, cfg.resolution, cfg.width, cfg.zdim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, R, R] -> background [B, 3, R, R] in [0, 1], canonical opacity [B, 1, R, R] in (0, 1)."""
        x = image * 2 - 1
        coarse = (self.background_net(x).view(-1, 3, self.grid, self.grid) + 1) / 2
        background = torch.nn.functional.interpolate(coarse, size=self.resolution, mode="bilinear",
                                                     align_corners=True)
        return background, torch.sigmoid(self.opacity_net(x))


def layered_reconstruction(parts: dict[str, torch.Tensor], opacity: torch.Tensor, background: torch.Tensor,
                           view: torch.Tensor, fov: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(image [B, 3, R, R], warped opacity [B, 1, R, R]): unsup3d's rendering of `parts` in `view` over the static
    background, weighted by the canonical opacity carried into the view (0 where no surface is hit)."""
    canon = unsup3d.canonical_image(parts["depth"], parts["albedo"], parts["light"], fov)
    b = canon.shape[0]
    flat = render.Light(ambient=canon.new_ones(b, 1), diffuse=canon.new_zeros(b, 1),
                        direction=canon.new_tensor([0.0, 0.0, -1.0]).expand(b, 3))
    out = render.render(parts["depth"], canon, flat, view, extra=opacity, fov_deg=fov, supersample=1)
    seen = out["extra"]
    return seen * out["image"] + (1 - seen) * background, seen


def layered_loss(parts: dict[str, torch.Tensor], opacity: torch.Tensor, background: torch.Tensor,
                 view: torch.Tensor, image: torch.Tensor, sigma: torch.Tensor, cfg: unsup3d.Unsup3dConfig
                 ) -> torch.Tensor:
    """unsup3d's objective (the reconstruction + `lam_flip` x the one from the flipped depth, albedo and opacity,
    confidence-weighted L1) with the background layer, counted on every pixel."""
    b = image.shape[0]
    both = {"depth": torch.cat([parts["depth"], parts["depth"].flip(3)]),
            "albedo": torch.cat([parts["albedo"], parts["albedo"].flip(3)]), "light": parts["light"].repeat(2, 1)}
    recon, _ = layered_reconstruction(both, torch.cat([opacity, opacity.flip(3)]), background.repeat(2, 1, 1, 1),
                                      view.repeat(2, 1), cfg.fov)
    every = torch.ones_like(image[:, :1])
    return (unsup3d.photometric_loss(recon[:b], image, every, sigma[:, 0:1])
            + cfg.lam_flip * unsup3d.photometric_loss(recon[b:], image, every, sigma[:, 1:2]))


@torch.no_grad()
def layer_scores(model: unsup3d.Unsup3d, layer: BackgroundLayer, test: dict[str, torch.Tensor]) -> dict[str, float]:
    """The layer on the test renders: the mean warped opacity on the true head and on the true background, the plain
    L1 of the layered reconstruction, and the yaw signal (`yaw_signal`'s correlation) of the layered objective (plain
    L1 + lam_flip x flip L1 on every pixel: `layered_loss` with sigma = sqrt 2), which replaces that of unsup3d's
    rendering alone."""
    parts = model.decompose(test["image"])
    background, opacity = layer(test["image"])
    recon, seen = layered_reconstruction(parts, opacity, background, parts["view"], model.cfg.fov)
    view = parts["view"].clone().requires_grad_(True)
    plain = torch.full_like(test["image"][:, :2], math.sqrt(2))  # sigma = sqrt(2): the confidence loss is plain L1
    with torch.enable_grad():
        grad, = torch.autograd.grad(layered_loss(parts, opacity, background, view, test["image"], plain, model.cfg),
                                    view)
    head = (test["mask"] > 0.5).float()
    return {"opacity_head": ((seen * head).sum() / head.sum()).item(),
            "opacity_background": ((seen * (1 - head)).sum() / (1 - head).sum()).item(),
            "layered_l1": (recon - test["image"]).abs().mean().item(),
            "yaw_signal": torch.corrcoef(torch.stack([-grad[:, 0], test["view"][:, 0]]))[0, 1].item()}


def sigma_maps(model: unsup3d.Unsup3d, image: torch.Tensor, lever: dict | None = None) -> torch.Tensor:
    """The model's confidence maps [B, 2, R, R], or 1 everywhere with the `fixed_sigma` lever (unsup3d's ablation
    without confidence: the plain L1 times sqrt(2))."""
    if (lever or {}).get("fixed_sigma"):
        return image.new_ones(image.shape[0], 2 + 2 * (model.cfg.lam_perc > 0), *image.shape[-2:])
    return model.confidence(image)


def decompose(model: unsup3d.Unsup3d, image: torch.Tensor, truth: dict[str, torch.Tensor], given: tuple[str, ...],
              neutral_light: bool = False, lever: dict | None = None):
    """The model's decomposition (changed by `lever`) with the `given` parts replaced by the truth (the light by
    NEUTRAL_LIGHT if `neutral_light`)."""
    parts = constrain(model.decompose(image), lever or {}, model.cfg)
    parts.update({k: truth[k] for k in given})
    if neutral_light:
        parts["light"] = NEUTRAL_LIGHT.to(image).expand(image.shape[0], -1)
    return parts


def view_scores(view: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Correlation of predicted yaw and pitch with the truth, and the spread (degrees) of the predicted yaw."""
    yaw, pitch = torch.rad2deg(view[:, 0]), torch.rad2deg(view[:, 1])
    true = torch.rad2deg(batch["view"][:, :2])
    corr = [torch.corrcoef(torch.stack([p, t]))[0, 1].item() for p, t in ((yaw, true[:, 0]), (pitch, true[:, 1]))]
    return {"yaw_corr": corr[0], "pitch_corr": corr[1], "yaw_std": yaw.std().item(),
            "true_yaw_std": true[:, 0].std().item()}


def reconstruction_l1(parts: dict[str, torch.Tensor], image: torch.Tensor, fov: float) -> float:
    rec = unsup3d.reconstruct(parts["depth"], parts["albedo"], parts["light"], parts["view"], fov, size=image.shape[-1])
    return ((rec["image"] - image).abs() * rec["mask"]).sum().item() / (3 * rec["mask"].sum().clamp_min(1).item())


def objective_terms(parts: dict[str, torch.Tensor], image: torch.Tensor, fov: float) -> dict[str, float]:
    """unsup3d's two photometric terms without confidence: the plain L1 of the reconstruction and of the one from the
    flipped depth and albedo, and their sum with unsup3d's weights (1 and 0.5)."""
    flipped = {**parts, "depth": parts["depth"].flip(3), "albedo": parts["albedo"].flip(3)}
    l1, l1_flip = reconstruction_l1(parts, image, fov), reconstruction_l1(flipped, image, fov)
    return {"l1": l1, "l1_flip": l1_flip, "objective": l1 + 0.5 * l1_flip}


@torch.no_grad()
def translation_profile(model: unsup3d.Unsup3d, test: dict[str, torch.Tensor], given: tuple[str, ...],
                        lever: dict | None = None, perceptual: unsup3d.PerceptualFeatures | None = None,
                        layer: BackgroundLayer | None = None) -> list[list[float]]:
    """The model's training objective (confidence-weighted, reconstruction + flip) on the test renders with
    x-translations of SHIFTS_PX image pixels (at depth 1) added to its predicted views: [[pixels, loss], ...]."""
    model.eval()
    parts = decompose(model, test["image"], true_parts(test), given, lever=lever)
    sigma = sigma_maps(model, test["image"], lever)
    model.train()
    background, opacity = layer(test["image"]) if layer is not None else (None, None)
    profile = []
    for shift in SHIFTS_PX:
        view = parts["view"].clone()
        view[:, 3] += shift * unsup3d.canonical_pixel(model.cfg)
        if layer is not None:
            total = layered_loss(parts, opacity, background, view, test["image"], sigma, model.cfg)
        else:
            total, _, _ = unsup3d.symmetric_loss(parts["depth"], parts["albedo"], parts["light"], view,
                                                 test["image"], sigma, model.cfg, features=perceptual)
        profile.append([shift, total.item()])
    return profile


def truth_point(test: dict[str, torch.Tensor], fov: float = 10.0) -> dict:
    """The truth in unsup3d's terms, rendered in its true view: the objective a decomposition could reach."""
    parts = {**true_parts(test), "view": test["view"]}
    return {"step": 0, "seconds": 0.0, **objective_terms(parts, test["image"], fov), **view_scores(test["view"], test)}


def yaw_signal(parts: dict[str, torch.Tensor], view: torch.Tensor, test: dict[str, torch.Tensor],
               pixels: torch.Tensor | None = None, fov: float = 10.0) -> float:
    """How well the first-order signal points to the true yaw: the correlation over faces of -dL/dyaw (L = the plain
    L1 + ½ flip L1 of `objective_terms`, summed over faces, at `view`, on the rendered pixels or those of them in
    `pixels` [B, 1, R, R]) with the true yaw. 1: every face's gradient step turns it towards its true yaw in
    proportion; 0: no information."""
    view = view.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = 0.0
        for flip, weight in ((False, 1.0), (True, 0.5)):
            depth, albedo = parts["depth"].detach(), parts["albedo"].detach()
            if flip:
                depth, albedo = depth.flip(3), albedo.flip(3)
            rec = unsup3d.reconstruct(depth, albedo, parts["light"].detach(), view, fov, size=test["image"].shape[-1])
            mask = rec["mask"].detach() * (1 if pixels is None else pixels)
            loss = loss + weight * masked_l1(rec["image"], test["image"], mask).sum()
        grad, = torch.autograd.grad(loss, view)
    return torch.corrcoef(torch.stack([-grad[:, 0], test["view"][:, 0]]))[0, 1].item()


def pixel_groups(test: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks [B, 1, R, R] of the renders' pixels: the head's interior, its silhouette (±1 px), the background, the
    3 px along the image's edges, and the rest."""
    head = (test["mask"] > 0.5).float()
    ones = torch.ones(1, 1, 3, 3, device=head.device)
    neighbours = torch.nn.functional.conv2d(head, ones, padding=1)
    silhouette = ((neighbours > 0) & (neighbours < 9)).float()
    edges = 1 - unsup3d.central_window(head.shape[-1], FIT_WINDOW_PX, head)
    return {"all": torch.ones_like(head), "head interior": head * (1 - silhouette), "silhouette": silhouette,
            "background": (1 - head) * (1 - silhouette), f"{FIT_WINDOW_PX} px along the edges": edges.expand_as(head),
            f"all but the {FIT_WINDOW_PX} px along the edges": (1 - edges).expand_as(head)}


def truth_signal(test: dict[str, torch.Tensor], fov: float = 10.0) -> dict[str, dict[str, float]]:
    """`yaw_signal` of the true depth, albedo and light, by pixel group, from the frontal view and from half way to
    the true view."""
    truth, groups = true_parts(test), pixel_groups(test)
    starts = {"frontal view": torch.zeros_like(test["view"]), "half the true view": test["view"] / 2}
    return {start: {name: yaw_signal(truth, view, test, pixels, fov) for name, pixels in groups.items()}
            for start, view in starts.items()}


@torch.no_grad()
def evaluate(model: unsup3d.Unsup3d, test: dict[str, torch.Tensor], given: tuple[str, ...],
             neutral_light: bool = False, lever: dict | None = None) -> dict[str, float]:
    model.eval()
    parts = decompose(model, test["image"], true_parts(test), given, neutral_light, lever)
    model.train()
    return {**objective_terms(parts, test["image"], model.cfg.fov), **view_scores(parts["view"], test),
            "yaw_signal": yaw_signal(parts, parts["view"], test, fov=model.cfg.fov)}


def train_with_oracles(given: tuple[str, ...], train: dict, test: dict, args, neutral_steps: int = 0,
                       lever: dict | None = None, on_eval: Callable[[list[dict]], None] | None = None
                       ) -> tuple[list[dict], list[list[float]]]:
    """unsup3d's training loop (no mutual reconstruction) on real renders, the light held neutral for the first
    `neutral_steps` steps, changed by `lever` (see LEVERS); returns the curve and the trained model's
    translation_profile; `on_eval(curve)` after each evaluation (the script saves what it has)."""
    lever = lever or {}
    torch.manual_seed(args.seed)
    fields = {k: v for k, v in lever.items() if k in CONFIG_LEVERS}
    if lever.get("twin_mutual"):
        fields["mutual"] = lever["twin_mutual"]  # the mutual confidence network, fed the twin
    cfg = unsup3d.Unsup3dConfig(resolution=args.resolution, width=args.width, zdim=min(256, 4 * args.width),
                                lr=args.lr, **fields)
    device = train["image"].device
    model = unsup3d.Unsup3d(cfg).to(device)
    optimizer = torch.optim.Adam([{"params": getattr(model, f"{n}_net").parameters(),
                                   "lr": cfg.lr * lever.get(f"lr_{n}", 1.0)} for n in NETWORKS]
                                 + ([{"params": model.mutual_confidence_net.parameters()}] if cfg.mutual else []))
    truth, n = true_parts(train), train["image"].shape[0]
    window = average_head(train) if lever.get("average_head_loss") else None
    perceptual = perceptual_features(train, args, lever.get("crop", 0)).to(device) if cfg.lam_perc else None
    layer = BackgroundLayer(cfg, lever["background_layer"]).to(device) if lever.get("background_layer") else None
    if layer is not None:
        optimizer.add_param_group({"params": layer.parameters(), "lr": cfg.lr})
    order = torch.Generator().manual_seed(args.seed)
    curve, seconds, every = [], 0.0, max(1, args.steps // args.evals)
    for step in range(args.steps + 1):
        if step % every == 0 or step == args.steps:
            curve.append({"step": step, "seconds": round(seconds, 1),
                          **evaluate(model, test, given, step < neutral_steps, lever),
                          **(layer_scores(model, layer, test) if layer is not None else {})})
            print(f"  step {step:4d}  {seconds:5.0f} s  " + "  ".join(f"{k} {v:.3f}" for k, v in curve[-1].items()
                                                                     if k not in ("step", "seconds")), flush=True)
            if on_eval is not None:
                on_eval(curve)
        if step == args.steps:
            break
        start = clock()
        idx = torch.randint(0, n, (args.batch,), generator=order).to(device)
        image = train["image"][idx]
        parts = decompose(model, image, {k: v[idx] for k, v in truth.items()}, given, step < neutral_steps, lever)
        sigma = sigma_maps(model, image, lever)
        if cfg.mutual:
            parts, sigma = swap_with_partners(model, parts, sigma, image, train, idx, lever, order)
        pixels = None if window is None else window.expand(len(idx), -1, -1, -1)
        if lever.get("head_loss"):
            pixels = (train["mask"][idx] > 0.5).float()
        view = unsup3d.noisy_view(cfg, parts["view"], order)
        if layer is not None:
            background, opacity = layer(image)
            loss = layered_loss(parts, opacity, background, view, image, sigma, cfg)
            loss = loss + lever.get("opacity_prior", 0.0) * (1 - opacity).mean()
        else:
            loss, _, _ = unsup3d.symmetric_loss(parts["depth"], parts["albedo"], parts["light"], view, image, sigma,
                                                cfg, pixels, features=perceptual)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds += clock() - start
    return curve, translation_profile(model, test, given, lever, perceptual, layer)


def swap_with_partners(model: unsup3d.Unsup3d, parts: dict[str, torch.Tensor], sigma: torch.Tensor,
                       image: torch.Tensor, train: dict, idx: torch.Tensor, lever: dict,
                       generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Mutual reconstruction (paper 004, Sec. 3.2): with probability `cfg.mutual` each image takes the canonical
    depth and albedo of a partner and the mutual confidence network's sigma maps; the partner is the next image of
    the batch (the paper's), or with the `twin_mutual` lever the same face rendered in another view
    (`train["twin_image"]`, not in the paper)."""
    if lever.get("twin_mutual"):
        partner_image = train["twin_image"][idx]
        partner = model.decompose(partner_image)
    else:
        partner_image, partner = image.roll(1, 0), {k: parts[k].roll(1, 0) for k in ("depth", "albedo")}
    swapped = (torch.rand(image.shape[0], generator=generator) < model.cfg.mutual).to(image.device)
    return unsup3d.mutual_swap(model, parts, sigma, image, partner, partner_image, swapped)


def per_face_l1(truth: dict[str, torch.Tensor], view: torch.Tensor, image: torch.Tensor, fov: float = 10.0,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
    """[B] plain L1 of each face's reconstruction from the true depth, albedo and light in `view`, over the pixels it
    renders (or over `pixels` [B, 1, R, R] if given)."""
    rec = unsup3d.reconstruct(truth["depth"], truth["albedo"], truth["light"], view, fov)
    return masked_l1(rec["image"], image, rec["mask"] if pixels is None else pixels)


def masked_l1(reconstruction: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] each face's mean absolute error over the pixels of `mask` [B, 1, R, R] and the three channels."""
    return ((reconstruction - image).abs() * mask).sum((1, 2, 3)) / (3 * mask.sum((1, 2, 3)).clamp_min(1))


@torch.no_grad()
def line_to_truth(test: dict[str, torch.Tensor], view: torch.Tensor, fov: float = 10.0) -> list[list[float]]:
    """The straight line from fitted views to the true ones, view + t (true - view) for t in LINE_STEPS:
    [[t, mean L1, share of faces whose L1 is below their own at t = 0, mean L1 on the pixels that both the fitted and
    the true view render], ...]."""
    truth = true_parts(test)
    ends = [unsup3d.reconstruct(truth["depth"], truth["albedo"], truth["light"], v, fov)["mask"]
            for v in (view, test["view"])]
    points = []
    for t in LINE_STEPS:
        moved = view + t * (test["view"] - view)
        points.append((t, per_face_l1(truth, moved, test["image"], fov),
                       per_face_l1(truth, moved, test["image"], fov, pixels=ends[0] * ends[1])))
    start = points[0][1]  # LINE_STEPS starts at t = 0, the fitted views
    return [[t, l1.mean().item(), (l1 < start).float().mean().item(), common.mean().item()]
            for t, l1, common in points]


def fit_views(test: dict[str, torch.Tensor], steps: int = 200, lr: float = 0.01, fov: float = 10.0,
              pixels: str | int = "rendered") -> dict:
    """The view of each test face fitted alone (six free numbers per face) with the true depth, albedo and light;
    with the line from the fitted views to the true ones ("line", see line_to_truth). The loss counts the `pixels`
    that the current view renders ("rendered", as unsup3d), those the true view renders ("true view": an oracle that
    the faces' own edges do not move), or the rendered ones without N pixels along each edge (an int N)."""
    if pixels not in ("rendered", "true view") and not isinstance(pixels, int):
        raise ValueError(f"pixels={pixels!r}: expected 'rendered', 'true view' or a border width in pixels")
    truth = true_parts(test)
    size = test["image"].shape[-1]
    if pixels == "true view":
        with torch.no_grad():
            true_mask = unsup3d.reconstruct(truth["depth"], truth["albedo"], truth["light"], test["view"], fov)["mask"]
    view = torch.zeros(test["image"].shape[0], 6, device=test["image"].device, requires_grad=True)
    optimizer = torch.optim.Adam([view], lr=lr)
    start = clock()
    for _ in range(steps):
        rec = unsup3d.reconstruct(truth["depth"], truth["albedo"], truth["light"], view, fov)
        mask = true_mask if pixels == "true view" else rec["mask"]
        if isinstance(pixels, int) and pixels:
            mask = mask * unsup3d.central_window(size, pixels, mask)
        loss = ((rec["image"] - test["image"]).abs() * mask).sum() / mask.sum().clamp_min(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = clock() - start
    with torch.no_grad():
        parts = {**truth, "view": view.detach()}
        return {"step": steps, "seconds": round(seconds, 1), **objective_terms(parts, test["image"], fov),
                **view_scores(view.detach(), test), "line": line_to_truth(test, view.detach(), fov)}


def markdown(results: dict, whole_curves: bool = False, first_column: str = "given from the truth") -> str:
    """The table: each variant's last evaluation, or every evaluation with `whole_curves`."""
    lines = [f"| {first_column} | steps | seconds | test L1 | flip L1 | L1 + ½ flip | yaw corr | pitch corr | "
             "predicted yaw std (°) | yaw signal |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, curve in results["variants"].items():
        for point in curve if whole_curves else curve[-1:]:
            signal = f"{point['yaw_signal']:.2f}" if "yaw_signal" in point else ""
            lines.append(f"| {name} | {point['step']} | {point['seconds']:.0f} | {point['l1']:.4f} | "
                         f"{point['l1_flip']:.4f} | {point['objective']:.4f} | {point['yaw_corr']:.3f} | "
                         f"{point['pitch_corr']:.3f} | {point['yaw_std']:.1f} | {signal} |")
    lines.append(f"\nTrue yaw std {results['true_yaw_std']:.1f}°; {results['settings']}. Yaw signal: the "
                 "correlation over test faces of −∂(L1 + ½ flip L1)/∂yaw at the predicted view with the true "
                 "yaw (`yaw_signal`).")
    layered = {name: curve[-1] for name, curve in results["variants"].items() if "opacity_head" in curve[-1]}
    if layered:
        lines += ["", "With the background layer (`BackgroundLayer`), on the test renders: the mean opacity carried "
                  "into the view on the true head and on the true background, and the plain L1 of the layered "
                  "reconstruction (the table's L1 columns score unsup3d's rendering alone):", "",
                  "| model | opacity on the head | opacity on the background | layered L1 |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {p['opacity_head']:.2f} | {p['opacity_background']:.2f} | {p['layered_l1']:.4f} |"
                  for name, p in layered.items()]
    if results.get("truth_signal"):
        groups = list(next(iter(results["truth_signal"].values())))
        lines += ["", "The yaw signal of the true depth, albedo and light, by the pixels the loss counts:", "",
                  "| view | " + " | ".join(groups) + " |", "| --- |" + " --- |" * len(groups)]
        for start, row in results["truth_signal"].items():
            lines.append(f"| {start} | " + " | ".join(f"{row[g]:.2f}" for g in groups) + " |")
    if results.get("translation_profiles"):
        lines += ["", "Each trained model's objective (confidence-weighted, as trained) on the test renders with its "
                  "predicted views moved sideways by a fraction of an image pixel:", "",
                  "| model | " + " | ".join(f"{shift:+.2f} px" for shift in SHIFTS_PX) + " |",
                  "| --- |" + " --- |" * len(SHIFTS_PX)]
        for name, profile in results["translation_profiles"].items():
            lines.append(f"| {name} | " + " | ".join(f"{loss:.3f}" for _, loss in profile) + " |")
    line = results["variants"].get(FIT_ROW, [{}])[-1].get("line")
    if line:
        lines += ["", "The per-image fit's views moved along the straight line to the true views, view + t (true − "
                  "view): mean test L1, and the share of faces whose L1 is below their own at the fitted view:", "",
                  "| t | " + " | ".join(f"{t:.1f}" for t, *_ in line) + " |", "| --- |" + " --- |" * len(line),
                  "| test L1 | " + " | ".join(f"{l1:.4f}" for _, l1, _, _ in line) + " |",
                  "| share lower | " + " | ".join(f"{share:.2f}" for _, _, share, _ in line) + " |",
                  "| test L1, pixels rendered at both ends | " + " | ".join(f"{c:.4f}" for *_, c in line) + " |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--evals", type=int, default=4)
    p.add_argument("--train", type=int, default=4096, help="training renders")
    p.add_argument("--test", type=int, default=256, help="held-out renders")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto; the renders are drawn on the CPU and moved "
                   "there (the numbers of another device differ from the CPU's in the last digits and beyond)")
    p.add_argument("--given", default=None, help="one variant only: comma-separated parts from the truth "
                   "(depth, albedo, light; '' for none), no per-image fit")
    p.add_argument("--neutral-light-steps", default="0", help="with --given: comma-separated step counts N, one run "
                   "each, the light held at NEUTRAL_LIGHT for the first N steps")
    p.add_argument("--lever", action="append", default=[], help="'name:key=value,...' (keys: "
                   f"{', '.join(LEVERS)}): one run of unsup3d (nothing given, or the --given parts) with that change, "
                   "beside an unchanged run; repeatable, not with --neutral-light-steps")
    p.add_argument("--resolution", type=int, default=32, help="renders and model, a power of two >= 16")
    p.add_argument("--out", type=Path, default=Path("book/figures/curves"))
    args = p.parse_args(argv)
    levers = [parse_lever(text) for text in args.lever]
    if args.resolution < 16 or args.resolution & (args.resolution - 1):
        raise SystemExit(f"--resolution {args.resolution}: expected a power of two >= 16")
    if args.given and any(lever.get("crop") for _, lever in levers):
        raise SystemExit("--lever crop: not with --given (the canonical truths are not cropped)")
    if levers and args.neutral_light_steps != "0":
        raise SystemExit("--lever: not with --neutral-light-steps")
    try:
        neutral = [int(n) for n in args.neutral_light_steps.split(",")]
    except ValueError:
        raise SystemExit(f"--neutral-light-steps {args.neutral_light_steps!r}: expected comma-separated step counts")
    if any(n < 0 for n in neutral) or (neutral != [0] and (args.given is None or "light" in args.given)):
        raise SystemExit("--neutral-light-steps: step counts >= 0, with --given and without the true light")
    torch.set_num_threads(args.threads)
    train = training_faces(args).batch(range(args.train))
    test = SynthFaces(resolution=args.resolution, seed=TEST_SEED, length=args.test).batch(range(args.test))
    if any(lever.get("twin_mutual") for _, lever in levers):
        train["twin_image"] = twin_images(args, train["view"])
    device = resolve_device(args.device)
    train, test = ({k: v.to(device) for k, v in batch.items()} for batch in (train, test))
    settings = (f"{args.resolution} px, width {args.width}, {args.steps} steps of {args.batch}, lr {args.lr}, "
                f"{args.train} training / {args.test} test renders, seed {args.seed}, "
                + (f"{torch.get_num_threads()} threads" if device.type == "cpu" else str(device)))
    results = {"variants": {}, "translation_profiles": {}, "settings": settings}
    ladder = LADDER
    if args.given is not None:
        given = tuple(filter(None, args.given.split(",")))
        if unknown := sorted(set(given) - set(PARTS)):
            raise SystemExit(f"--given: unknown parts {unknown}; expected a comma-separated subset of {PARTS}")
        ladder = [(name, g) for name, g in LADDER if set(g) == set(given)] or [(" + ".join(given), given)]
    if levers:
        ladder = ladder[:1]  # the unchanged run beside the levers (with the --given parts, if any)
    runs = [(name + (f", light held neutral for {n} steps" if n else ""), given, n, None)
            for name, given in ladder for n in neutral] + [(name, ladder[0][1], 0, lever) for name, lever in levers]
    if args.given is None and not levers:
        results["variants"][TRUTH_ROW] = [truth_point(test)]
    results["true_yaw_std"] = torch.rad2deg(test["view"][:, 0]).std().item()

    def save() -> str:  # after every evaluation too: a run stopped early (a time limit) keeps what it measured
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "unsup3d_oracles.json").write_text(json.dumps(results, indent=1))
        table = markdown(results, whole_curves=args.given is not None and not levers,
                         first_column=f"{ladder[0][0]}, changed by" if levers else "given from the truth")
        (args.out / "unsup3d_oracles.md").write_text(table)
        return table

    for label, given, n, lever in runs:
        print(label, lever or "", flush=True)
        framed = [centre_crop(b, lever["crop"]) if (lever or {}).get("crop") else b for b in (train, test)]

        def saved(curve: list[dict], label: str = label) -> None:
            results["variants"][label] = curve
            save()
        results["variants"][label], results["translation_profiles"][label] = train_with_oracles(
            given, *framed, args, n, lever=lever, on_eval=saved)
    if args.given is None and not levers:
        for name, pixels in FIT_VARIANTS.items():
            print(name, flush=True)
            results["variants"][name] = [fit_views(test, pixels=pixels)]
    results["truth_signal"] = truth_signal(test)
    print(save())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
