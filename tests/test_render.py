"""Tests of the differentiable renderer: analytic shading, gradients, holes, occlusion."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.render import Light, View, depth_to_normals, render, rotation_matrix, shade


def _grid(h: int, dtype=torch.float32):
    u = (torch.arange(h, dtype=dtype) * 2 + 1) / h - 1
    return torch.meshgrid(u, u, indexing="ij")  # y, x


def _head(h: int = 48, dtype=torch.float32):
    """A smooth ellipsoid head with a nose bump, its opacity and labels (skin 1, nose 6)."""
    y, x = _grid(h, dtype)
    r2 = (x / 0.6) ** 2 + (y / 0.75) ** 2
    t = math.tan(math.radians(5))
    nose = 0.02 * torch.exp(-((x / 0.1) ** 2 + ((y - 0.05) / 0.25) ** 2))
    depth = 1.0 - 0.6 * t * torch.sqrt((1 - r2).clamp(min=0) + 1e-4) - nose
    alpha = ((1 - r2) * h / 4).clamp(0, 1)
    labels = (alpha > 0.5).long() + 5 * (nose > 0.008).long()
    albedo = torch.stack([0.6 + 0.2 * x, 0.5 + 0.2 * y, 0.4 + 0 * x])
    return depth[None, None], albedo[None], alpha[None, None], labels[None]


def _background_reachable(bg: torch.Tensor) -> torch.Tensor:
    """Background pixels connected to the image border (flood fill by repeated dilation)."""
    reach = torch.zeros_like(bg)
    reach[..., 0, :], reach[..., -1, :], reach[..., :, 0], reach[..., :, -1] = (
        bg[..., 0, :], bg[..., -1, :], bg[..., :, 0], bg[..., :, -1])
    while True:
        grown = (F.max_pool2d(reach.float()[None, None], 3, 1, 1)[0, 0] > 0) & bg
        if torch.equal(grown, reach):
            return reach
        reach = grown


def test_flat_plane_matches_analytic_lambertian():
    depth = torch.ones(2, 1, 16, 16)
    albedo = torch.full((2, 3, 16, 16), 0.5)
    direction = F.normalize(torch.tensor([[0.3, -0.2, -1.0], [0.0, 0.0, -1.0]]), dim=1)
    light = Light(torch.tensor([[0.2], [0.1]]), torch.tensor([[0.6], [0.7]]), direction)
    out = render(depth, albedo, light, torch.zeros(2, 6), supersample=1)
    expected = torch.tensor([0.2 + 0.6 / math.sqrt(1 + 0.09 + 0.04), 0.1 + 0.7])
    normals = depth_to_normals(depth)
    assert torch.allclose(normals, torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand_as(normals), atol=1e-6)
    assert torch.allclose(out["shading"], expected.view(2, 1, 1, 1).expand(2, 1, 16, 16), atol=1e-5)
    assert torch.allclose(out["image"], 0.5 * expected.view(2, 1, 1, 1).expand(2, 3, 16, 16), atol=1e-5)
    assert torch.allclose(out["mask"], torch.ones(2, 1, 16, 16), atol=1e-5)
    assert torch.allclose(out["depth"], torch.ones(2, 1, 16, 16), atol=1e-4)


def test_shade_clamps_back_facing_light_to_ambient():
    normals = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    light = torch.tensor([[0.3, 0.5, 0.0, 0.0, 1.0]])  # light behind the surface
    assert torch.allclose(shade(normals, light), torch.full((1, 1, 4, 4), 0.3))


def test_rotation_matrix_is_orthonormal_and_yaw_moves_nose_left():
    rot = rotation_matrix(torch.tensor([[0.4, -0.3, 0.2]]))
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3)[None], atol=1e-6)
    nose = rotation_matrix(torch.tensor([[0.5, 0.0, 0.0]]))[0] @ torch.tensor([0.0, 0.0, -0.1])
    assert nose[0] < 0


def test_vectors_and_dataclasses_agree():
    depth, albedo, alpha, labels = _head(24)
    light_vec = torch.tensor([[0.4, 0.6, 0.3, -0.4, -1.0, 1.0, 0.9, 0.8]])
    view_vec = torch.tensor([[0.3, -0.2, 0.1, 0.002, 0.001, 0.01]])
    a = render(depth, albedo, light_vec, view_vec, labels=labels, alpha=alpha)
    b = render(depth, albedo, Light.from_vector(light_vec), View.from_vector(view_vec), labels=labels, alpha=alpha)
    for key in ("image", "labels", "depth", "mask", "shading"):
        assert torch.equal(a[key], b[key])
    assert a["image"].shape == (1, 3, 24, 24) and a["labels"].dtype == torch.long
    assert a["mask"].shape == (1, 1, 24, 24) and a["shading"].shape == (1, 1, 24, 24)


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    dt = torch.float64
    h = 12
    y, x = _grid(h, dt)
    depth = (1.0 - 0.03 * torch.exp(-(x ** 2 + y ** 2) / 0.3))[None, None]
    albedo = torch.stack([0.5 + 0.3 * torch.sin(3 * x), 0.5 + 0.3 * torch.cos(3 * y), 0.4 + 0.2 * x * y])[None]
    light = torch.tensor([[0.4, 0.6, 0.3, -0.2, -1.0]], dtype=dt)
    view = torch.tensor([[0.3, 0.2, 0.1, 0.003, -0.002, 0.01]], dtype=dt)
    background = torch.rand(1, 3, h, h, dtype=dt)
    weights = torch.rand(1, 3, h, h, dtype=dt)
    params = [depth, albedo, light, view]

    def loss(*p):
        out = render(*p, background=background, supersample=1, steps=48, refine=10)
        return (out["image"] * weights).sum()

    checks = [(0, (0, 0, 6, 5)), (0, (0, 0, 3, 7)), (1, (0, 1, 6, 6)), (2, (0, 0)), (2, (0, 2)), (2, (0, 1)),
              (3, (0, 0)), (3, (0, 1)), (3, (0, 3))]
    for which, index in checks:
        leaves = [p.clone().requires_grad_(True) for p in params]
        loss(*leaves).backward()
        analytic = leaves[which].grad[index].item()
        eps = 1e-6
        plus = [p.clone() for p in params]
        plus[which][index] += eps
        minus = [p.clone() for p in params]
        minus[which][index] -= eps
        numeric = (loss(*plus) - loss(*minus)).item() / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6), (which, index, analytic, numeric)


@pytest.mark.parametrize("yaw,pitch", [(60, 0), (-60, 0), (0, 30), (0, -30), (45, 25)])
def test_large_views_have_no_holes(yaw, pitch):
    depth, albedo, alpha, labels = _head(48)
    view = torch.tensor([[math.radians(yaw), math.radians(pitch), 0.0, 0, 0, 0]])
    out = render(depth, albedo, torch.tensor([[0.5, 0.5, 0.0, 0.0, -1.0]]), view, labels=labels, alpha=alpha)
    fg = out["mask_hard"][0, 0]
    assert fg.sum() > 200
    holes = ~fg & ~_background_reachable(~fg)
    assert not holes.any(), f"{int(holes.sum())} hole pixels"
    assert ((out["labels"][0] > 0) == fg).all()  # every foreground pixel has a part label
    assert torch.isfinite(out["image"]).all()


def test_nose_occludes_the_far_cheek():
    h = 48
    y, x = _grid(h)
    depth = (1.0 - 0.03 * torch.exp(-((x / 0.08) ** 2 + (y / 0.3) ** 2)))[None, None]  # a tall narrow ridge
    labels = (1 + 5 * (depth[0, 0] < 0.99)).long()[None]
    albedo = torch.full((1, 3, h, h), 0.5)
    yaw = math.radians(50)
    out = render(depth, albedo, torch.tensor([[0.5, 0.5, 0, 0, -1.0]]), torch.tensor([[yaw, 0.0, 0.0]]),
                 labels=labels, supersample=1)
    nose = out["labels"][0] == 6
    assert nose.sum() > 10
    # depth of the plane z = 1 (canonical) along each output ray: the nose pixels must be nearer than it
    rot = rotation_matrix(torch.tensor([[yaw, 0.0, 0.0]]))[0]
    normal = rot @ torch.tensor([0.0, 0.0, 1.0])
    t = math.tan(math.radians(5))
    yv, xv = _grid(h)
    dirs = torch.stack([xv * t, yv * t, torch.ones_like(xv)], -1)
    s_plane = (normal @ torch.tensor([0.0, 0.0, 1.0])) / (dirs @ normal)
    assert (out["depth"][0, 0][nose] < s_plane[nose] - 0.005).all()
    assert (out["depth"][0, 0] <= s_plane + 1e-4).all()
    # canonical pixels right behind the ridge (on the side turned away) are never seen
    hit = out["grid"][0][out["mask_hard"][0, 0]]
    cols = ((hit[:, 0] + 1) * h / 2).floor().long()
    rows = ((hit[:, 1] + 1) * h / 2).floor().long()
    seen = torch.zeros(h, h, dtype=torch.bool)
    seen[rows.clamp(0, h - 1), cols.clamp(0, h - 1)] = True
    behind = (x < -0.15) & (x > -0.25) & (y.abs() < 0.2)  # positive yaw turns the -x side away, behind the ridge
    assert not seen[behind].any()
    assert seen[(x > 0.15) & (x < 0.25) & (y.abs() < 0.2)].float().mean() > 0.5  # foreshortened, not hidden


def test_translation_moves_the_image():
    depth, albedo, alpha, labels = _head(32)
    light = torch.tensor([[0.5, 0.5, 0.0, 0.0, -1.0]])
    a = render(depth, albedo, light, torch.zeros(1, 6), labels=labels, alpha=alpha)
    b = render(depth, albedo, light, torch.tensor([[0.0, 0, 0, 0.01, 0, 0]]), labels=labels, alpha=alpha)
    cx = lambda m: (m[0, 0] * torch.arange(32.0)).sum() / m[0, 0].sum()  # noqa: E731
    shift = (cx(b["mask"]) - cx(a["mask"])).item()
    assert shift == pytest.approx(0.01 / math.tan(math.radians(5)) * 16, abs=0.5)


def test_adaptive_supersampling_matches_full_supersampling():
    depth, albedo, alpha, labels = _head(32)
    light = torch.tensor([[0.5, 0.5, 0.3, -0.3, -1.0]])
    view = torch.tensor([[0.5, 0.2, 0.05, 0, 0, 0]])
    kw = dict(labels=labels, alpha=alpha, background=torch.tensor([0.2, 0.4, 0.8]), supersample=2, steps=40)
    full = render(depth, albedo, light, view, adaptive=False, **kw)
    fast = render(depth, albedo, light, view, adaptive=True, **kw)
    one = render(depth, albedo, light, view, **{**kw, "supersample": 1})
    err_fast = (full["image"] - fast["image"]).abs().mean()
    err_one = (full["image"] - one["image"]).abs().mean()
    assert err_fast < 0.5 * err_one and err_fast < 5e-3
    assert (full["labels"] != fast["labels"]).float().mean() < 0.01
    soft = (fast["mask"] > 0.05) & (fast["mask"] < 0.95)
    assert soft.any()  # antialiased silhouette


def test_march_finds_the_first_crossing_of_the_steps():
    from helpers.render import _height, _march, _pixel_uv, _ray_lines
    depth, _, _, _ = _head(32)
    t = math.tan(math.radians(5))
    a, b = _ray_lines(View(torch.tensor([[0.6, 0.25, 0.1]])), _pixel_uv(32, 32, depth), 10.0)
    s0, s1 = (0.9 - b[..., 2]) / a[..., 2], (1.05 - b[..., 2]) / a[..., 2]
    steps = 40
    ds = (s1 - s0) / steps
    first = _march(a, b, depth, s0, ds, steps, t)
    neg = torch.stack([_height(s0 + k * ds, a, b, depth, t) < 0 for k in range(steps + 1)])
    cross = neg[:-1] & ~neg[1:]
    expected = torch.where(cross.any(0), cross.to(torch.uint8).argmax(0) + 1, 0)
    assert (first > 0).float().mean() > 0.3  # the head is seen
    assert (first == expected).float().mean() > 0.995  # equal up to rounding ties at h = 0


def test_fill_see_through_fills_isolated_holes_but_not_concave_corners():
    from helpers.render import _fill_see_through
    mask = torch.ones(1, 1, 7, 7)
    mask[0, 0, 3, 3] = 0  # an isolated one-pixel hole
    mask[0, 0, 0:3, 5:7] = 0  # a concave corner region touching the border
    labels = torch.full((1, 7, 7), 2, dtype=torch.long)
    labels[0, 3, 3] = 0
    image = torch.ones(1, 3, 7, 7) * 0.5
    image[0, :, 3, 3] = 0.0
    out, filled = _fill_see_through({"mask": mask.clone(), "fg": image.clone(), "labels": labels.clone()})
    assert filled.tolist() == [1]
    assert out["mask"][0, 0, 3, 3] == 1 and out["labels"][0, 3, 3] == 2
    assert torch.allclose(out["fg"][0, :, 3, 3], torch.full((3,), 0.5))
    assert torch.equal(out["mask"][0, 0, 0:3, 5:7], torch.zeros(3, 2))  # the corner stays background
