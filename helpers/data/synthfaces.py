"""SynthFaces: procedurally rendered faces with exact ground truth, generated on the fly and deterministic per seed.

Each face is drawn in a canonical frontal frame as smooth signed-distance shapes on the pixel grid (antialiased
coverage, one pixel wide edges): canonical albedo, part labels (HELEN ids, ``helpers.data.labels.HELEN_CLASSES``),
depth (unsup3d's convention, values around 1, smaller = nearer) and opacity. It is then lit and turned to its view by
the differentiable renderer ``helpers.render.render`` (Lambertian shading from the depth's normals, ray-marched
view warp with exact occlusion), and composited over a smooth random background (label 0).

Conventions
-----------
* Canonical coordinates x (image right) and y (image down) in [-1, 1]; the face looks at the camera.
* Left/right are the *subject's*: ``left_eye`` / ``left_brow`` lie on the image right in the canonical frontal view.
* Beard and moustache are darker albedo on the skin (their pixels stay ``skin``); eyeglass frames are an occluder
  painted over whatever part lies beneath, which keeps its label (HELEN has no eyeglasses class); their pixels are
  returned as ``eyeglasses_mask``. Ears and neck are drawn as ``skin``.
* Framing: like an aligned face crop (CelebAMask-HQ): the shapes are laid out in face units and drawn ``FACE_ZOOM``
  times larger (depth relief alike), so the face fills the frame, hair may be cut by the border and the chin sits
  near the bottom with a little neck. Mean pixel shares at the default poses: background ~0.33, skin ~0.34, hair
  ~0.29, nose ~0.013, each eye ~0.0037, each brow ~0.0022, lips and mouth ~0.012.
* Depth: head centre at depth 1 (the renderer's rotation centre), face front near 0.94, nose tip near 0.91; outside
  the head (``canonical_mask`` = 0) the canonical depth is about 1.03 and the renderer lets rays pass there.
* ``view`` = (yaw, pitch, roll in radians, tx, ty, tz) as in ``helpers.render.View``; ``light`` = ``ds.light_names``
  (ambient, diffuse, direction towards the light x, y, z in the canonical camera frame, colour r, g, b).

Randomness: face i of a dataset with seed s draws all its numbers from ``torch.Generator`` seeded by a SplitMix64
hash of (s, i), before any batching, so ``ds[i]`` equals row k of ``ds.batch([..., i, ...])`` whatever the batch.

Correlations (shared latent factors; attributes are thresholds of the factors, see ``ATTRIBUTE_RULES``)
-------------------------------------------------------------------------------------------------------
| latent                  | raises                                                   | lowers                      |
| ----------------------- | -------------------------------------------------------- | --------------------------- |
| sex z ~ N(0,1)          | beard, moustache, brow thickness, jaw width, nose width, | lipstick, makeup, hair      |
|   (Male = z > 0)        | baldness and receding hairline (with age)                | length, bangs, brow arch,   |
|                         |                                                          | lip thickness, pointy nose  |
| age ~ U(0,1)^1.4        | gray hair, baldness (men), receding hairline, eye bags,  | Young (= age < 0.5)         |
|                         | eyeglasses                                               |                             |
| makeup m = N(0,1) - 1.2z| lipstick, eye shadow (Heavy_Makeup), blush (Rosy_Cheeks) |                             |
| smile                   | mouth opening, cheek raise (High_Cheekbones)             | (eye opening, slightly)     |
| skin tone               | hair darkness, lip thickness                             | blond/red hair, blue/green  |
|                         |                                                          | irises                      |
| beard                   | moustache                                                |                             |
So Male correlates with Mustache, Bald, Bushy_Eyebrows and against No_Beard, Wearing_Lipstick, Heavy_Makeup and
long hair; Young against Gray_Hair, Bald and Bags_Under_Eyes; Smiling with Mouth_Slightly_Open and High_Cheekbones.

Item keys: image [3,H,W], labels [H,W] (HELEN ids of the view), mask [1,H,W] (soft foreground), shading [1,H,W],
view_depth [1,H,W], eyeglasses_mask [H,W] bool, depth / albedo / canonical_labels / canonical_mask (canonical frame),
background [3,H,W], view [6], light [8], factors [F] (each in [0, 1]; names ``FACTOR_NAMES``), attributes [A] int64.
"""
from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from helpers import render as render_module
from helpers.data import labels as labels_module
from helpers.data.labels import HELEN_CLASSES, HELEN_ID
from helpers.render import pixel_coords, render

Tensor = torch.Tensor
HALF_FOV_TAN = math.tan(math.radians(10.0) / 2)  # world units per normalised image unit at depth 1
HEAD_CENTRE_DEPTH = 1.0
FACE_ZOOM = 1.45  # image units per canonical face unit: frames the head like an aligned face crop
FACE_CENTRE_Y = 0.0  # face coordinate at the image centre

FACTOR_NAMES: tuple[str, ...] = (
    "sex", "age", "makeup", "skin_tone", "face_width", "jaw_width", "chin_length", "cheekbones",
    "hair_length", "hair_volume", "bangs", "hair_parting", "hair_darkness", "hair_redness", "hair_gray", "baldness",
    "hairline", "brow_height", "brow_thickness", "brow_arch", "eye_size", "eye_openness", "eye_spacing", "iris_hue",
    "nose_length", "nose_width", "nose_relief", "nose_pointiness", "mouth_width", "lip_thickness", "smile",
    "mouth_open", "lipstick", "eye_shadow", "blush", "beard", "beard_coverage", "moustache", "eyeglasses", "eye_bags",
)
VIEW_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "tx", "ty", "tz")
LIGHT_NAMES: tuple[str, ...] = ("ambient", "diffuse", "dir_x", "dir_y", "dir_z", "colour_r", "colour_g", "colour_b")

