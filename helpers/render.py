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
  towards the image left, positive pitch moves it towards the image bottom), then projects with the same camera.
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
field of view is narrow (``steps`` fixed by the caller, or chosen from the view so that a step moves about
``step_px`` canonical pixels). Where the canonical opacity ``alpha`` is below 1 (SynthFaces' background) the surface
is pushed behind the slab so rays pass through. Seen from the side, the height field's silhouette continues
backwards as an opaque wall (the unseen back of the object; unsup3d likewise treats the whole depth map as surface);
missed rays next to hits are marched again, near their neighbours' crossing, with 3x finer steps, so that steep
silhouette corners are not skipped. Every hit is opaque (mask = hit, faded only where q leaves the canonical image).
Antialiasing is adaptive supersampling: one ray per pixel centre, then the pixels whose 3x3 neighbourhood changes
part or silhouette get k x k sub-pixel rays (``supersample`` = k) whose mean replaces them (labels: majority among
the parts of the covered sub-samples); ``adaptive=False`` supersamples every pixel. Soft per-ray coverage (alpha at
the hit) was tried first and streaked where side views see the silhouette wall.
Rays never depend on other images of the batch when ``steps`` is given (SynthFaces relies on it for determinism).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
OBJECT_CENTRE = (0.0, 0.0, 1.0)
CHUNK_RAYS = 1 << 18  # rays per internal batch chunk of render()


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


def _ray_lines(view: View, uv: Tensor, fov_deg: float) -> tuple[Tensor, Tensor]:
    """Rays through image points uv [..., 2] (normalised) in the canonical frame, Q(s) = s A + b: A [B, ..., 3]
    (uv with a leading batch dimension, or broadcast over the batch) and b [B, 1.., 3]."""
    t = math.tan(math.radians(fov_deg) / 2)
    dirs = torch.cat([uv * t, torch.ones_like(uv[..., :1])], -1)
    rot = rotation_matrix(view.rotation.to(uv.dtype))
    centre = torch.tensor(OBJECT_CENTRE, dtype=uv.dtype, device=uv.device)
    trans = view.translation.to(uv.dtype) if view.translation is not None else torch.zeros_like(view.rotation)
    extra_dims = dirs.dim() - 1 if dirs.dim() == 3 else dirs.dim() - 2
    rot_b = rot.view(rot.shape[0], *([1] * extra_dims), 3, 3)
    a = (rot_b.transpose(-1, -2) @ dirs[..., None])[..., 0]  # R^T dir
    b = torch.einsum("bji,bj->bi", rot, -centre - trans) + centre
    return a, b.view(b.shape[0], *([1] * extra_dims), 3)


def _pixel_uv(h: int, w: int, like: Tensor) -> Tensor:
    """Pixel-centre coordinates [H,W,2] (u right, v down) in (-1, 1)."""
    u, v = pixel_coords(h, w, like.device, like.dtype)
    return torch.stack(torch.broadcast_tensors(u.view(1, w), v.view(h, 1)), -1)


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
    scale = torch.tensor([1 / t, 1 / t, 1.0, 1.0], dtype=a.dtype, device=a.device)
    # (x / t, y / t, z, z) per ray: the projection (x / z, y / z) is then a division of two contiguous pairs
    a4, b4 = a[..., (0, 1, 2, 2)] * scale, b[..., (0, 1, 2, 2)] * scale
    start, step = s0[..., None] * a4 + b4, ds[..., None] * a4
    num_start, den_start = start[..., :2].contiguous(), start[..., 2:].contiguous()
    num_step, den_step = step[..., :2].contiguous(), step[..., 2:].contiguous()
    first = torch.zeros_like(s0, dtype=torch.long)
    num, den, grid = torch.empty_like(num_start), torch.empty_like(num_start), torch.empty_like(num_start)
    neg_next = None
    for k in range(steps, -1, -1):  # far to near: the last crossing written is the nearest one
        torch.add(num_start, num_step, alpha=k, out=num)
        torch.add(den_start, den_step, alpha=k, out=den)
        torch.div(num, den, out=grid)
        d = F.grid_sample(surface, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
        neg = den[..., 0] < d  # h < 0: in front of the surface
        if neg_next is not None:
            first.masked_fill_(neg > neg_next, k + 1)  # in front at k, behind at k + 1
        neg_next = neg
    return first


def _march_selected(a: Tensor, b: Tensor, surface: Tensor, s0: Tensor, ds: Tensor, steps: int, t: float,
                    select: Tensor) -> Tensor:
    """``_march`` of the rays where `select` [B,H,W] is True only (packed per image); 0 for the others."""
    flat = select.flatten(1)
    counts = flat.sum(1, keepdim=True)
    m = int(counts.max())
    first = torch.zeros_like(flat, dtype=torch.long)
    if m == 0:
        return first.view_as(select)
    order = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)[:, :m]  # selected rays first, per image
    valid = torch.arange(m, device=a.device)[None] < counts
    a_sel = a.flatten(1, 2).gather(1, order[..., None].expand(-1, -1, 3))[:, None]
    s0_sel = s0.flatten(1).gather(1, order)[:, None]
    ds_sel = ds.flatten(1).gather(1, order)[:, None]
    found = _march(a_sel, b, surface, s0_sel, ds_sel, steps, t)[:, 0] * valid
    first.scatter_(1, order, found)  # unselected positions in `order` receive 0, as they had
    return first.view_as(select)


def _remarch_silhouette(a: Tensor, b: Tensor, surface: Tensor, s0: Tensor, ds: Tensor, steps: int, t: float,
                        first: Tensor, fine: int) -> tuple[Tensor, Tensor, Tensor]:
    """March the missed rays next to a hit again with `fine` times smaller steps, within a few steps of their
    neighbours' crossings (a coarse step can skip the thin corner of a steep silhouette, which shows as jagged
    edges). Returns bracket start, bracket width and hit flags."""
    found = first > 0
    band = ~found & (F.max_pool2d(found[:, None].to(a.dtype), 3, 1, 1)[:, 0] > 0)
    big = steps + 9
    lo = -F.max_pool2d(-torch.where(found, first, big)[:, None].to(a.dtype), 3, 1, 1)[:, 0].long()
    start = (lo - 3).clamp(min=0)
    span = 8  # coarse steps searched again (fixed, so that results do not depend on the other images of the batch)
    sub = ds / fine
    fine_first = _march_selected(a, b, surface, s0 + ds * start, sub, span * fine, t, band)
    fine_hit = fine_first > 0
    width = torch.where(fine_hit, sub, ds)
    sa = torch.where(fine_hit, s0 + ds * start + sub * (fine_first - 1).clamp(min=0), s0 + ds * (first - 1).clamp(min=0))
    hit = found | fine_hit
    # A miss that most of its 8 neighbours hit is almost always a crossing outside the window above (a thin corner
    # at a steep silhouette): march those few rays over the whole slab with the fine step.
    neighbours_hit = F.avg_pool2d(hit[:, None].to(a.dtype), 3, 1, 1, count_include_pad=False)[:, 0] * 9
    enclosed = ~hit & (neighbours_hit >= 5)
    whole_first = _march_selected(a, b, surface, s0, sub, steps * fine, t, enclosed)
    whole_hit = whole_first > 0
    sa = torch.where(whole_hit, s0 + sub * (whole_first - 1).clamp(min=0), sa)
    width = torch.where(whole_hit, sub, width)
    return sa, width, hit | whole_hit


def _find_root(a: Tensor, b: Tensor, surface: Tensor, z0: Tensor, z1: Tensor, t: float,
               steps: int | None, step_px: float, refine: int, spatial: bool, fine: int = 3) -> tuple[Tensor, Tensor]:
    """First crossing of each ray with the height field, without gradients: (s root [B,H,W], hit [B,H,W] bool)."""
    az, bz = a[..., 2], b[..., 2]
    s0 = (z0[:, None, None] - bz) / az
    s1 = (z1[:, None, None] - bz) / az
    if steps is None:
        steps = _auto_steps(a, b, s0, s1, t, surface.shape[-1], step_px)
    ds = (s1 - s0) / steps
    first = _march(a, b, surface, s0, ds, steps, t)
    if spatial:  # rays laid out as an image: re-march the misses next to hits
        sa, width, found = _remarch_silhouette(a, b, surface, s0, ds, steps, t, first, fine)
    else:
        found, width = first > 0, ds
        sa = s0 + ds * (first - 1).clamp(min=0)
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
           refine: int = 4, adaptive: bool = True) -> dict[str, Tensor]:
    """Render canonical depth/albedo/labels under a light and a view; returns image, labels, depth, mask, shading.

    depth [B,1,H,W], albedo [B,3,H,W], labels [B,H,W] int64 (optional), light a ``Light`` or [B,5]/[B,8] vector,
    view a ``View`` or [B,3]/[B,6] vector, background [B,3,H,W] or [3] or None (black), alpha [B,1,H,W] canonical
    opacity (None: the whole depth map is surface, as in unsup3d), extra [B,C,H,W] channels warped bilinearly.
    Output resolution = input resolution; ``supersample`` = k x k sub-pixel rays on edge pixels (all pixels when
    ``adaptive`` is False); ``steps`` ray-march steps (None: from the view and ``step_px``), ``refine`` root steps.
    Returned keys: image [B,3,H,W], labels [B,H,W] (0 where no surface), depth [B,1,H,W] (view depth; behind the
    slab where nothing is hit), mask [B,1,H,W] soft, mask_hard [B,1,H,W] bool, shading [B,1,H,W],
    canonical_shading [B,1,H,W], filled [B] (see-through pixels filled from their neighbours), grid [B,H,W,2]
    (canonical grid_sample coordinates seen by the pixel-centre rays)
    and extra [B,C,H,W] if given. Differentiable with respect to depth, albedo, light, view, background, extra.
    """
    light, view = _as_light(light), _as_view(view)
    bsz, _, h, w = depth.shape
    chunk = max(1, CHUNK_RAYS // (h * w))
    if bsz > chunk:  # a few images at a time: bounded memory and warm caches, same results
        def part(x, i):
            return x[i:i + chunk] if isinstance(x, Tensor) and x.dim() > 1 else x
        light_v, view_v = light.to_vector(), view.to_vector()
        outs = [render(depth[i:i + chunk], albedo[i:i + chunk], Light.from_vector(light_v[i:i + chunk]),
                       View.from_vector(view_v[i:i + chunk]), part(labels, i), part(background, i), part(alpha, i),
                       part(extra, i), fov_deg, supersample, steps, step_px, refine, adaptive)
                for i in range(0, bsz, chunk)]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    t = math.tan(math.radians(fov_deg) / 2)
    shading = shade(depth_to_normals(depth, fov_deg), light)
    near, far_surface = _slab(depth.detach(), None if alpha is None else alpha.detach())
    margin = 1e-3 + 0.01 * (far_surface - near)
    z0, z1, far = near - margin, far_surface + margin, far_surface + 2 * margin
    far_map = far.view(-1, 1, 1, 1)
    # where alpha = 0 the surface is pushed to `far`, behind the marched slab, so rays pass through
    surface = depth if alpha is None else depth * alpha + far_map * (1 - alpha)
    # the mask is the hit itself (walls at silhouettes are opaque) times "inside the canonical image"
    canon = torch.cat([albedo, shading, torch.ones_like(depth)] + ([extra] if extra is not None else []), 1)
    label_src = None
    if labels is not None:
        label_src = labels[:, None].to(depth.dtype)
        if alpha is not None:  # wall hits land up to a pixel outside the silhouette: give them the part beside
            for _ in range(2):
                label_src = torch.where(label_src == 0, F.max_pool2d(label_src, 3, 1, 1), label_src)
    colour = light.colour if light.colour is not None else torch.ones(bsz, 3, dtype=depth.dtype, device=depth.device)
    if steps is None:  # from the pixel-centre rays, shared by the sub-pixel rays
        with torch.no_grad():
            a0, b0 = _ray_lines(view, _pixel_uv(h, w, depth), fov_deg)
            s0 = (z0[:, None, None] - b0[..., 2]) / a0[..., 2]
            s1 = (z1[:, None, None] - b0[..., 2]) / a0[..., 2]
            steps = _auto_steps(a0, b0, s0, s1, t, w, step_px)

    def trace(uv: Tensor, spatial: bool) -> dict[str, Tensor]:
        """Per-ray fields [B,C,...] for rays through uv ([H,W,2] or [B,...,2])."""
        a, b = _ray_lines(view, uv, fov_deg)
        with torch.no_grad():
            s_root, hit = _find_root(a.detach(), b.detach(), surface.detach(), z0, z1, t, steps, step_px, refine,
                                     spatial)
            # slope h'(s) at the root by a small central difference (exact inside a bilinear cell)
            eps = (1e-7 if depth.dtype == torch.float64 else 1e-4) * (z1 - z0).view(-1, *([1] * (a.dim() - 2)))
            slope = (_height(s_root + eps, a, b, surface, t) - _height(s_root - eps, a, b, surface, t)) / (2 * eps)
            slope = torch.maximum(slope, 1e-2 * a[..., 2])
        s_star = s_root - _height(s_root, a, b, surface, t) / slope  # value = root, grad = implicit
        s_star = torch.where(hit, s_star, s_root.detach())
        grid = _project(s_star[..., None] * a + b, t)
        sampled = F.grid_sample(canon, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        hitf = hit[:, None].to(depth.dtype)
        fields = {"fg": sampled[:, 0:3] * sampled[:, 3:4] * colour[:, :, None, None], "shading": sampled[:, 3:4] * hitf,
                  "mask": (sampled[:, 4:5] * hitf).clamp(0, 1), "depth": s_star[:, None] * hitf, "hits": hitf,
                  "grid": grid}
        if extra is not None:
            fields["extra"] = sampled[:, 5:] * hitf
        if label_src is not None:
            lab = F.grid_sample(label_src, grid.detach(), mode="nearest", padding_mode="border", align_corners=False)
            fields["labels"] = lab.round().long()[:, 0] * hit
        return fields

    out = trace(_pixel_uv(h, w, depth), spatial=True)  # one ray through each pixel centre
    grid = out.pop("grid")
    if supersample > 1:
        out = _antialias(out, trace, h, w, supersample, adaptive, depth)
    out, filled = _fill_see_through(out)
    mask = out["mask"]
    if background is None:
        bg = torch.zeros(bsz, 3, h, w, dtype=depth.dtype, device=depth.device)
    else:
        bg = background.view(1, 3, 1, 1).expand(bsz, 3, h, w) if background.dim() == 1 else background
    hits = out.pop("hits")
    out["image"] = (out.pop("fg") * mask + bg * (1 - mask)).clamp(0, 1)
    out["depth"] = torch.where(hits > 0, out["depth"] / hits.clamp(min=1e-6), far_map.expand_as(hits))
    hard = mask >= 0.5
    out.update(mask_hard=hard, canonical_shading=shading, grid=grid, filled=filled)
    lab = out.get("labels", torch.zeros(bsz, h, w, dtype=torch.long, device=depth.device))
    out["labels"] = lab * hard[:, 0]
    return out


def _fill_see_through(out: dict[str, Tensor], rounds: int = 2) -> tuple[dict[str, Tensor], Tensor]:
    """Fill uncovered pixels that at least 7 of their 8 neighbours cover (holes of one or two pixels; a concave corner
    of a silhouette has at most 6), from those neighbours (labels: majority).

    A height field is a 2.5D surface: at extreme views a single ray can pass between two parts of different depth
    (e.g. beside an ear, in front of the far cheek) where a real head is closed. Filling such isolated see-through
    pixels from their neighbours is the usual remedy of depth-image-based rendering; returns the count per image.
    """
    filled = torch.zeros(out["mask"].shape[0], dtype=torch.long, device=out["mask"].device)
    for _ in range(rounds):
        covered = (out["mask"] >= 0.5).to(out["mask"].dtype)
        neighbours = F.avg_pool2d(covered, 3, 1, 1) * 9 - covered  # zero padding: border pixels have fewer
        hole = (covered == 0) & (neighbours >= 7)
        if not hole.any():
            break
        filled += hole.flatten(1).sum(1)
        weight = neighbours.clamp(min=1)
        result = {}
        for key, value in out.items():
            if key == "labels":
                classes = int(value.max().item()) + 1
                votes = F.avg_pool2d(F.one_hot(value, classes).movedim(-1, 1).to(covered.dtype) * covered, 3, 1, 1)
                result[key] = torch.where(hole[:, 0], votes.argmax(1), value)
            else:
                mean = F.avg_pool2d(value * covered, 3, 1, 1) * 9 / weight
                result[key] = torch.where(hole, mean, value)
        out = result
    return out, filled


def _antialias(out: dict[str, Tensor], trace, h: int, w: int, k: int, adaptive: bool, like: Tensor) -> dict:
    """Replace the pixels on edges (part or silhouette changes within 3x3; every pixel if not adaptive) by the mean
    of k x k sub-pixel rays (labels: majority among the parts of the covered sub-samples)."""
    ids = torch.where(out["hits"][:, 0] > 0, out.get("labels", torch.zeros_like(out["hits"][:, 0].long())) + 1, 0)
    idf = ids[:, None].to(like.dtype)
    edge = F.max_pool2d(idf, 3, 1, 1) != -F.max_pool2d(-idf, 3, 1, 1)
    edge = edge[:, 0] if adaptive else torch.ones_like(edge[:, 0])
    flat = edge.flatten(1)
    counts = flat.sum(1, keepdim=True)
    m = int(counts.max())
    if m == 0:
        return out
    bsz = flat.shape[0]
    order = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)[:, :m]  # edge pixels first, per image
    valid = torch.arange(m, device=like.device)[None] < counts
    centres = _pixel_uv(h, w, like).view(1, h * w, 2).expand(bsz, -1, -1).gather(1, order[..., None].expand(-1, -1, 2))
    off = (torch.arange(k, device=like.device, dtype=like.dtype) + 0.5) / k - 0.5
    offsets = torch.stack(torch.broadcast_tensors(off.view(1, k) * 2 / w, off.view(k, 1) * 2 / h), -1).view(k * k, 2)
    sub = trace(centres[:, :, None, :] + offsets, spatial=False)  # fields [B,C,M,k*k]
    sub.pop("grid")
    result = {}
    for key, value in out.items():
        if key == "labels":
            continue
        mean = sub[key].mean(-1)  # [B,C,M]
        full = value.flatten(2)
        index = order[:, None].expand(-1, full.shape[1], -1)
        mean = torch.where(valid[:, None], mean, full.gather(2, index))
        result[key] = full.scatter(2, index, mean).view_as(value)
    if "labels" in out:
        n_cls = int(max(out["labels"].max().item(), sub["labels"].max().item())) + 1
        votes = F.one_hot(sub["labels"], n_cls).sum(-2)  # [B,M,classes]
        votes[..., 0] = 0  # foreground decided by the mask; vote among parts
        voted = torch.where(valid, votes.argmax(-1), out["labels"].flatten(1).gather(1, order))
        result["labels"] = out["labels"].flatten(1).scatter(1, order, voted).view_as(out["labels"])
    return result
