import math

import pytest
import torch

from helpers import render
from helpers.data.synthfaces import SynthFaces
from helpers.models import features, semantics, stylegan, unsup3d
from helpers.train import train


def small_config(**changes):
    return unsup3d.Unsup3dConfig(**{"resolution": 16, "width": 4, "zdim": 8, **changes})


def test_decomposition_shapes_and_ranges():
    torch.manual_seed(0)
    model = unsup3d.Unsup3d(small_config(mutual=0.5))
    image = torch.rand(3, 3, 16, 16)
    parts = model.decompose(image)
    assert parts["depth"].shape == (3, 1, 16, 16) and parts["albedo"].shape == (3, 3, 16, 16)
    assert parts["light"].shape == (3, 8) and parts["view"].shape == (3, 6)
    assert parts["depth"].min() >= 0.9 and parts["depth"].max() <= 1.1
    border = parts["depth"].detach()[..., 0, :]
    assert torch.allclose(border, torch.full_like(border, 0.7 * 1.1 + 0.3 * 0.9))  # unsup3d's border
    assert parts["albedo"].min() >= 0 and parts["albedo"].max() <= 1
    assert parts["light"][:, :6].min() >= 0 and parts["light"][:, :6].max() <= 1
    assert parts["view"][:, :3].abs().max() <= math.radians(60) + 1e-6
    assert torch.all(parts["view"][:, 5] == 0)  # z translation range 0, as unsup3d's faces
    assert model.semantics(parts).shape == (3, len(semantics.SEMANTIC_NAMES))
    assert model.confidence(image).shape == (3, 2, 16, 16)
    assert model.confidence(image, image.flip(0)).shape == (3, 2, 16, 16)
    with pytest.raises(ValueError, match="mutual"):
        unsup3d.Unsup3d(small_config()).confidence(image, image)


def test_decompose_names_the_expected_image_size():
    model = unsup3d.Unsup3d(small_config())
    with pytest.raises(ValueError, match=r"\[B, 3, 16, 16\]"):
        model.decompose(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="resolution"):
        model.decompose(torch.rand(2, 1, 16, 16))


def test_canonical_image_is_albedo_times_coloured_lambert_shading():
    depth = torch.ones(1, 1, 8, 8)  # a frontal plane: n = (0, 0, -1)
    albedo = torch.full((1, 3, 8, 8), 0.5)
    light = torch.tensor([[0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.0, 0.0]])  # frontal light: n . l = 1
    image = unsup3d.canonical_image(depth, albedo, light)
    expected = 0.5 * (torch.tensor([0.2, 0.3, 0.4]) + 0.5)
    assert torch.allclose(image[0, :, 4, 4], expected, atol=1e-5)


def test_reconstruct_at_the_identity_view_returns_the_canonical_image():
    torch.manual_seed(1)
    depth = 1 + 0.02 * torch.randn(2, 1, 16, 16)
    albedo = torch.rand(2, 3, 16, 16)
    light = torch.tensor([[0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.2, -0.1]]).repeat(2, 1)
    out = unsup3d.reconstruct(depth, albedo, light, torch.zeros(2, 6))
    canon = unsup3d.canonical_image(depth, albedo, light)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert torch.allclose(out["image"][inner], canon[inner], atol=1e-3)
    assert torch.allclose(out["depth"][inner], depth[inner], atol=1e-3)
    assert out["mask"][inner].min() == 1


def test_photometric_loss_known_value_and_mask():
    image, target = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    sigma = torch.full((1, 1, 2, 2), 2.0)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    value = unsup3d.photometric_loss(image, target, mask, sigma)
    assert float(value) == pytest.approx(0.5 * math.sqrt(2) / 2 + math.log(2))


