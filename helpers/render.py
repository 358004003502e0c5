"""A differentiable, batched, pure-torch renderer with the image model of unsup3d (Wu et al., CVPR 2020).

Image model
-----------
A face is described in a *canonical* frontal frame by a depth map ``d`` [B,1,H,W] (distance along the camera's
z axis, values around 1: unsup3d uses [0.9, 1.1]; smaller = nearer the camera), an albedo ``a`` [B,3,H,W] in [0,1]
and optionally a part label map and a foreground opacity ``alpha``.

* Camera: a pinhole at the origin looking along +z, field of view ``fov_deg`` (unsup3d: 10 degrees), image axes
  x right and y down (a right-handed frame x right, y down, z forward). Pixel (i, j) has the normalised coordinate
  u = (2j + 1) / W - 1, v = (2i + 1) / H - 1 (``align_corners=False``), and the canonical pixel with depth d
  back-projects to P = (u t d, v t d, d), t = tan(fov / 2).
* Normals (``depth_to_normals``): central finite differences of P over the pixel grid, n = (dP/dv x dP/du) / |.|,
  so a surface that faces the camera has n_z < 0 (a frontal plane has n = (0, 0, -1)).
* Shading (``shade``), computed in the canonical frame as in unsup3d, so the light turns with the face:
  s = ambient + diffuse * max(0, n . l), l the unit direction *towards* the light (frontal light: l = (0, 0, -1);
  ``light_direction(dx, dy)`` builds l = normalise(dx, dy, -1) like unsup3d's two-number light).
  The canonical image is albedo * s * light colour (colour default white).
* View: the canonical surface turns about the object centre c = (0, 0, 1) and moves by T:
  P' = R (P - c) + c + T, with R = R_z(roll) R_y(yaw) R_x(pitch) (angles in radians; positive yaw moves the nose
  towards the image left, positive pitch moves it towards the image top), then projects with the same camera.
* Output: the rendered image is composited over a background, with the label map of the visible surface
  (0 where no surface), the depth seen from the view, a soft (antialiased) foreground mask and the warped shading.

How the view is rendered (and why)
----------------------------------
Height-field ray marching in the canonical frame (the "inverse" warp). Each output pixel's ray
r(s) = s (u' t, v' t, 1) maps into the canonical frame as Q(s) = R^T (r(s) - c - T) + c = s A + b, a straight line
whose canonical projection q(s) runs along the epipolar line. The ray hits the surface where
h(s) = Q_z(s) - d(q(s)) changes sign from negative (in front of the surface) to positive; d(q) is read with
``grid_sample``. We march s over the depth slab [min d, max d] of each image in ``steps`` steps (about one canonical
pixel along the epipolar line per step, chosen from the view), keep the *first* sign change (so the nearest surface
wins: the nose hides the far cheek), narrow the bracket with a few Illinois (regula falsi) steps without gradients,
and finish with one differentiable Newton step s* = s0 - h(s0) / h'(s0) whose value is the root and whose gradient
is the implicit-function gradient with respect to depth and view. The canonical point q(s*) then samples albedo,
shading, opacity and extra channels bilinearly (differentiable) and labels by nearest neighbour.
Compared with forward z-buffer splatting, ray marching has no holes by construction (every output pixel gets its own
ray, however much the surface is stretched at yaw 60 degrees), handles occlusion exactly, needs no scatter ops, and
gives exact gradients through the root; its cost is linear in the number of steps, which stays small because the
field of view is narrow. Where the canonical opacity ``alpha`` is 0 (SynthFaces' background) the surface is pushed
behind the slab so rays pass through. Seen from the side, the height field's silhouette continues backwards as an
opaque wall (the unseen back of the object, as in unsup3d where the whole depth map is surface); rays that pass a
steep silhouette corner between two coarse steps are marched again with 3x finer steps. Every hit is fully opaque
(mask = hit, faded only where q leaves the canonical image), and antialiasing comes from ``supersample``: render at
k times the resolution and average down (labels by majority vote among the parts of the covered sub-pixels).
Per-sample soft coverage was tried first and gave streaks where side views see the silhouette wall.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
OBJECT_CENTRE = (0.0, 0.0, 1.0)


@dataclass
class Light:
    """Lambertian light: ambient [B,1], diffuse [B,1], direction towards the light [B,3], colour [B,3] or None."""

    ambient: Tensor
    diffuse: Tensor
    direction: Tensor
    colour: Tensor | None = None

    @classmethod
    def from_vector(cls, v: Tensor) -> "Light":
        """Light from [B,5] (ambient, diffuse, dx, dy, dz) or [B,8] (..., r, g, b)."""
        return cls(v[:, 0:1], v[:, 1:2], v[:, 2:5], v[:, 5:8] if v.shape[1] >= 8 else None)

    def to_vector(self) -> Tensor:
        """[B,8] vector ambient, diffuse, direction xyz, colour rgb."""
        colour = self.colour if self.colour is not None else torch.ones_like(self.direction)
        return torch.cat([self.ambient, self.diffuse, self.direction, colour], dim=1)


@dataclass
class View:
    """Viewpoint: rotation [B,3] (yaw, pitch, roll in radians) and translation [B,3] (x, y, z) or None."""

    rotation: Tensor
    translation: Tensor | None = None

    @classmethod
    def from_vector(cls, v: Tensor) -> "View":
        """View from [B,3] (yaw, pitch, roll) or [B,6] (yaw, pitch, roll, tx, ty, tz)."""
        return cls(v[:, 0:3], v[:, 3:6] if v.shape[1] >= 6 else None)

    def to_vector(self) -> Tensor:
        """[B,6] vector yaw, pitch, roll, tx, ty, tz."""
        t = self.translation if self.translation is not None else torch.zeros_like(self.rotation)
        return torch.cat([self.rotation, t], dim=1)


def _as_light(light: Light | Tensor) -> Light:
    return light if isinstance(light, Light) else Light.from_vector(light)


def _as_view(view: View | Tensor) -> View:
    return view if isinstance(view, View) else View.from_vector(view)


def light_direction(dx: Tensor, dy: Tensor) -> Tensor:
    """unsup3d's two-number light: unit vector normalise(dx, dy, -1) towards the light, [B,3]."""
    return F.normalize(torch.stack([dx, dy, -torch.ones_like(dx)], dim=-1), dim=-1)