# attribute name -> (factor, comparison, threshold) or a callable on the factor dict; CelebA names where they mean
# the same thing. Hair colour attributes are exclusive, as in CelebA's annotation.
ATTRIBUTE_RULES: dict[str, object] = {
    "Male": ("sex", ">", 0.5),
    "Young": ("age", "<", 0.5),
    "Smiling": ("smile", ">", 0.55),
    "Mouth_Slightly_Open": ("mouth_open", ">", 0.4),
    "Eyeglasses": ("eyeglasses", ">", 0.5),
    "Bangs": lambda f: (f["bangs"] > 0.5) & (f["baldness"] <= 0.5),
    "Black_Hair": lambda f: _hair_class(f) == 0,
    "Brown_Hair": lambda f: _hair_class(f) == 1,
    "Blond_Hair": lambda f: _hair_class(f) == 2,
    "Gray_Hair": lambda f: _hair_class(f) == 3,
    "Big_Nose": lambda f: (f["nose_width"] + f["nose_length"]) > 1.3,
    "Pointy_Nose": ("nose_pointiness", ">", 0.65),
    "Narrow_Eyes": ("eye_openness", "<", 0.3),
    "Bushy_Eyebrows": ("brow_thickness", ">", 0.7),
    "Arched_Eyebrows": ("brow_arch", ">", 0.6),
    "Wearing_Lipstick": ("lipstick", ">", 0.5),
    "Pale_Skin": ("skin_tone", "<", 0.12),
    "Mustache": ("moustache", ">", 0.5),
    "No_Beard": lambda f: f["beard"] <= 0.5,
    "Goatee": lambda f: (f["beard"] > 0.5) & (f["beard_coverage"] < 0.35),
    "Big_Lips": ("lip_thickness", ">", 0.7),
    "Bald": ("baldness", ">", 0.5),
    "Receding_Hairline": lambda f: (f["hairline"] > 0.6) & (f["baldness"] <= 0.5) & (f["bangs"] <= 0.5),
    "Heavy_Makeup": ("eye_shadow", ">", 0.5),
    "Rosy_Cheeks": ("blush", ">", 0.5),
    "High_Cheekbones": ("cheekbones", ">", 0.6),
    "Bags_Under_Eyes": ("eye_bags", ">", 0.5),
    "Oval_Face": lambda f: (f["jaw_width"] < 0.4) & (f["chin_length"] > 0.5),
    "Chubby": ("face_width", ">", 0.8),
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTE_RULES)


def _hair_class(f: dict[str, Tensor]) -> Tensor:
    """0 black, 1 brown, 2 blond, 3 gray, 4 red/auburn, 5 none (bald) from the hair factors."""
    dark = f["hair_darkness"]
    cls = torch.where(dark > 0.72, 0, torch.where(dark > 0.35, 1, 2))
    cls = torch.where(f["hair_redness"] > 0.5, 4, cls)
    cls = torch.where(f["hair_gray"] > 0.5, 3, cls)
    return torch.where(f["baldness"] > 0.5, 5, cls)


def _splitmix64(x: int) -> int:
    """One round of SplitMix64 (a well-mixed 64-bit hash)."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def face_seed(seed: int, index: int) -> int:
    """The generator seed of face `index` of a dataset with seed `seed`."""
    return _splitmix64(_splitmix64(seed) ^ index) & 0x7FFFFFFFFFFFFFFF


N_UNIFORM, N_NORMAL = 64, 48


def draw_numbers(seed: int, indices: list[int]) -> tuple[Tensor, Tensor]:
    """Per-face uniforms [B,64] and normals [B,48] (float64), each row from its own (seed, index) generator."""
    u = torch.empty(len(indices), N_UNIFORM, dtype=torch.float64)
    n = torch.empty(len(indices), N_NORMAL, dtype=torch.float64)
    g = torch.Generator()
    for row, index in enumerate(indices):
        g.manual_seed(face_seed(seed, int(index)))
        u[row] = torch.rand(N_UNIFORM, generator=g, dtype=torch.float64)
        n[row] = torch.randn(N_NORMAL, generator=g, dtype=torch.float64)
    return u, n


class _Draws:
    """Hands out the columns of the per-face random numbers in a fixed order."""

    def __init__(self, u: Tensor, n: Tensor):
        self._u, self._n, self._iu, self._in = u, n, 0, 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> Tensor:
        self._iu += 1
        return lo + (hi - lo) * self._u[:, self._iu - 1]

    def n(self) -> Tensor:
        self._in += 1
        return self._n[:, self._in - 1]


def sample_factors(r: _Draws) -> dict[str, Tensor]:
    """Continuous factors in [0, 1] (float64 [B] each) from the shared latents; see the module's correlation table."""
    sig = torch.sigmoid
    z = r.n()  # latent sex
    age = r.u() ** 1.4
    m = r.n() - 1.2 * z  # latent makeup
    f: dict[str, Tensor] = {"sex": sig(2.5 * z), "age": age, "makeup": sig(m)}
    f["skin_tone"] = r.u() ** 1.2
    f["face_width"] = sig(0.9 * r.n() + 0.3 * z)
    f["jaw_width"] = sig(r.n() + 1.2 * z)
    f["chin_length"] = r.u()
    f["smile"] = sig(1.8 * r.n() - 0.1)
    f["cheekbones"] = sig(r.n() + 3.0 * (f["smile"] - 0.5) - 0.3 * z)
    f["hair_length"] = sig(1.2 * r.n() - 2.0 * z)
    f["hair_volume"] = r.u()
    f["bangs"] = sig(1.5 * r.n() - 1.0 - 0.5 * z)
    f["hair_parting"] = r.u()
    f["hair_darkness"] = sig(1.5 * r.n() + 4.0 * (f["skin_tone"] - 0.3))
    f["hair_redness"] = sig(1.5 * r.n() - 4.0 + 2.0 * (0.5 - f["skin_tone"]))
    f["hair_gray"] = sig(8.0 * (age - 0.8) + r.n())
    f["baldness"] = sig(2.5 * z + 7.0 * (age - 0.65) + r.n() - 4.0)
    f["hairline"] = sig(1.5 * z + 3.0 * (age - 0.5) + r.n() - 1.0)
    f["brow_height"] = r.u()
    f["brow_thickness"] = sig(r.n() + 1.0 * z)
    f["brow_arch"] = sig(r.n() - 0.8 * z)
    f["eye_size"] = r.u()
    f["eye_openness"] = sig(1.2 * r.n() + 0.9)
    f["eye_spacing"] = r.u()
    f["iris_hue"] = r.u() * (1 - f["skin_tone"]) ** 2
    f["nose_length"] = r.u()
    f["nose_width"] = sig(r.n() + 0.8 * z)
    f["nose_relief"] = r.u()
    f["nose_pointiness"] = sig(1.2 * r.n() - 0.5 * z)
    f["mouth_width"] = r.u()
    f["lip_thickness"] = sig(r.n() - 0.6 * z + 0.6 * (f["skin_tone"] - 0.4))
    f["mouth_open"] = sig(r.n() + 3.0 * (f["smile"] - 0.5) - 0.5)
    f["lipstick"] = sig(1.5 * m - 0.8 + 0.6 * r.n())
    f["eye_shadow"] = sig(1.5 * m - 1.8 + 0.6 * r.n())
    f["blush"] = sig(1.2 * m - 1.8 + 0.8 * r.n())
    f["beard"] = sig(2.5 * z - 2.3 + r.n())
    f["beard_coverage"] = r.u()
    f["moustache"] = sig(2.5 * z - 2.3 + r.n() + 2.0 * (f["beard"] > 0.5).double())
    f["eyeglasses"] = sig(1.5 * r.n() - 2.8 + 2.0 * age)
    f["eye_bags"] = sig(6.0 * (age - 0.7) + r.n())
    return f