def test_symmetric_loss_adds_the_flipped_reconstruction_with_its_weight():
    torch.manual_seed(2)
    cfg = small_config(lam_flip=0.25)
    half = 1 + 0.02 * torch.randn(2, 1, 16, 8)
    depth = torch.cat([half, half.flip(3)], 3)  # symmetric maps: the flipped reconstruction is the same image
    albedo = torch.rand(2, 3, 16, 8)
    albedo = torch.cat([albedo, albedo.flip(3)], 3)
    light, view = torch.tensor([[0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.0, -0.1]]).repeat(2, 1), torch.zeros(2, 6)
    image, sigma = torch.rand(2, 3, 16, 16), 0.5 + torch.rand(2, 2, 16, 16)
    total, l1, l1_flip = unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma, cfg)
    rec = unsup3d.reconstruct(depth, albedo, light, view)
    assert torch.allclose(l1, unsup3d.photometric_loss(rec["image"], image, rec["mask"], sigma[:, 0:1]))
    assert torch.allclose(l1_flip, unsup3d.photometric_loss(rec["image"], image, rec["mask"], sigma[:, 1:2]))
    assert torch.allclose(total, l1 + 0.25 * l1_flip)
    _, _, l1_flip_asym = unsup3d.symmetric_loss(depth, torch.rand(2, 3, 16, 16), light, view, image, sigma, cfg)
    assert not torch.allclose(l1_flip_asym, l1_flip)


def test_evaluation_mask_erodes_the_foreground():
    square = torch.zeros(1, 1, 6, 6)
    square[..., 1:5, 1:5] = 1
    eroded = unsup3d.evaluation_mask(square, erode=1)
    assert eroded.sum() == 4 and eroded[0, 0, 2:4, 2:4].sum() == 4


def test_true_semantics_of_synthfaces_match_the_light_and_view():
    batch = SynthFaces(resolution=16, length=4, seed=0).annotations(range(4))
    y = semantics.true_semantics(batch["view"], batch["light"])
    assert y.shape == (4, 14)
    assert torch.allclose(y[:, 0], torch.rad2deg(batch["view"][:, 0]))
    assert torch.allclose(y[:, 6:9], batch["light"][:, 0:1] * batch["light"][:, 5:8])
    direction = render.light_direction(y[:, 12], y[:, 13])
    assert torch.allclose(direction, batch["light"][:, 2:5], atol=1e-5)


def test_yaw_direction_recovers_a_linear_yaw_from_its_buffer():
    g = torch.Generator().manual_seed(0)
    state = unsup3d.YawDirection(w_dim=8, capacity=64)
    v_true = torch.randn(8, generator=g)
    for _ in range(4):
        w = torch.randn(16, 8, generator=g)
        state.remember(w, w @ v_true)
    assert not state.ready
    state.update(momentum=0.995)
    assert state.ready
    assert float(state.v @ (v_true / v_true.norm())) > 0.999
    assert float(state.std) > 0


def test_scaled_momentum_forgets_as_much_over_the_run_as_the_papers():
    assert unsup3d.scaled_momentum(60_000) == pytest.approx(0.995)
    assert unsup3d.scaled_momentum(600) == pytest.approx(0.995 ** 100)
    for steps in (20, 600, 30_000):  # the weight left on the first estimate after steps / 10 updates
        assert unsup3d.scaled_momentum(steps) ** (steps / 10) == pytest.approx(0.995 ** 6000)
    with pytest.raises(ValueError, match="steps"):
        unsup3d.scaled_momentum(0)


def test_book_config_scales_the_momentum_to_the_row_and_keeps_the_rows_deviations():
    from helpers.config import PROFILES
    for name, steps in (("cpu", 600), ("paper", 60_000)):
        row = PROFILES[name].family("unsup3d")
        cfg = unsup3d.book_config(row)
        assert row.steps == steps and cfg.augment_momentum == pytest.approx(unsup3d.scaled_momentum(steps))
    row = PROFILES["cpu"].family("unsup3d")
    assert unsup3d.book_config(row).view_noise_deg == row.model["view_noise_deg"]
    assert unsup3d.book_config(row, augment_momentum=0.995).augment_momentum == 0.995  # the paper's form on request