def pixel_coords(h: int, w: int, device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Normalised pixel-centre coordinates u [W] and v [H] in (-1, 1) (align_corners=False)."""
    u = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    v = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    return u, v


def depth_to_points(depth: Tensor, fov_deg: float = 10.0) -> Tensor:
    """Back-project a depth map [B,1,H,W] to camera-space points [B,3,H,W]."""
    t = math.tan(math.radians(fov_deg) / 2)
    _, _, h, w = depth.shape
    u, v = pixel_coords(h, w, depth.device, depth.dtype)
    return torch.cat([u.view(1, 1, 1, w) * t * depth, v.view(1, 1, h, 1) * t * depth, depth], dim=1)


def depth_to_normals(depth: Tensor, fov_deg: float = 10.0) -> Tensor:
    """Unit surface normals [B,3,H,W] from central differences of the back-projected depth (n_z < 0 faces camera)."""
    _, _, h, w = depth.shape
    padded = F.pad(depth, (1, 1, 1, 1), mode="replicate")
    t = math.tan(math.radians(fov_deg) / 2)
    u = (torch.arange(-1, w + 1, device=depth.device, dtype=depth.dtype) * 2 + 1) / w - 1
    v = (torch.arange(-1, h + 1, device=depth.device, dtype=depth.dtype) * 2 + 1) / h - 1
    p = torch.cat([u.view(1, 1, 1, -1) * t * padded, v.view(1, 1, -1, 1) * t * padded, padded], dim=1)
    du = p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]
    dv = p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]
    n = torch.cross(dv, du, dim=1)
    return n * torch.rsqrt((n * n).sum(1, keepdim=True).clamp(min=1e-20))


def shade(normals: Tensor, light: Light | Tensor) -> Tensor:
    """Lambertian shading [B,1,H,W] = ambient + diffuse * max(0, n . l) for normals [B,3,H,W]."""
    light = _as_light(light)
    l_dir = F.normalize(light.direction, dim=1)
    cos = (normals * l_dir[:, :, None, None]).sum(1, keepdim=True).clamp(min=0)
    return light.ambient[:, :, None, None] + light.diffuse[:, :, None, None] * cos


def rotation_matrix(angles: Tensor) -> Tensor:
    """Rotation matrices [B,3,3] R = R_z(roll) R_y(yaw) R_x(pitch) from angles [B,3] = (yaw, pitch, roll)."""
    yaw, pitch, roll = angles.unbind(1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], 1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def _ray_lines(view: View, h: int, w: int, fov_deg: float, like: Tensor) -> tuple[Tensor, Tensor]:
    """Each output pixel's ray in the canonical frame as Q(s) = s * A + b: A [B,H,W,3], b [B,1,1,3]."""
    t = math.tan(math.radians(fov_deg) / 2)
    u, v = pixel_coords(h, w, like.device, like.dtype)
    dirs = torch.stack(torch.broadcast_tensors(u.view(1, w) * t, v.view(h, 1) * t, torch.ones(1, 1, dtype=like.dtype,
                                                                                                device=like.device)), -1)
    rot = rotation_matrix(view.rotation.to(like.dtype))
    centre = torch.tensor(OBJECT_CENTRE, dtype=like.dtype, device=like.device)
    trans = view.translation.to(like.dtype) if view.translation is not None else torch.zeros_like(view.rotation)
    a = torch.einsum("bji,hwj->bhwi", rot, dirs)  # R^T dir
    b = torch.einsum("bji,bj->bi", rot, -centre - trans) + centre
    return a, b[:, None, None, :]


def _project(q3: Tensor, t: float) -> Tensor:
    """Canonical projection of points [...,3] to grid_sample coordinates [...,2]."""
    return q3[..., :2] / (q3[..., 2:3].clamp(min=1e-6) * t)


def _height(s: Tensor, a: Tensor, b: Tensor, surface: Tensor, t: float) -> Tensor:
    """h(s) = Q_z(s) - d(q(s)) for ray parameters s [B,H,W]; the surface extends beyond the image by its border."""
    q3 = s[..., None] * a + b
    d = F.grid_sample(surface, _project(q3, t), mode="bilinear", padding_mode="border", align_corners=False)
    return q3[..., 2] - d[:, 0]


def _auto_steps(a: Tensor, b: Tensor, s0: Tensor, s1: Tensor, t: float, canon_w: int, step_px: float) -> int:
    """Number of march steps so that one step moves about step_px canonical pixels along the epipolar line."""
    a, s0, s1 = a[:, ::4, ::4], s0[:, ::4, ::4], s1[:, ::4, ::4]  # the extent varies smoothly over the image
    q0 = _project(s0[..., None] * a + b, t)
    q1 = _project(s1[..., None] * a + b, t)
    extent = ((q1 - q0).square().sum(-1).max().sqrt().item()) * canon_w / 2
    return int(min(max(math.ceil(extent / step_px), 2), 512))


def _march(a: Tensor, b: Tensor, surface: Tensor, s0: Tensor, ds: Tensor, steps: int, t: float) -> Tensor:
    """Index k >= 1 of the step that ends each ray's first crossing (h < 0 at s0 + (k-1) ds, h >= 0 at k); 0: none."""
    rays = a.shape[1] * a.shape[2]
    chunk = max(1, (1 << 17) // max(rays, 1))  # a few images at a time: the per-step tensors stay in cache
    if a.shape[0] > chunk:
        return torch.cat([_march(a[i:i + chunk], b[i:i + chunk], surface[i:i + chunk], s0[i:i + chunk],
                                 ds[i:i + chunk], steps, t) for i in range(0, a.shape[0], chunk)])
    scale = torch.tensor([1 / t, 1 / t, 1.0], dtype=a.dtype, device=a.device)
    q_start = (s0[..., None] * a + b) * scale  # x, y pre-divided by t: projection = (x / z, y / z)
    dq = ds[..., None] * a * scale
    first = torch.zeros_like(s0, dtype=torch.long)
    q3 = torch.empty_like(q_start)
    grid = torch.empty_like(q_start[..., :2])
    neg_next = None
    for k in range(steps, -1, -1):  # far to near: the last crossing written is the nearest one
        torch.add(q_start, dq, alpha=k, out=q3)
        torch.div(q3[..., :2], q3[..., 2:3], out=grid)
        d = F.grid_sample(surface, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
        neg = q3[..., 2] < d  # h < 0: in front of the surface
        if neg_next is not None:
            first.masked_fill_(neg & ~neg_next, k + 1)
        neg_next = neg
    return first


def _remarch_silhouette(a: Tensor, b: Tensor, surface: Tensor, s0: Tensor, ds: Tensor, steps: int, t: float,
                        first: Tensor, fine: int) -> tuple[Tensor, Tensor, Tensor]:
    """March the missed rays next to a hit again with `fine` times smaller steps (a coarse step can skip the thin
    corner of a steep silhouette, which shows as jagged edges). Returns bracket start, width and hit flags."""
    found = first > 0
    sa = s0 + ds * (first - 1).clamp(min=0)
    band = ~found & (F.max_pool2d(found[:, None].to(a.dtype), 3, 1, 1)[:, 0] > 0)
    flat = band.flatten(1)
    m = int(flat.sum(1).max())
    if m == 0:
        return sa, ds, found
    order = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)[:, :m]  # band rays first, per image
    valid = torch.arange(m, device=a.device)[None] < flat.sum(1, keepdim=True)
    a_sel = a.flatten(1, 2).gather(1, order[..., None].expand(-1, -1, 3))[:, None]
    s0_sel = s0.flatten(1).gather(1, order)[:, None]
    ds_sel = ds.flatten(1).gather(1, order)[:, None] / fine
    first_sel = _march(a_sel, b, surface, s0_sel, ds_sel, steps * fine, t)[:, 0]
    hit = (first_sel > 0) & valid
    sa_sel = (s0_sel + ds_sel * (first_sel - 1).clamp(min=0))[:, 0]

    def put(target: Tensor, values: Tensor) -> Tensor:
        flat_t = target.flatten(1).clone()
        flat_t.scatter_(1, order, torch.where(hit, values, flat_t.gather(1, order)))
        return flat_t.view_as(target)

    return put(sa, sa_sel), put(ds, ds_sel[:, 0]), put(found, torch.ones_like(hit))


def _find_root(a: Tensor, b: Tensor, surface: Tensor, z0: Tensor, z1: Tensor, t: float,
               steps: int | None, step_px: float, refine: int, fine: int = 3) -> tuple[Tensor, Tensor]:
    """First crossing of each ray with the height field, without gradients: (s root [B,H,W], hit [B,H,W] bool)."""
    az, bz = a[..., 2], b[..., 2]
    s0 = (z0[:, None, None] - bz) / az
    s1 = (z1[:, None, None] - bz) / az
    if steps is None:
        steps = _auto_steps(a, b, s0, s1, t, surface.shape[-1], step_px)
    ds = (s1 - s0) / steps
    first = _march(a, b, surface, s0, ds, steps, t)
    sa, width, found = _remarch_silhouette(a, b, surface, s0, ds, steps, t, first, fine)
    sb = sa + width
    ha = _height(sa, a, b, surface, t)
    hb = _height(sb, a, b, surface, t)
    side = torch.zeros_like(found, dtype=torch.int8)
    sm = sa
    for _ in range(refine):  # Illinois variant of regula falsi, keeps the bracket [sa, sb]
        sm = sa - ha * (sb - sa) / (hb - ha).clamp(min=1e-12)
        hm = _height(sm, a, b, surface, t)
        left = hm < 0
        sa, sb = torch.where(left, sm, sa), torch.where(left, sb, sm)
        ha_new, hb_new = torch.where(left, hm, ha), torch.where(left, hb, hm)
        ha = torch.where(~left & (side == -1), ha_new * 0.5, ha_new)
        hb = torch.where(left & (side == 1), hb_new * 0.5, hb_new)
        side = torch.where(left, torch.ones_like(side), -torch.ones_like(side))
    return torch.where(found, sm, s1), found


def _slab(depth: Tensor, alpha: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-image depth range (near, far) of the surface where alpha > 0.5 (everywhere when alpha is None)."""
    flat = depth.flatten(1)
    if alpha is None:
        return flat.amin(1), flat.amax(1)
    fg = alpha.flatten(1) > 0.5
    big = torch.finfo(depth.dtype).max
    near = torch.where(fg, flat, torch.full_like(flat, big)).amin(1)
    far = torch.where(fg, flat, torch.full_like(flat, -big)).amax(1)
    empty = ~fg.any(1)
    return torch.where(empty, flat.amin(1), near), torch.where(empty, flat.amax(1), far)


def render(depth: Tensor, albedo: Tensor, light: Light | Tensor, view: View | Tensor, labels: Tensor | None = None,
           background: Tensor | None = None, alpha: Tensor | None = None, extra: Tensor | None = None,
           fov_deg: float = 10.0, supersample: int = 2, steps: int | None = None, step_px: float = 1.0,
           refine: int = 4) -> dict[str, Tensor]:
    """Render canonical depth/albedo/labels under a light and a view; returns image, labels, depth, mask, shading.

    depth [B,1,H,W], albedo [B,3,H,W], labels [B,H,W] int64 (optional), light a ``Light`` or [B,5]/[B,8] vector,
    view a ``View`` or [B,3]/[B,6] vector, background [B,3,H,W] or [3] or None (black), alpha [B,1,H,W] canonical
    opacity (None: the whole depth map is surface, as in unsup3d), extra [B,C,H,W] channels warped bilinearly.
    Output resolution = input resolution; ``supersample`` renders k times larger and averages down.
    Returned keys: image [B,3,H,W], labels [B,H,W] (0 where no surface), depth [B,1,H,W] (view depth, ``far`` behind
    the surface where nothing is hit), mask [B,1,H,W] soft, mask_hard [B,1,H,W] bool, shading [B,1,H,W],
    canonical_shading [B,1,H,W], grid [B,kH,kW,2] (canonical coordinates of the hits) and extra [B,C,H,W] if given.
    """
    light, view = _as_light(light), _as_view(view)
    bsz, _, h, w = depth.shape
    t = math.tan(math.radians(fov_deg) / 2)
    hs, ws = h * supersample, w * supersample
    shading = shade(depth_to_normals(depth, fov_deg), light)

    near, far_surface = _slab(depth.detach(), None if alpha is None else alpha.detach())
    margin = 1e-3 + 0.01 * (far_surface - near)
    z0, z1, far = near - margin, far_surface + margin, far_surface + 2 * margin
    far_map = far.view(-1, 1, 1, 1)
    # where alpha = 0 the surface is pushed to `far`, behind the marched slab, so rays pass through
    surface = depth if alpha is None else depth * alpha + far_map * (1 - alpha)

    a, b = _ray_lines(view, hs, ws, fov_deg, depth)
    with torch.no_grad():
        s_root, hit = _find_root(a.detach(), b.detach(), surface.detach(), z0, z1, t, steps, step_px,
                                 refine)
        # slope h'(s) at the root by a small central difference (exact inside a bilinear cell; cheaper than autograd)
        eps = (1e-7 if depth.dtype == torch.float64 else 1e-4) * (z1 - z0).view(-1, 1, 1)
        slope = (_height(s_root + eps, a, b, surface, t) - _height(s_root - eps, a, b, surface, t)) / (2 * eps)
        slope = torch.maximum(slope, 1e-2 * a[..., 2])
    s_star = s_root - _height(s_root, a, b, surface, t) / slope  # value = root, grad = implicit
    s_star = torch.where(hit, s_star, s_root.detach())
    grid = _project(s_star[..., None] * a + b, t)

    # the mask is the hit itself (walls at silhouettes are opaque) times "inside the canonical image"
    chans = [albedo, shading, torch.ones_like(depth)] + ([extra] if extra is not None else [])
    sampled = F.grid_sample(torch.cat(chans, 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    hitf = hit[:, None].to(depth.dtype)
    mask = (sampled[:, 4:5] * hitf).clamp(0, 1)
    colour = light.colour if light.colour is not None else torch.ones(bsz, 3, dtype=depth.dtype, device=depth.device)
    fg = sampled[:, 0:3] * sampled[:, 3:4] * colour[:, :, None, None]
    out = {"mask": mask, "shading": sampled[:, 3:4] * hitf, "depth": s_star[:, None] * hitf, "hits": hitf, "fg": fg}
    if extra is not None:
        out["extra"] = sampled[:, 5:] * hitf
    if supersample > 1:
        out = {k: F.avg_pool2d(v, supersample) for k, v in out.items()}
    mask = out["mask"]
    if background is None:
        bg = torch.zeros(bsz, 3, h, w, dtype=depth.dtype, device=depth.device)
    else:
        bg = background.view(1, 3, 1, 1).expand(bsz, 3, h, w) if background.dim() == 1 else background
    image = (out.pop("fg") * mask + bg * (1 - mask)).clamp(0, 1)
    hard = mask >= 0.5
    out.update(image=image, mask_hard=hard, canonical_shading=shading, grid=grid)
    hits = out.pop("hits")
    out["depth"] = torch.where(hits > 0, out["depth"] / hits.clamp(min=1e-6), far_map.expand_as(hits))
    if labels is not None:
        src = labels[:, None].to(depth.dtype)
        if alpha is not None:  # wall hits land up to a pixel outside the silhouette: give them the part beside
            for _ in range(2):
                src = torch.where(src == 0, F.max_pool2d(src, 3, 1, 1), src)
        lab = F.grid_sample(src, grid.detach(), mode="nearest", padding_mode="zeros",
                            align_corners=False).round().long()[:, 0]
        lab = lab * hit
        if supersample > 1:
            n_cls = int(labels.max().item()) + 1 if labels.numel() else 1
            votes = F.one_hot(lab, max(n_cls, 1)).permute(0, 3, 1, 2).to(depth.dtype)
            votes = F.avg_pool2d(votes, supersample)
            votes[:, 0] = 0  # foreground decided by the mask; vote among parts
            lab = votes.argmax(1)
        out["labels"] = lab * hard[:, 0]
    else:
        out["labels"] = torch.zeros(bsz, h, w, dtype=torch.long, device=depth.device)
    return out