def attributes_from_factors(f: dict[str, Tensor]) -> Tensor:
    """Binary attributes [B,A] (int64 0/1) in ATTRIBUTE_NAMES order, thresholds of the factors."""
    cols = []
    for rule in ATTRIBUTE_RULES.values():
        if callable(rule):
            cols.append(rule(f))
        else:
            name, op, thr = rule
            cols.append(f[name] > thr if op == ">" else f[name] < thr)
    return torch.stack(cols, 1).long()


# ---------------------------------------------------------------------------------------------------- colours
def _lerp_palette(t: Tensor, stops: list[tuple[float, tuple[float, float, float]]]) -> Tensor:
    """Piecewise-linear colour ramp: t [B] -> [B,3]."""
    pos = torch.tensor([s[0] for s in stops], dtype=t.dtype)
    col = torch.tensor([s[1] for s in stops], dtype=t.dtype)
    i = torch.searchsorted(pos, t.clamp(pos[0], pos[-1]).contiguous(), right=True).clamp(1, len(stops) - 1)
    w = ((t - pos[i - 1]) / (pos[i] - pos[i - 1])).clamp(0, 1)[:, None]
    return col[i - 1] * (1 - w) + col[i] * w


SKIN = [(0.0, (0.98, 0.84, 0.76)), (0.35, (0.90, 0.68, 0.54)), (0.7, (0.64, 0.43, 0.30)), (1.0, (0.36, 0.23, 0.16))]
HAIR = [(0.0, (0.92, 0.78, 0.50)), (0.35, (0.62, 0.44, 0.25)), (0.72, (0.28, 0.17, 0.10)), (1.0, (0.07, 0.06, 0.06))]
IRIS = [(0.0, (0.30, 0.17, 0.08)), (0.35, (0.45, 0.36, 0.16)), (0.6, (0.30, 0.48, 0.30)), (1.0, (0.28, 0.46, 0.72))]
LIPSTICKS = torch.tensor([[0.75, 0.08, 0.16], [0.85, 0.35, 0.45], [0.50, 0.08, 0.22], [0.90, 0.20, 0.20]])


def sample_colours(r: _Draws, f: dict[str, Tensor]) -> dict[str, Tensor]:
    """Albedo colours [B,3] of the parts, from the factors plus a little independent jitter."""
    skin = _lerp_palette(f["skin_tone"], SKIN) * (1 + 0.025 * torch.stack([r.n(), r.n(), r.n()], 1)).clamp(0.94, 1.06)
    hair = _lerp_palette(f["hair_darkness"], HAIR)
    auburn = torch.tensor([0.62, 0.22, 0.09], dtype=hair.dtype)
    hair = torch.lerp(hair, auburn.expand_as(hair), (f["hair_redness"] > 0.5).double()[:, None] * 0.85)
    gray = (0.62 + 0.3 * r.u())[:, None].expand(-1, 3)
    hair = torch.lerp(hair, gray, ((f["hair_gray"] - 0.3) / 0.4).clamp(0, 1)[:, None])
    lip_base = skin * torch.tensor([0.88, 0.58, 0.58], dtype=skin.dtype)
    stick = LIPSTICKS.to(skin.dtype)[(r.u() * len(LIPSTICKS)).long().clamp(max=len(LIPSTICKS) - 1)]
    lips = torch.lerp(lip_base, stick, ((f["lipstick"] - 0.35) / 0.3).clamp(0, 1)[:, None] * 0.85)
    shadow = torch.stack([0.45 + 0.3 * r.u(), 0.25 + 0.2 * r.u(), 0.35 + 0.3 * r.u()], 1)
    frame = (0.04 + 0.3 * r.u() ** 2)[:, None] * torch.stack([1 + 0.3 * r.u(), torch.ones_like(skin[:, 0]),
                                                               1 - 0.3 * r.u()], 1)
    bg1 = 0.15 + 0.75 * torch.stack([r.u(), r.u(), r.u()], 1)
    bg2 = 0.15 + 0.75 * torch.stack([r.u(), r.u(), r.u()], 1)
    grey = torch.lerp(bg1, bg1.mean(1, keepdim=True).expand_as(bg1), r.u()[:, None] * 0.7)
    return {"skin": skin.clamp(0, 1), "hair": hair, "iris": _lerp_palette(f["iris_hue"], IRIS), "lips": lips,
            "shadow": shadow, "frame": frame, "bg1": grey, "bg2": bg2}


def sample_view(r: _Draws, pose_range: tuple[float, float, float]) -> Tensor:
    """View vectors [B,6]: yaw, pitch uniform in +-range, roll a clipped normal, small translation."""
    yaw = math.radians(pose_range[0]) * r.u(-1, 1)
    pitch = math.radians(pose_range[1]) * r.u(-1, 1)
    roll = math.radians(pose_range[2]) * (0.5 * r.n()).clamp(-1, 1)
    tx, ty, tz = 0.006 * r.u(-1, 1), 0.006 * r.u(-1, 1), 0.03 * r.u(-1, 1)
    return torch.stack([yaw, pitch, roll, tx, ty, tz], 1)


def sample_light(r: _Draws) -> Tensor:
    """Light vectors [B,8]: ambient, diffuse, unit direction towards the light (canonical frame), colour."""
    ambient = r.u(0.3, 0.6)
    diffuse = r.u(0.45, 0.8)
    direction = F.normalize(torch.stack([r.u(-0.9, 0.9), r.u(-0.8, 0.4), -torch.ones_like(ambient)], 1), dim=1)
    warm = 0.04 * r.n().clamp(-2, 2)
    colour = torch.stack([1 + warm, torch.ones_like(warm), 1 - warm], 1)
    colour = colour / colour.amax(1, keepdim=True)
    return torch.cat([ambient[:, None], diffuse[:, None], direction, colour], 1)


# ---------------------------------------------------------------------------------------------------- shapes
def _cov(d: Tensor, px: float) -> Tensor:
    """Antialiased coverage of a signed distance (negative inside), one pixel wide ramp."""
    return (0.5 - d / px).clamp_(0, 1)