def test_training_runs_every_branch_and_resumes_from_the_cache(tmp_path):
    torch.manual_seed(0)
    G = stylegan.Generator(stylegan.scaled_config(16, 8, 4))
    cfg = small_config(mutual=0.5, yaw_augment=0.25, augment_every=2, view_noise_deg=3.0, view_noise_px=0.5)
    gens = unsup3d.Generations(G)
    spec = unsup3d.training_spec(cfg, gens, steps=6, batch_size=4, seed=0, precision="fp32")
    trained = train(spec, cache_dir=tmp_path, progress=False)
    assert set(trained.nets) == {"unsup3d", "yaw_direction"}
    assert trained.nets["yaw_direction"].filled > 0
    assert all(math.isfinite(v) for v in trained.history["l1"])
    again = train(unsup3d.training_spec(cfg, gens, steps=6, batch_size=4, seed=0, precision="fp32"),
                  cache_dir=tmp_path, progress=False)
    assert again.from_cache
    for a, b in zip(trained.nets["unsup3d"].parameters(), again.nets["unsup3d"].parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="px"):
        unsup3d.training_spec(small_config(resolution=32), gens, steps=1, batch_size=4, seed=0)


def test_generations_accept_filters_and_is_deterministic():
    G = stylegan.Generator(stylegan.scaled_config(16, 8, 4))
    assert unsup3d.Generations(G, resolution=8).sample(2, torch.device("cpu"))[1].shape == (2, 3, 8, 8)
    keep_bright = unsup3d.Generations(G, accept=lambda x: (x.mean(dim=(1, 2, 3)) > 0.5).float())
    torch.manual_seed(3)
    w, images = keep_bright.sample(5, torch.device("cpu"))
    assert w.shape == (5, G.cfg.w_dim) and images.shape == (5, 3, 16, 16)
    assert torch.all(images.mean(dim=(1, 2, 3)) > 0.5)
    torch.manual_seed(3)
    assert torch.equal(keep_bright.sample(5, torch.device("cpu"))[0], w)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="resolution"):
        unsup3d.Unsup3dConfig(resolution=48)
    with pytest.raises(ValueError, match="mutual"):
        unsup3d.Unsup3dConfig(mutual=1.5)
    with pytest.raises(ValueError, match="view_noise_px"):
        unsup3d.Unsup3dConfig(view_noise_px=-1)
    with pytest.raises(ValueError, match="canonical_scale"):
        unsup3d.Unsup3dConfig(canonical_scale=3)
    with pytest.raises(ValueError, match="loss_border"):
        unsup3d.Unsup3dConfig(resolution=32, loss_border=8)


def test_loss_border_leaves_the_edge_pixels_out_of_both_photometric_terms():
    window = unsup3d.central_window(6, 2, torch.zeros(1))
    assert window.shape == (1, 1, 6, 6) and window.sum() == 4 and window[0, 0, 2:4, 2:4].min() == 1
    torch.manual_seed(4)
    cfg = small_config(loss_border=3)
    depth, albedo = 1 + 0.02 * torch.randn(2, 1, 16, 16), torch.rand(2, 3, 16, 16)
    light, view = torch.tensor([[0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.0, -0.1]]).repeat(2, 1), torch.zeros(2, 6)
    image, sigma = torch.rand(2, 3, 16, 16), 0.5 + torch.rand(2, 2, 16, 16)
    total, l1, l1_flip = unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma, cfg)
    rec = unsup3d.reconstruct(depth, albedo, light, view)
    inner = rec["mask"] * unsup3d.central_window(16, 3, rec["mask"])
    assert torch.allclose(l1, unsup3d.photometric_loss(rec["image"], image, inner, sigma[:, 0:1]))
    changed = image.clone()
    changed[..., :3] = 1 - changed[..., :3]  # only the left border's pixels change
    assert torch.allclose(unsup3d.symmetric_loss(depth, albedo, light, view, changed, sigma, cfg)[0], total)
    assert not torch.allclose(unsup3d.symmetric_loss(depth, albedo, light, view, changed, sigma, small_config())[0],
                              unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma, small_config())[0])


def test_finer_canonical_maps_are_decoded_at_their_size_and_area_averaged_to_the_image():
    torch.manual_seed(3)
    model = unsup3d.Unsup3d(small_config(canonical_scale=2))
    image = torch.rand(2, 3, 16, 16)
    parts = model.decompose(image)
    assert parts["depth"].shape == (2, 1, 32, 32) and parts["albedo"].shape == (2, 3, 32, 32)
    assert model.confidence(image).shape == (2, 2, 16, 16)  # the loss is at the image's resolution
    # at the identity view each fine ray sees its own canonical pixel: the image is the canonical image's 2x2 mean
    depth = 1 + 0.02 * torch.randn(2, 1, 32, 32)
    albedo, light = torch.rand(2, 3, 32, 32), torch.tensor([[0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.2, -0.1]]).repeat(2, 1)
    out = unsup3d.reconstruct(depth, albedo, light, torch.zeros(2, 6), size=16)
    canon = torch.nn.functional.avg_pool2d(unsup3d.canonical_image(depth, albedo, light), 2)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert out["image"].shape == (2, 3, 16, 16)
    assert torch.allclose(out["image"][inner], canon[inner], atol=1e-3)
    assert torch.allclose(out["depth"][inner], torch.nn.functional.avg_pool2d(depth, 2)[inner], atol=1e-3)
    assert out["mask"][inner].min() == 1
    total, _, _ = unsup3d.symmetric_loss(parts["depth"], parts["albedo"], parts["light"], parts["view"], image,
                                         model.confidence(image), model.cfg)
    total.backward()  # differentiable through the area average
    assert model.albedo_net.net[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="size=12"):
        unsup3d.reconstruct(depth, albedo, light, torch.zeros(2, 6), size=12)


def test_view_noise_is_uniform_within_its_bounds_in_degrees_and_pixels():
    cfg = unsup3d.Unsup3dConfig(resolution=32, view_noise_deg=3.0, view_noise_px=0.5)
    noise = unsup3d.view_noise(cfg, 4096, torch.Generator().manual_seed(0))
    pixel = 2 * math.tan(math.radians(5)) / 32  # one image pixel at depth 1, fov 10 degrees
    angles, shift = noise[:, :3].abs(), noise[:, 3:5].abs()
    assert angles.max() <= math.radians(3) and angles.max() > 0.99 * math.radians(3)
    assert angles.mean().item() == pytest.approx(math.radians(1.5), rel=0.05)  # uniform: mean |x| = half the bound
    assert shift.max() <= 0.5 * pixel and shift.max() > 0.99 * 0.5 * pixel
    assert torch.equal(noise[:, 5], torch.zeros(4096))
    assert torch.equal(unsup3d.view_noise(unsup3d.Unsup3dConfig(), 3), torch.zeros(3, 6))


def test_scores_summarise_evaluate_against_the_true_pose():
    torch.manual_seed(0)
    data = SynthFaces(resolution=16, length=6, seed=1)
    batch = {k: torch.stack([data[i][k] for i in range(6)]) for k in ("image", "view_depth", "mask")}
    batch.update({k: v for k, v in data.annotations(range(6)).items() if k in ("view", "light")})
    model = unsup3d.Unsup3d(small_config()).eval()
    out = unsup3d.scores(model, batch)
    full = unsup3d.evaluate(model, batch)
    assert out["side"] == pytest.approx(full["side"].mean().item())
    assert out["mad"] == pytest.approx(full["mad"].mean().item())
    assert torch.equal(out["yaw"], full["semantics"][:, 0])
    assert torch.allclose(out["true_yaw"], torch.rad2deg(batch["view"][:, 0]))
    expected = torch.corrcoef(torch.stack([out["yaw"], out["true_yaw"]]))[0, 1].item()
    assert out["yaw_corr"] == pytest.approx(expected) and -1 <= out["pitch_corr"] <= 1


class _MeanFeatures(torch.nn.Module):
    """A known feature map for the perceptual term: each 4 x 4 block's mean (a quarter of the resolution)."""

    def forward(self, image):
        return torch.nn.functional.avg_pool2d(image, 4)


def _perceptual(image, target, mask, sigma):
    """The perceptual term of `image` against `target` on `_MeanFeatures`."""
    return unsup3d.feature_likelihood(*_MeanFeatures()(torch.cat([image, target])).chunk(2), mask, sigma)