def _ellipse(x: Tensor, y: Tensor, cx, cy, rx, ry) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse (first-order, exact on the boundary)."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    r = torch.sqrt(dx * dx + dy * dy + 1e-12)
    grad = torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2 + 1e-12)
    return (r - 1) * r / grad


def _band(x: Tensor, y: Tensor, y_top: Tensor, y_bottom: Tensor, half_width) -> Tensor:
    """Signed distance-like value of the region y_top < y < y_bottom, |x| < half_width."""
    return torch.maximum(torch.maximum(y_top - y, y - y_bottom), x.abs() - half_width)


def _smoothstep(e0, e1, v: Tensor) -> Tensor:
    """Hermite step from 0 at e0 to 1 at e1."""
    t = ((v - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _gauss(x: Tensor, y: Tensor, cx, cy, sx, sy) -> Tensor:
    """Gaussian bump exp(-((x - cx) / sx)^2 - ((y - cy) / sy)^2)."""
    return torch.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _rgb(r: float, g: float, b: float) -> Tensor:
    """A constant colour [1,3,1,1]."""
    return torch.tensor([r, g, b]).view(1, 3, 1, 1)


class _Window:
    """A window of the canonical grid: coordinates x [1,1,1,w], y [1,1,h,1] and its row and column slices."""

    def __init__(self, x: Tensor, y: Tensor, rows: slice, cols: slice):
        self.x, self.y, self.rows, self.cols = x, y, rows, cols


class _Canvas:
    """Painter's-order compositing of albedo, labels, depth and opacity on the canonical grid.

    Shapes are evaluated on windows of the grid (``window``) that hold everything a part can cover, so that small
    parts cost little; ``x`` [1,1,1,w] and ``y`` [1,1,h,1] of a window are canonical face coordinates."""

    def __init__(self, albedo: Tensor, depth: Tensor, res: int):
        b = albedo.shape[0]
        self.albedo, self.depth = albedo, depth
        self.labels = torch.zeros(b, res, res, dtype=torch.long)
        self.alpha = torch.zeros(b, 1, res, res)
        u, v = pixel_coords(res, res)
        self.u, self.v = u / FACE_ZOOM, v / FACE_ZOOM + FACE_CENTRE_Y
        self.px = 2.0 / res / FACE_ZOOM  # one pixel in face units
        self.full = self.window()

    def window(self, x0: float = -9.0, x1: float = 9.0, y0: float = -9.0, y1: float = 9.0) -> _Window:
        """The window of pixels whose centres lie in [x0, x1] x [y0, y1] (face units) plus a two pixel margin."""
        m = 2 * self.px
        c0, c1 = (int(torch.searchsorted(self.u, torch.tensor(t))) for t in (x0 - m, x1 + m))
        r0, r1 = (int(torch.searchsorted(self.v, torch.tensor(t))) for t in (y0 - m, y1 + m))
        rows, cols = slice(r0, max(r0, r1)), slice(c0, max(c0, c1))
        return _Window(self.u[cols].view(1, 1, 1, -1), self.v[rows].view(1, 1, -1, 1), rows, cols)

    def paint(self, w: _Window, cov: Tensor, colour: Tensor | None = None, label: int | None = None,
              depth: Tensor | None = None, solid: bool = False) -> None:
        """Paint coverage cov [B,1,h,w] of window w with a colour [B,3,1,1] or [B,3,h,w], a label, a surface depth
        and/or opacity (solid)."""
        if colour is not None:
            region = self.albedo[:, :, w.rows, w.cols]
            region.lerp_(colour.expand_as(region), cov)
        if label is not None:
            self.labels[:, w.rows, w.cols].masked_fill_(cov[:, 0] > 0.5, label)
        if depth is not None:
            region = self.depth[:, :, w.rows, w.cols]
            region.lerp_(depth.expand_as(region), cov)
        if solid:
            region = self.alpha[:, :, w.rows, w.cols]
            region.copy_(1 - (1 - region) * (1 - cov))

    def add_depth(self, w: _Window, relief: Tensor) -> None:
        """Add a relief [B,1,h,w] to the depth of window w."""
        self.depth[:, :, w.rows, w.cols] += relief


class _Face:
    """Per-face shape parameters [B,1,1,1] (factors P, colours C, jitter J) and the layout of the parts."""

    def __init__(self, f: dict[str, Tensor], c: dict[str, Tensor], r: _Draws):
        b = len(f["sex"])
        self.P = P = {k: v.float().view(b, 1, 1, 1) for k, v in f.items()}
        self.C = {k: v.float().view(b, 3, 1, 1) for k, v in c.items()}
        self.J = J = {k: r.u(-1, 1).float().view(b, 1, 1, 1)
                      for k in ("gaze_x", "gaze_y", "tilt", "strand", "frame_shape")}
        # head oval: half width, height above and below the centre line fcy, jaw narrowing
        self.fw = 0.47 + 0.10 * (P["face_width"] - 0.5)
        self.ft = 0.66 * torch.ones_like(self.fw)
        self.fb = 0.60 + 0.10 * (P["chin_length"] - 0.5)
        self.fcy = 0.02
        self.jaw = 0.42 - 0.30 * (P["jaw_width"] - 0.5)
        self.rz = 0.95 * self.fw * HALF_FOV_TAN  # depth radius of the face
        # hair volume: ellipsoid (hw, hh) around hcy, length of long hair
        vol = 0.03 + 0.08 * P["hair_volume"]
        self.hw, self.hh = self.fw + 0.01 + vol, self.ft + 0.01 + vol
        self.hcy = self.fcy - 0.06
        self.length_y = -0.1 + 0.85 * P["hair_length"]
        # eyes (centre height ye, half spacing es, half width erx, opening ery), nose tip yn, mouth ym, mw
        self.ye = self.fcy - 0.10 + 0.03 * J["tilt"]
        self.es = self.fw * (0.40 + 0.08 * (P["eye_spacing"] - 0.5))
        self.erx = 0.105 + 0.03 * (P["eye_size"] - 0.5)
        self.ery = self.erx * (0.28 + 0.32 * P["eye_openness"]) * (1 - 0.25 * (P["smile"] - 0.5).clamp(min=0))
        self.yn = self.ye + 0.27 + 0.08 * (P["nose_length"] - 0.5)
        self.nwid = 0.085 + 0.035 * (P["nose_width"] - 0.5)
        self.ym = self.yn + 0.08 + 0.5 * (self.fb + self.fcy - self.yn) * 0.55
        self.mw = 0.165 + 0.05 * (P["mouth_width"] - 0.5) + 0.02 * P["smile"]
        self.opening_max = 0.055 * (P["mouth_open"] - 0.3).clamp(min=0)
        self.up_max = 0.038 + 0.026 * P["lip_thickness"]

    def mouth_line(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Centre line of the (smiling) mouth, its opening and upper lip thickness at x."""
        line = self.ym - 0.07 * (self.P["smile"] - 0.35) * (x / self.mw) ** 2
        prof = torch.sqrt((1 - (x / self.mw) ** 2).clamp(min=0))
        opening = self.opening_max * prof
        up_th = self.up_max * (1 - 0.25 * torch.exp(-(x / 0.03) ** 2)) * (0.3 + 0.7 * prof)
        return line, opening, up_th


def _paint_hair_back(cv: _Canvas, fc: _Face) -> tuple[Tensor, Tensor, Tensor]:
    """Paint the hair behind the head; returns its signed distance, depth and strand texture (full grid)."""
    P, x, y = fc.P, cv.full.x, cv.full.y
    hyc = torch.minimum(y - fc.hcy, torch.zeros_like(y))  # ellipsoid above hcy, a column below (long hair)
    widen = 1 + 0.1 * ((y - fc.hcy).clamp(min=0) * P["hair_length"])
    d_back = torch.maximum(_ellipse(x / widen, hyc, 0.0, 0.0, fc.hw, fc.hh) * widen, y - fc.length_y)
    fringe = torch.maximum(torch.maximum(d_back, -0.1 - y), torch.maximum(y - 0.2, x.abs() - fc.fw - 0.05))
    d_back = torch.where(P["baldness"] > 0.5, fringe, d_back)  # bald: a fringe above the ears only
    rh2 = (x / (fc.hw * widen)) ** 2 + (hyc / fc.hh) ** 2
    depth = HEAD_CENTRE_DEPTH - 0.8 * fc.hw * HALF_FOV_TAN * torch.sqrt((1 - rh2).clamp(min=0) + 1e-3)
    strands = 1 + 0.10 * torch.sin(70 * torch.atan2(x - 0.3 * (P["hair_parting"] - 0.5), y - fc.hcy + 0.9)
                                   + 6 * fc.J["strand"])
    texture = (fc.C["hair"] * strands).clamp(0, 1)
    cv.paint(cv.full, _cov(d_back, cv.px), texture * 0.85, HELEN_ID["hair"], depth, solid=True)
    return d_back, depth, texture


def _paint_head_and_neck(cv: _Canvas, fc: _Face) -> tuple[Tensor, Tensor]:
    """Paint neck, ears and the face oval (skin) with their depth; returns the face's signed distance and coverage."""
    x, y, px, skin, zc, tw = cv.full.x, cv.full.y, cv.px, fc.C["skin"], HEAD_CENTRE_DEPTH, HALF_FOV_TAN
    nw = 0.48 * fc.fw
    d_neck = torch.maximum((x.abs() - nw), fc.fcy + 0.3 - y)
    neck_depth = zc + 0.01 - 0.8 * nw * tw * torch.sqrt((1 - (x / nw) ** 2).clamp(min=0) + 1e-3)
    cv.paint(cv.full, _cov(d_neck, px), skin * 0.8, HELEN_ID["skin"], neck_depth, solid=True)
    d_ears = _ellipse(x.abs(), y, fc.fw + 0.01, fc.fcy + 0.02, 0.07, 0.15)
    cv.paint(cv.full, _cov(d_ears, px), skin * 0.95, HELEN_ID["skin"], zc - 0.2 * fc.rz, solid=True)
    yy = y - fc.fcy
    lower = (yy / fc.fb).clamp(0, 1)
    wy = fc.fw * (1 - fc.jaw * lower ** 2 * (0.6 + 0.4 * lower))
    hy = torch.where(yy > 0, fc.fb, fc.ft)
    d_face = _ellipse(x, yy, 0.0, 0.0, wy, hy)
    rf2 = (x / wy) ** 2 + (yy / hy) ** 2
    face_depth = zc - fc.rz * torch.sqrt((1 - rf2).clamp(min=0) + 1e-4)
    cov_face = _cov(d_face, px)
    cv.paint(cv.full, cov_face, skin, HELEN_ID["skin"], face_depth, solid=True)
    return d_face, cov_face


def _paint_face_relief_and_makeup(cv: _Canvas, fc: _Face, inside: Tensor) -> None:
    """Shape cheeks, chin, brow ridge, eye sockets and lips' surroundings; paint blush, eye bags and eye shadow."""
    P, x, y, fw, es, erx, ery, ye = fc.P, cv.full.x, cv.full.y, fc.fw, fc.es, fc.erx, fc.ery, fc.ye
    xa = x.abs()
    relief = -(0.003 + 0.006 * P["cheekbones"]) * _gauss(xa, y, 0.55 * fw, ye + 0.2, 0.16, 0.14)
    relief -= 0.004 * _gauss(x, y, 0.0, fc.fb + fc.fcy - 0.08, 0.14, 0.08)  # chin
    relief -= 0.005 * _gauss(xa, y, es, ye - 0.1, 0.16, 0.05)  # brow ridge
    relief += 0.007 * _gauss(xa, y, es, ye, erx * 1.1, 0.075)  # eye sockets
    relief -= 0.006 * _gauss(x, y, 0.0, fc.ym, fc.mw * 1.1, 0.07)  # lips push forward
    cv.add_depth(cv.full, relief * inside)
    skin = fc.C["skin"]
    blush = _gauss(xa, y, 0.55 * fw, ye + 0.2, 0.13, 0.1)
    cv.paint(cv.full, blush * (0.4 * P["blush"]) * inside, _rgb(0.95, 0.45, 0.5))
    bags = _gauss(xa, y, es, ye + ery + 0.035, erx * 0.9, 0.02)
    cv.paint(cv.full, bags * (0.35 * P["eye_bags"]), skin * _rgb(0.7, 0.6, 0.65))
    shadow = _gauss(xa, y, es, ye - ery - 0.02, erx * 1.1, 0.035)
    cv.paint(cv.full, shadow * (0.6 * P["eye_shadow"]), fc.C["shadow"])


def _paint_beard_and_moustache(cv: _Canvas, fc: _Face, d_face: Tensor) -> None:
    """Paint beard (full or goatee) and moustache as darker albedo on the skin (labels stay skin)."""
    P, x, y, px = fc.P, cv.full.x, cv.full.y, cv.px
    beard_amt = _smoothstep(0.45, 0.6, P["beard"]) * 0.9
    moustache_amt = _smoothstep(0.45, 0.6, P["moustache"]) * 0.9
    if not (beard_amt > 0).any() and not (moustache_amt > 0).any():
        return  # zero coverage would leave the canvas unchanged
    line, opening, up_th = fc.mouth_line(x)
    stubble = 0.92 + 0.08 * torch.sin(157 * x + 3 * fc.J["strand"]) * torch.sin(149 * y + 40 * x * x)
    colour = fc.C["hair"] * 0.8 * stubble
    full = (_smoothstep(fc.yn - 0.02, fc.yn + 0.10, y)
            * (1 - _smoothstep(0.0, 0.05, (fc.ye + 0.25) - y + x.abs() * 0.3)))
    goatee = torch.exp(-((x / (fc.mw * 0.9)) ** 4)) * _smoothstep(line + 0.02, line + 0.08, y)
    region = torch.lerp(goatee, torch.maximum(full, goatee), _smoothstep(0.3, 0.4, P["beard_coverage"]))
    cv.paint(cv.full, _cov(d_face, px) * region * beard_amt, colour)
    top = line - opening / 2 - up_th
    d_moustache = _band(x, y, top - 0.055, top + 0.01, fc.mw * 1.1)
    cv.paint(cv.full, _cov(d_moustache, 3 * px) * moustache_amt, colour)


def _paint_brows(cv: _Canvas, fc: _Face) -> None:
    """Paint both eyebrows (arched strokes thinning towards the temples), slightly raised."""
    P, w = fc.P, cv.window(-0.45, 0.45, -0.40, -0.12)
    colour = torch.lerp(fc.C["hair"], torch.full_like(fc.C["hair"], 0.12), 0.35) * 0.8
    half = fc.erx * 1.35
    yb = fc.ye - (0.12 + 0.05 * (P["brow_height"] - 0.5)) - 0.02
    arch = 0.01 + 0.05 * P["brow_arch"]
    for side, label in ((-1, HELEN_ID["right_brow"]), (1, HELEN_ID["left_brow"])):  # subject's right = image left
        dx = (w.x - side * (fc.es + 0.01)) * side  # > 0 towards the temple
        yc = yb - arch * (1 - ((dx + 0.3 * half) / (1.3 * half)) ** 2)
        th = (0.028 + 0.03 * P["brow_thickness"]) * (1 - 0.45 * ((dx / half).clamp(0, 1)))
        cov = _cov(torch.maximum((w.y - yc).abs() - th / 2, dx.abs() - half), cv.px)
        cv.paint(w, cov, colour, label)
        cv.add_depth(w, -0.002 * cov)


def _paint_eyes(cv: _Canvas, fc: _Face) -> None:
    """Paint both eyes: almond sclera between parabolic lids, iris, pupil and lash line."""
    P, w, px, erx, ery = fc.P, cv.window(-0.4, 0.4, -0.24, 0.06), cv.px, fc.erx, fc.ery
    sclera, pupil, lashes = _rgb(0.92, 0.9, 0.88), torch.full((1, 3, 1, 1), 0.05), torch.full((1, 3, 1, 1), 0.08)
    for side, label in ((-1, HELEN_ID["right_eye"]), (1, HELEN_ID["left_eye"])):
        cx = side * fc.es
        dx = (w.x - cx) * side
        t = 1 - (dx / erx) ** 2
        yc = fc.ye - 0.015 * (dx / erx)  # outer corners slightly up
        y_up, y_lo = yc - ery * t, yc + 0.75 * ery * t
        cov_eye = _cov(torch.maximum(torch.maximum(y_up - w.y, w.y - y_lo), dx.abs() - erx), px)
        cv.paint(w, cov_eye, sclera, label)
        ir = 0.55 * erx
        ix, iy = cx + 0.25 * erx * fc.J["gaze_x"], fc.ye + 0.1 * ery * fc.J["gaze_y"]
        cv.paint(w, _cov(_ellipse(w.x, w.y, ix, iy, ir, ir), px) * cov_eye, fc.C["iris"])
        cv.paint(w, _cov(_ellipse(w.x, w.y, ix, iy, 0.45 * ir, 0.45 * ir), px) * cov_eye, pupil)
        lash = torch.maximum((w.y - (y_up + 0.004)).abs() - (0.006 + 0.006 * P["eye_shadow"]), dx.abs() - erx * 1.05)
        cv.paint(w, _cov(lash, px) * 0.85, lashes)


def _paint_nose(cv: _Canvas, fc: _Face, inside: Tensor) -> None:
    """Shape the nose (ridge widening to the tip, nostril wings) and paint it, slightly redder, with nostrils."""
    P, w, px, ye, yn, nwid = fc.P, cv.window(-0.3, 0.3, -0.15, 0.5), cv.px, fc.ye, fc.yn, fc.nwid
    x, y = w.x, w.y
    inside = inside[:, :, w.rows, w.cols]
    frac = ((y - (ye - 0.02)) / (yn - ye + 0.02)).clamp(0, 1.2)
    width_y = nwid * (0.38 + 0.62 * _smoothstep(0.0, 1.0, frac))
    point = P["nose_pointiness"]
    amount = (0.010 + 0.010 * P["nose_relief"]) * (0.7 + 0.3 * point)
    profile = frac.clamp(0, 1) ** 1.1 * torch.exp(-((y - yn).clamp(min=0) / (0.035 - 0.012 * point)) ** 2)
    ridge = torch.exp(-(x / (0.45 * width_y + 0.012)) ** 2)
    tip = _gauss(x, y, 0.0, yn - 0.02, 0.55 * nwid, 0.05 - 0.015 * point)
    wings = _gauss(x.abs(), y, 0.75 * nwid, yn - 0.005, 0.35 * nwid, 0.03)
    cv.add_depth(w, -(amount * (profile * ridge + 0.35 * tip) + 0.004 * wings) * inside)
    d_nose = torch.maximum(torch.maximum(x.abs() - width_y, (ye + 0.02) - y), y - (yn + 0.01))
    d_nose = torch.minimum(d_nose, _ellipse(x, y, 0.0, yn - 0.02, nwid * 1.05, 0.045))
    skin = fc.C["skin"]
    cv.paint(w, _cov(d_nose, px) * inside, skin * _rgb(1.0, 0.95, 0.93), HELEN_ID["nose"])
    d_nostrils = _ellipse(x.abs(), y, 0.45 * nwid, yn + 0.008, 0.028, 0.013)
    cv.paint(w, _cov(d_nostrils, px) * 0.7 * inside, skin * 0.35)


def _paint_mouth(cv: _Canvas, fc: _Face, inside: Tensor) -> None:
    """Paint upper and lower lips and the opening between them (teeth in its upper part), a little hollow."""
    w, px, mw, lips = cv.window(-0.3, 0.3, 0.1, 0.65), cv.px, fc.mw, fc.C["lips"]
    x, y = w.x, w.y
    line, opening, up_th = fc.mouth_line(x)
    prof = torch.sqrt((1 - (x / mw) ** 2).clamp(min=0))
    lo_th = (0.042 + 0.036 * fc.P["lip_thickness"]) * (0.25 + 0.75 * prof)
    d_inner = _band(x, y, line - opening / 2, line + opening / 2, mw * 0.92)
    cov_inner = _cov(d_inner, px)
    cv.add_depth(w, 0.004 * cov_inner * inside[:, :, w.rows, w.cols])
    cv.paint(w, _cov(_band(x, y, line - opening / 2 - up_th, line - opening / 2 + 0.004, mw), px), lips * 0.92,
             HELEN_ID["upper_lip"])
    cv.paint(w, _cov(_band(x, y, line + opening / 2 - 0.004, line + opening / 2 + lo_th, mw * 0.97), px), lips,
             HELEN_ID["lower_lip"])
    teeth = _cov(_band(x, y, line - opening / 2, line - opening / 2 + 0.45 * opening, mw * 0.7), px)
    cv.paint(w, cov_inner, torch.lerp(_rgb(0.28, 0.05, 0.07), _rgb(0.92, 0.9, 0.84), teeth), HELEN_ID["inner_mouth"])
    cv.paint(w, _cov((y - line).abs() - 0.004, px) * _cov(x.abs() - mw, px) * 0.6, lips * 0.45)


def _paint_front_hair(cv: _Canvas, fc: _Face, d_back: Tensor, hair_depth: Tensor, texture: Tensor,
                      cov_face: Tensor) -> None:
    """Paint the hair in front of the head: cap above the hairline, bangs over the forehead, long side locks."""
    P, x, y = fc.P, cv.full.x, cv.full.y
    part = 0.6 * (P["hair_parting"] - 0.5)
    hairline = (fc.fcy - fc.ft * (0.55 + 0.35 * P["hairline"] * (P["bangs"] <= 0.5).float())
                + 0.35 * (x - part).abs() ** 1.6 * (1 + 0.6 * P["hairline"]))
    bang_y = fc.ye - 0.20 + 0.08 * P["bangs"] - 0.12 * (x - part) * torch.sign(part + 1e-6)
    hairline = torch.where(P["bangs"] > 0.5, torch.maximum(hairline, bang_y), hairline)
    d_cap = torch.maximum(y - hairline, _ellipse(x, y, 0.0, fc.hcy, fc.hw - 0.02, fc.hh - 0.02))
    d_cap = torch.where(P["baldness"] > 0.5, torch.full_like(d_cap, 1.0), d_cap)
    locks = torch.maximum(torch.maximum(fc.fw * 0.83 - x.abs(), y - fc.length_y), (fc.ye - 0.1) - y)
    locks = torch.maximum(locks, (0.45 - P["hair_length"]) * 2)  # side locks only for long hair
    d_front = torch.minimum(d_cap, torch.maximum(locks, d_back))
    cap_depth = torch.minimum(cv.depth, hair_depth) - 0.004 - 0.012 * P["hair_volume"] * cov_face
    cv.paint(cv.full, _cov(d_front, cv.px), texture, HELEN_ID["hair"], cap_depth, solid=True)


def _paint_eyeglasses(cv: _Canvas, fc: _Face) -> Tensor:
    """Paint eyeglass frames (rings around the eyes, bridge, temples) over the parts, whose labels stay; returns
    their coverage [B,1,H,W]."""
    glasses = torch.zeros_like(cv.alpha)
    worn = (fc.P["eyeglasses"] > 0.5).float()
    if not worn.any():
        return glasses
    w, shape = cv.window(y0=-0.25, y1=0.1), fc.J["frame_shape"]
    x, y, ye, es = w.x, w.y, fc.ye, fc.es
    gx, gy = fc.erx * 1.6, 0.075 + 0.02 * shape
    thick = 0.012 + 0.006 * (shape + 1)
    rounded = 0.03 + 0.03 * (shape + 1)
    frames = None
    for side in (-1, 1):
        qx, qy = (x - side * es).abs() - gx + rounded, (y - (ye + 0.01)).abs() - gy + rounded
        box = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0) - rounded
        ring = box.abs() - thick / 2
        frames = ring if frames is None else torch.minimum(frames, ring)
    bridge = _band(x, y, ye - 0.03 - thick / 2, ye - 0.03 + thick / 2, es - gx + 0.01)
    temples = torch.maximum(_band(x, y, ye - 0.03 - thick / 2, ye - 0.03 + thick / 2, fc.fw - 0.01),
                            (es + gx - 0.01) - x.abs())
    frames = torch.minimum(frames, torch.minimum(bridge, temples))
    cov = _cov(frames, cv.px) * worn * cv.alpha[:, :, w.rows, w.cols]
    glasses[:, :, w.rows, w.cols] = cov
    cv.paint(w, cov, fc.C["frame"])
    return glasses


def draw_faces(f: dict[str, Tensor], c: dict[str, Tensor], r: _Draws, res: int) -> dict[str, Tensor]:
    """Canonical albedo [B,3,H,W], depth [B,1,H,W], labels [B,H,W], opacity [B,1,H,W], eyeglasses [B,1,H,W]."""
    fc = _Face(f, c, r)
    b, zc = len(f["sex"]), HEAD_CENTRE_DEPTH
    bald = (fc.P["baldness"] > 0.5).float()
    cv = _Canvas(torch.lerp(fc.C["hair"], fc.C["skin"], bald).expand(b, 3, res, res).clone(),
                 torch.full((b, 1, res, res), zc + 0.02), res)
    d_back, hair_depth, texture = _paint_hair_back(cv, fc)
    d_face, cov_face = _paint_head_and_neck(cv, fc)
    inside = _cov(d_face + 0.03, cv.px)  # well inside the face
    _paint_face_relief_and_makeup(cv, fc, inside)
    _paint_beard_and_moustache(cv, fc, d_face)
    _paint_brows(cv, fc)
    _paint_eyes(cv, fc)
    _paint_nose(cv, fc, inside)
    _paint_mouth(cv, fc, inside)
    _paint_front_hair(cv, fc, d_back, hair_depth, texture, cov_face)
    glasses = _paint_eyeglasses(cv, fc)
    depth = zc + FACE_ZOOM * (cv.depth - zc)  # the face is drawn FACE_ZOOM times larger: scale its relief alike
    return {"albedo": cv.albedo.clamp(0, 1), "depth": depth, "labels": cv.labels, "alpha": cv.alpha,
            "eyeglasses": glasses}


def background_images(c: dict[str, Tensor], r: _Draws, res: int) -> Tensor:
    """Smooth backgrounds [B,3,H,W]: a linear gradient between two colours at a random angle, plus a vignette."""
    angle = (r.u() * 2 * math.pi).float().view(-1, 1, 1, 1)
    u, v = pixel_coords(res, res)
    x, y = u.view(1, 1, 1, res), v.view(1, 1, res, 1)
    t = (0.5 + 0.35 * (x * angle.cos() + y * angle.sin())).clamp(0, 1)
    bg = torch.lerp(c["bg1"].float().view(-1, 3, 1, 1), c["bg2"].float().view(-1, 3, 1, 1), t)
    return bg * (1 - 0.15 * (x * x + y * y))


@functools.lru_cache(maxsize=1)
def _renderer_source_hash() -> str:
    """sha256 of the source files that draw and render a face (this module, labels and helpers.render)."""
    digest = hashlib.sha256()
    for module in (__file__, labels_module.__file__, render_module.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16]


class SynthFaces(Dataset):
    """Procedural faces with labels, depth, albedo, light, view, factors and attributes; deterministic per seed."""

    classes = HELEN_CLASSES
    factor_names = FACTOR_NAMES
    attribute_names = ATTRIBUTE_NAMES
    view_names = VIEW_NAMES
    light_names = LIGHT_NAMES
    CHUNK_PIXELS = 1 << 18  # output pixels per internal chunk of a batch

    def __init__(self, resolution: int = 64, length: int = 10000, seed: int = 0,
                 pose_range: tuple[float, float, float] = (45.0, 20.0, 8.0), supersample: int = 2,
                 step_px: float = 1.5):
        """resolution 32..256, length faces, seed; pose_range = max |yaw|, |pitch| and roll scale in degrees;
        supersample = k x k sub-pixel rays on edge pixels (2: antialiased; 1: faster, jagged silhouettes);
        step_px = ray-march step in canonical pixels."""
        if not 16 <= resolution <= 512:
            raise ValueError(f"resolution must be in 16..512, got {resolution}")
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if not (0 <= pose_range[0] <= 75 and 0 <= pose_range[1] <= 45):
            raise ValueError(f"pose_range (yaw, pitch, roll) must stay within (75, 45, *) degrees, got {pose_range}")
        self.resolution, self.length, self.seed = int(resolution), int(length), int(seed)
        self.pose_range = tuple(float(p) for p in pose_range)
        self.supersample = int(supersample)
        self.steps = self._march_steps(step_px)

    def _march_steps(self, step_px: float) -> int:
        """Ray-march steps for the worst view of the pose range (fixed, so results do not depend on the batch)."""
        yaw, pitch = (math.radians(a) for a in self.pose_range[:2])
        slope = math.sqrt(math.tan(yaw) ** 2 + math.tan(pitch) ** 2) + 0.1
        extent = slope * 0.10 * FACE_ZOOM / HALF_FOV_TAN * self.resolution / 2  # slab depth <= ~0.11 world units
        return max(4, math.ceil(extent / step_px))

    def render_key(self) -> dict:
        """What decides the pixels of face i: the settings, the renderer's source and torch's version (the key of
        the render cache, `helpers.data.memory.render_split`; the length does not change any face)."""
        return {"dataset": "synthfaces", "resolution": self.resolution, "seed": self.seed,
                "pose_range": list(self.pose_range), "supersample": self.supersample, "steps": self.steps,
                "source": _renderer_source_hash(), "torch": str(torch.__version__)}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for SynthFaces of length {self.length}")
        item = self.batch([index % self.length])
        return {k: v[0] for k, v in item.items()}

    def _sample(self, indices) -> tuple[_Draws, dict[str, Tensor], dict[str, Tensor], Tensor, Tensor]:
        """Random numbers, factors, colours, views and lights of faces `indices` (no pixel work)."""
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.length]
        if bad:
            raise IndexError(f"indices {bad[:5]} out of range for SynthFaces of length {self.length}")
        r = _Draws(*draw_numbers(self.seed, indices))
        f = sample_factors(r)
        colours = sample_colours(r, f)
        view = sample_view(r, self.pose_range).float()
        light = sample_light(r).float()
        return r, f, colours, view, light

    def annotations(self, indices) -> dict[str, Tensor]:
        """factors, attributes, view and light of faces `indices` without rendering (fast, for statistics)."""
        _, f, _, view, light = self._sample(indices)
        factors = torch.stack([f[name] for name in FACTOR_NAMES], 1).float()
        return {"factors": factors, "attributes": attributes_from_factors(f), "view": view, "light": light}

    def batch(self, indices, views: Tensor | None = None) -> dict[str, Tensor]:
        """Render faces `indices` at once (vectorised); same keys as an item with a batch dimension first. `views`
        [B, 6] renders the same faces (identity, expression, light, background) in those views instead of their own."""
        indices = [int(i) for i in indices]
        if views is not None and tuple(views.shape) != (len(indices), 6):
            raise ValueError(f"views: expected shape ({len(indices)}, 6), one view per index; got {tuple(views.shape)}")
        chunk = max(1, self.CHUNK_PIXELS // self.resolution ** 2)  # bounded memory, warm caches
        if len(indices) > chunk:
            parts = [self._batch(indices[i:i + chunk], None if views is None else views[i:i + chunk])
                     for i in range(0, len(indices), chunk)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return self._batch(indices, views)

    def _batch(self, indices: list[int], views: Tensor | None = None) -> dict[str, Tensor]:
        r, f, colours, view, light = self._sample(indices)
        if views is not None:
            view = views.float()
        canon = draw_faces(f, colours, r, self.resolution)
        background = background_images(colours, r, self.resolution)
        out = render(canon["depth"], canon["albedo"], light, view, labels=canon["labels"], background=background,
                     alpha=canon["alpha"], extra=canon["eyeglasses"], supersample=self.supersample,
                     steps=self.steps)
        factors = torch.stack([f[name] for name in FACTOR_NAMES], 1).float()
        return {
            "image": out["image"], "labels": out["labels"], "mask": out["mask"], "shading": out["shading"],
            "view_depth": out["depth"], "eyeglasses_mask": (out["extra"][:, 0] > 0.5) & out["mask_hard"][:, 0],
            "depth": canon["depth"], "albedo": canon["albedo"], "canonical_labels": canon["labels"],
            "canonical_mask": canon["alpha"], "background": background, "view": view, "light": light,
            "factors": factors, "attributes": attributes_from_factors(f),
        }