def test_perceptual_loss_is_unsup3ds_gaussian_likelihood_on_pooled_mask_and_sigma():
    image, target = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    sigma, mask = torch.full((1, 1, 8, 8), 2.0), torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1  # the top two blocks
    value = _perceptual(image, target, mask, sigma)
    assert float(value) == pytest.approx(0.25 / (2 * 4) + math.log(2), rel=1e-5)
    mask[..., :4, :4] = 0.5  # a half-covered block weighs half
    target[..., :4, :4] = 1.5  # its difference 1.5: (1.5^2 x 0.5 + 0.5^2 x 1) / 1.5 / 8
    expected = (1.5 ** 2 * 0.5 + 0.25) / 1.5 / 8 + math.log(2)
    assert float(_perceptual(image, target, mask, sigma)) == pytest.approx(expected, rel=1e-5)


def test_perceptual_features_are_a_frozen_quarter_resolution_slice_of_the_feature_network():
    net = features.FeatureNet(features.scaled_config(32, 4))
    perceptual = unsup3d.PerceptualFeatures(net).train()
    x = torch.rand(2, 3, 32, 32)
    out = perceptual(x)
    assert out.shape == (2, 8, 8, 8) and not any(p.requires_grad for p in perceptual.parameters())
    net.eval()
    assert torch.allclose(out, net.stages[:2](net.stem(x * 2 - 1)))
    assert not perceptual.layers.training


def test_symmetric_loss_adds_the_perceptual_terms_with_their_weights_and_needs_four_sigma_maps():
    torch.manual_seed(4)
    cfg, plain = small_config(lam_perc=2.0, lam_flip=0.25), small_config(lam_flip=0.25)
    depth, albedo = 1 + 0.02 * torch.randn(2, 1, 16, 16), torch.rand(2, 3, 16, 16)
    light, view = torch.tensor([[0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.0, -0.1]]).repeat(2, 1), torch.zeros(2, 6)
    image, sigma = torch.rand(2, 3, 16, 16), 0.5 + torch.rand(2, 4, 16, 16)
    total, l1, l1_flip = unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma, cfg,
                                                features=_MeanFeatures())
    photometric, _, _ = unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma[:, :2], plain)
    rec = unsup3d.reconstruct(torch.cat([depth, depth.flip(3)]), torch.cat([albedo, albedo.flip(3)]),
                              light.repeat(2, 1), view.repeat(2, 1))
    perc = [_perceptual(rec["image"][i * 2:i * 2 + 2] * rec["mask"][i * 2:i * 2 + 2], image,
                        rec["mask"][i * 2:i * 2 + 2], sigma[:, 2 + i:3 + i]) for i in (0, 1)]
    assert torch.allclose(total, photometric + 2.0 * (perc[0] + 0.25 * perc[1]))
    with pytest.raises(ValueError, match="lam_perc"):
        unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma, cfg)
    with pytest.raises(ValueError, match="four sigma maps"):
        unsup3d.symmetric_loss(depth, albedo, light, view, image, sigma[:, :2], cfg, features=_MeanFeatures())
    assert unsup3d.Unsup3d(cfg).confidence(image).shape == (2, 4, 16, 16)
    assert unsup3d.Unsup3d(plain).confidence(image).shape == (2, 2, 16, 16)


def test_training_with_the_perceptual_term_runs_and_refuses_a_missing_or_unused_feature_network(tmp_path):
    torch.manual_seed(0)
    G = stylegan.Generator(stylegan.scaled_config(16, 8, 4))
    gens, perceptual = unsup3d.Generations(G), unsup3d.PerceptualFeatures(features.FeatureNet(
        features.scaled_config(16, 4)))
    cfg = small_config(lam_perc=1.0, mutual=0.5)
    trained = train(unsup3d.training_spec(cfg, gens, steps=3, batch_size=4, seed=0, precision="fp32",
                                          features=perceptual), cache_dir=tmp_path, progress=False)
    assert all(math.isfinite(v) for v in trained.history["l1"])
    with pytest.raises(ValueError, match="lam_perc"):
        unsup3d.training_spec(cfg, gens, steps=1, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="lam_perc"):
        unsup3d.training_spec(small_config(), gens, steps=1, batch_size=4, seed=0, features=perceptual)
    with pytest.raises(ValueError, match="lam_perc"):
        unsup3d.Unsup3dConfig(lam_perc=-1)
