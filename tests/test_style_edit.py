"""helpers.style_edit: Algorithm 2's kernel and matting, Algorithm 1's edits, swaps, structure edits and inversion.

Models are a width-2 SAE at 32 px (eval mode) and two stand-ins with known behaviour: `BandSMPN`, whose ROI decodes
are known bands (so its ROI masks are known exactly), and `Recorder`, which records what reaches the decoder.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import metrics
from helpers import style_edit as se
from helpers.models import l2s, sae

CFG = l2s.scaled_config(32, 2)


@pytest.fixture(scope="module")
def smn() -> sae.SwappingAutoencoder:
    torch.manual_seed(0)
    return sae.SwappingAutoencoder(CFG.sae).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


class BandSMPN(nn.Module):
    """Stand-in SMPN: structure channel k is 1 on row k, columns 2..5 of the 8x8 grid; the decode is the channel sum,
    upsampled x4 into all RGB channels. So ROI i's decode is 1 on pixel rows [4 start_i, 4 stop_i), columns [8, 24)."""

    def __init__(self):
        super().__init__()
        self.eval()

    def encode(self, image):
        structure = torch.zeros(image.shape[0], 8, 8, 8)
        for k in range(8):
            structure[:, k, k, 2:6] = 1.0
        return structure, torch.zeros(image.shape[0], 4)

    def decode(self, structure, texture):
        return F.interpolate(structure.sum(1, keepdim=True), scale_factor=4, mode="nearest").expand(-1, 3, -1, -1)


def band(roi: str) -> torch.Tensor:
    """The known mask [32, 32] of `BandSMPN` for ROI `roi`."""
    start, stop = CFG.slices[CFG.roi_names.index(roi)]
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4 * start:4 * stop, 8:24] = True
    return mask


class Recorder(nn.Module):
    """Stand-in model with fixed codes whose decoder records its inputs and returns black images."""

    def __init__(self, structure, texture):
        super().__init__()
        self.structure, self.texture, self.calls = structure, texture, []
        self.eval()

    def encode(self, image):
        return self.structure, self.texture

    def decode(self, structure, texture):
        self.calls.append((structure.clone(), texture.clone()))
        return torch.zeros(structure.shape[0], 3, 32, 32)


# ----------------------------------------------------------------------------------------------------------------
# Algorithm 2


def test_kernel_sums_to_one_and_is_the_outer_product_of_121():
    kernel = se.gaussian_kernel3()
    assert kernel.sum().item() == 1.0
    taps = torch.tensor([1.0, 2.0, 1.0]) / 4
    assert torch.equal(kernel, torch.outer(taps, taps))
    assert torch.linalg.matrix_rank(kernel) == 1  # separable


def test_scaled_kernel_keeps_the_3x3_support_and_scales_the_variance_with_the_resolution():
    offsets = torch.tensor([-1.0, 0.0, 1.0])
    for resolution, variance in ((128, 0.5), (64, 0.125), (32, 0.5 / 16), (256, 0.5)):
        scale = se.matte_scale(resolution)
        kernel = se.gaussian_kernel3(scale)
        row = kernel.sum(0)
        assert kernel.sum().item() == pytest.approx(1.0)
        assert (row * offsets).sum().item() == pytest.approx(0.0)  # centred
        assert (row * offsets ** 2).sum().item() == pytest.approx(variance)  # the paper's blur in face units
        assert torch.linalg.matrix_rank(kernel) == 1
    assert torch.equal(se.gaussian_kernel3(se.matte_scale(128)), se.gaussian_kernel3())
    assert torch.allclose(se.gaussian_kernel3(0.5), torch.outer(*(torch.tensor([1.0, 14.0, 1.0]) / 16,) * 2))


@pytest.mark.parametrize("bad", [0, -64, 1.5, True, "64"])
def test_matte_scale_refuses_what_is_not_a_resolution(bad):
    with pytest.raises(ValueError, match="resolution"):
        se.matte_scale(bad)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.01, float("nan"), True])
def test_kernel_scale_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="scale"):
        se.gaussian_kernel3(bad)


def test_a_narrower_matte_keeps_more_of_the_change_inside_a_small_region():
    x, y = torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 14:17, 12:20] = True  # a 3 x 8 "eye": 0.87 of the change inside at the paper's width, 0.99 at half
    shares = [metrics.change_inside_share(se.blur3(x, s), se.alpha_matting(x, y, mask, scale=s), mask).item()
              for s in (1.0, 0.5, 0.25)]
    assert shares[0] < shares[1] < shares[2] < 1
    assert shares[0] < 0.9 and shares[1] > 0.95


def test_blur_of_an_impulse_is_the_kernel_and_a_flat_image_stays_flat():
    impulse = torch.zeros(2, 3, 7, 7)
    impulse[:, :, 3, 3] = 1.0
    blurred = se.blur3(impulse)
    assert torch.allclose(blurred[:, :, 2:5, 2:5], se.gaussian_kernel3().expand(2, 3, 3, 3))
    assert blurred.sum().item() == pytest.approx(6.0)
    flat = torch.full((1, 2, 3, 5, 5), 0.3)  # any leading dims; replicate padding keeps borders flat
    assert torch.allclose(se.blur3(flat), flat)


def test_alpha_matte_of_known_masks():
    assert torch.equal(se.alpha_matte(torch.ones(2, 1, 8, 8, dtype=torch.bool)), torch.ones(2, 1, 8, 8))
    half = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    half[..., :4] = True  # columns 0..3
    alpha = se.alpha_matte(half)[0, 0, 4]
    assert alpha.tolist() == pytest.approx([1, 1, 1, 0.75, 0.25, 0, 0, 0])


def test_blend_with_alpha_zero_and_one_gives_x_and_y():
    x, y = images(2, 1), images(2, 2)
    assert torch.equal(se.blend(x, y, torch.zeros(2, 1, 32, 32)), x)
    assert torch.equal(se.blend(x, y, torch.ones(2, 1, 32, 32)), y)
    assert torch.allclose(se.blend(x, y, torch.full((1,), 0.25)), 0.75 * x + 0.25 * y)


def test_alpha_matting_blurs_the_whole_image_and_without_final_blur_keeps_x_outside():
    x, y = images(1, 1), images(1, 2)
    mask = band("nose")[None]
    outside = ~metrics.dilate(mask, 1)[0]  # alpha = 0 there
    plain = se.alpha_matting(x, y, mask, final_blur=False)
    assert torch.equal(plain[..., outside], x[..., outside])
    full = se.alpha_matting(x, y, mask)
    assert torch.allclose(full, se.blur3(plain))
    far = ~metrics.dilate(mask, 2)[0]
    assert torch.allclose(full[..., far], se.blur3(x)[..., far])
    assert not torch.allclose(full[..., far], x[..., far])  # the paper's final blur does touch the outside


# ----------------------------------------------------------------------------------------------------------------
# Algorithm 1


def test_global_edit_with_mu_zero_is_the_reconstruction(smn):
    x = images(2)
    edited = se.global_style_edit(smn, x, 0.0, torch.Generator().manual_seed(0), n_draws=3)
    assert edited.shape == (2, 3, 3, 32, 32)
    with torch.no_grad():
        reconstruction = smn(x)
    assert torch.allclose(edited, reconstruction[:, None].expand_as(edited), atol=1e-5)


def test_global_edit_adds_mu_times_seeded_shared_draws_to_the_texture():
    structure, texture = sae.l2_normalize(torch.randn(2, 8, 8, 8)), sae.l2_normalize(torch.randn(2, 16))
    model = Recorder(structure, texture)
    se.global_style_edit(model, None, 0.5, torch.Generator().manual_seed(7), n_draws=3, codes=(structure, texture))
    s, t = model.calls[-1]
    draws = torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(t.view(2, 3, 16), texture[:, None] + 0.5 * draws[None])  # draw j shared by both images
    assert torch.equal(s.view(2, 3, 8, 8, 8), structure[:, None].expand(2, 3, 8, 8, 8))
    se.global_style_edit(model, None, 0.5, n_draws=3, codes=(structure, texture), renormalize=True)
    assert torch.allclose(model.calls[-1][1].norm(dim=1), torch.ones(6))


def test_texture_noise_basis_follows_the_codes_covariance_with_the_norm_of_isotropic_noise():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([3.0, 1.0, 0.0, 0.0])  # codes vary along two axes only, one three times more
    textures = 0.5 + torch.randn(20000, 4, generator=g) * scales
    basis = se.texture_noise_basis(textures)
    expected = torch.diag(scales * math.sqrt(4 / (scales ** 2).sum()))  # Sigma^1/2 sqrt(D / tr Sigma)
    assert torch.allclose(basis, expected, atol=0.03)
    draws = torch.randn(50000, 4, generator=g) @ basis
    assert (draws.pow(2).sum(1).mean() - 4).abs() < 0.1  # the mean squared norm of N(0, I_4)
    assert draws[:, 2:].abs().max() < 0.05  # nothing along the directions the codes do not use


def test_global_edit_with_a_noise_basis_moves_the_texture_by_mu_draws_times_the_basis():
    structure, texture = sae.l2_normalize(torch.randn(2, 8, 8, 8)), sae.l2_normalize(torch.randn(2, 16))
    model = Recorder(structure, texture)
    basis = torch.randn(16, 16, generator=torch.Generator().manual_seed(3))
    se.global_style_edit(model, None, 0.5, torch.Generator().manual_seed(7), n_draws=3, codes=(structure, texture),
                         noise_basis=basis)
    draws = torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(model.calls[-1][1].view(2, 3, 16), texture[:, None] + 0.5 * (draws @ basis)[None],
                          atol=1e-6)
    with pytest.raises(ValueError, match="noise_basis"):
        se.global_style_edit(model, None, 0.5, codes=(structure, texture), noise_basis=torch.eye(15))
    with pytest.raises(ValueError, match="textures"):
        se.texture_noise_basis(torch.ones(5, 16))


@pytest.mark.parametrize("rule", se.MASK_RULES)
def test_roi_masks_of_known_decodes(rule):
    masks = se.roi_masks(BandSMPN(), CFG, images(2, 3) * 0.9 + 0.05, rule)
    assert masks.shape == (2, 5, 32, 32) and masks.dtype == torch.bool
    expected = torch.stack([band(name) for name in CFG.roi_names])
    assert torch.equal(masks, expected[None].expand_as(masks))


def test_positive_rule_is_literal_and_overlapping(smn):
    x = images(2)
    with torch.no_grad():
        decoded = l2s.roi_images(smn, x, CFG)
    assert torch.equal(se.roi_masks(smn, CFG, x, "positive"), (decoded > 0).any(2))
    paper = se.roi_masks(smn, CFG, x, "paper")
    assert paper.sum(1).max() <= 1  # one ROI per pixel; "positive" may give several
    assert se.roi_masks(smn, CFG, x, "positive").sum(1).max() > 1


@pytest.mark.parametrize("rule", se.MASK_RULES)
def test_masks_from_decodes_match_roi_masks(smn, rule):
    x = images(2)
    with torch.no_grad():
        decoded = l2s.roi_images(smn, x, CFG)
    assert torch.equal(se.masks_from_decodes(decoded, x, rule), se.roi_masks(smn, CFG, x, rule))


def test_localized_edit_is_the_blurred_original_outside_and_the_blurred_edit_inside(smn):
    x = images(2)
    out = se.localized_style_edit(smn, BandSMPN(), CFG, x, "nose", mu=0.5, n_draws=3, seed=0, rule="paper")
    assert out.shape == (2, 3, 3, 32, 32)
    y = se.global_style_edit(smn, x, 0.5, torch.Generator().manual_seed(0), n_draws=3)
    mask = band("nose")
    outside, inside = ~metrics.dilate(mask, 2), ~metrics.dilate(~mask, 2)
    assert torch.allclose(out[..., outside], se.blur3(x)[:, None].expand_as(out)[..., outside], atol=1e-6)
    assert torch.allclose(out[..., inside], se.blur3(y)[..., inside], atol=1e-6)
    assert (se.blur3(y) - se.blur3(x)[:, None]).abs()[..., inside].max() > 0.05  # the edit is visible inside
    shares = metrics.change_inside_share(se.blur3(x)[:, None], out, metrics.dilate(mask, 2))
    assert torch.all(shares == 1.0)


def test_localized_edit_batched_equals_per_image_and_per_roi(smn):
    x = images(3)
    kwargs = dict(mu=0.3, n_draws=2, seed=5, rule="paper")
    batched = se.localized_style_edit(smn, smn, CFG, x, ["hair", "nose"], **kwargs)
    assert batched.shape == (3, 2, 2, 3, 32, 32)
    for b in range(3):
        for r, roi in enumerate(["hair", "nose"]):
            single = se.localized_style_edit(smn, smn, CFG, x[b:b + 1], roi, **kwargs)
            assert torch.allclose(batched[b:b + 1, r], single, atol=1e-5)
    masks = se.roi_masks(smn, CFG, x, "paper")
    again = se.localized_style_edit(smn, None, CFG, x, ["hair", "nose"], masks=masks, **kwargs)
    assert torch.equal(again, batched)


def test_per_roi_margins_reach_the_masks_of_edits_and_swaps(smn):
    x, ref = images(2, 1), images(2, 2)
    margin = torch.tensor([-0.3, 0.2, 0.0, -0.5, 0.1])
    masks = se.roi_masks(smn, CFG, x, "consistency", margin=margin)
    assert not torch.equal(masks, se.roi_masks(smn, CFG, x, "consistency"))  # the margins move the masks
    kwargs = dict(mu=0.3, n_draws=2, seed=5, rule="consistency")
    assert torch.equal(se.localized_style_edit(smn, smn, CFG, x, ["hair", "eyes"], margin=margin, **kwargs),
                       se.localized_style_edit(smn, None, CFG, x, ["hair", "eyes"], masks=masks, **kwargs))
    assert torch.equal(se.style_swap(smn, smn, CFG, x, ref, "hair", rule="consistency", margin=margin),
                       se.style_swap(smn, None, CFG, x, ref, "hair", rule="consistency", masks=masks))


def test_style_swap_puts_the_reference_texture_inside_the_roi_only(smn):
    x, ref = images(2, 1), images(2, 2)
    out = se.style_swap(smn, BandSMPN(), CFG, x, ref, "skin", rule="paper")
    assert out.shape == (2, 3, 32, 32)
    with torch.no_grad():
        swapped = smn.decode(smn.encode(x)[0], smn.encode(ref)[1])
    mask = band("skin")
    outside, inside = ~metrics.dilate(mask, 2), ~metrics.dilate(~mask, 2)
    assert torch.allclose(out[..., outside], se.blur3(x)[..., outside], atol=1e-6)
    assert torch.allclose(out[..., inside], se.blur3(swapped)[..., inside], atol=1e-6)
    both = se.style_swap(smn, BandSMPN(), CFG, x, ref, ["skin", "hair"], rule="paper")
    assert both.shape == (2, 2, 3, 32, 32) and torch.allclose(both[:, 0], out, atol=1e-6)


def test_structure_edit_perturbs_only_the_roi_slice_with_the_texture_unchanged(smn):
    structure, texture = sae.l2_normalize(torch.randn(2, 8, 8, 8)), sae.l2_normalize(torch.randn(2, 16))
    model = Recorder(structure, texture)
    out = se.structure_edit(model, CFG, images(2), "nose", 0.3, torch.Generator().manual_seed(0), n_draws=4)
    assert out.shape == (2, 4, 3, 32, 32)
    s, t = model.calls[-1]
    change = s.view(2, 4, 8, 8, 8) - structure[:, None]
    assert change[:, :, [0, 1, 2, 3, 6, 7]].abs().max() == 0  # nose = channels 4:6
    assert 0.27 < change[:, :, 4:6].std().item() < 0.33
    assert torch.equal(t, texture.repeat_interleave(4, 0))
    x = images(2)
    with torch.no_grad():
        reconstruction = smn(x)
    unchanged = se.structure_edit(smn, CFG, x, ["eyes", "hair"], 0.0, n_draws=2)
    assert unchanged.shape == (2, 2, 2, 3, 32, 32)
    assert torch.allclose(unchanged, reconstruction[:, None, None].expand_as(unchanged), atol=1e-5)


def test_structure_edit_by_roi_decodes_changes_only_the_edited_slices_decode(smn):
    x = images(2)
    noise = torch.randn(3, *smn.encode(x)[0].shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        composite = se.roi_composite(smn, CFG, x)
        rois = l2s.roi_images(smn, x, CFG)
        out = se.structure_edit(smn, CFG, x, ["nose", "hair"], 0.4, noise=noise, decode="rois")  # [B, 2, 3, ...]
        structure, texture = smn.encode(x)
        masks = l2s.slice_masks(CFG)
        for r, roi in enumerate(["nose", "hair"]):
            i = CFG.roi_names.index(roi)
            for d in range(3):
                code = (structure + 0.4 * masks[i].view(1, -1, 1, 1) * noise[d]) * masks[i].view(1, -1, 1, 1)
                expected = composite - rois[:, i] + smn.decode(code, texture)
                assert torch.allclose(out[:, r, d], expected, atol=1e-5)
        unchanged = se.structure_edit(smn, CFG, x, "eyes", 0.0, n_draws=2, decode="rois")
    assert torch.allclose(composite, rois.sum(1)) and unchanged.shape == (2, 2, 3, 32, 32)
    assert torch.allclose(unchanged, composite[:, None].expand_as(unchanged), atol=1e-5)
    with pytest.raises(ValueError, match="decode"):
        se.structure_edit(smn, CFG, x, "eyes", 0.1, decode="sum")


# ----------------------------------------------------------------------------------------------------------------
# Optimisation-based inversion


def test_invert_latent_reduces_the_error_and_stops_at_the_target(smn):
    torch.manual_seed(0)
    init = se.mean_codes(smn, images(4, 9))
    with torch.no_grad():
        target = smn.decode(sae.l2_normalize(torch.randn(2, 8, 8, 8)), sae.l2_normalize(torch.randn(2, 128)))
    start = se.invert_latent(smn, target, 0.0, max_steps=0, init=init)
    assert start.steps.tolist() == [0, 0]
    result = se.invert_latent(smn, target, 0.0, max_steps=10, init=init)
    assert result.steps.tolist() == [10, 10]
    assert torch.all(result.error < 0.7 * start.error)
    assert torch.allclose(result.structure.norm(dim=1), torch.ones(2, 8, 8), atol=1e-4)
    assert torch.allclose(result.texture.norm(dim=1), torch.ones(2), atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(metrics.l1_per_image(smn.decode(result.structure, result.texture), target), result.error,
                              atol=1e-5)
    per_image = se.invert_latent(smn, target, torch.stack([start.error[0] + 1, torch.tensor(0.0)]), max_steps=5,
                                 init=init)
    assert per_image.steps.tolist() == [0, 5]  # image 0 met its target at the start
    assert torch.allclose(per_image.structure[0], start.structure[0])


# ----------------------------------------------------------------------------------------------------------------
# Bad parameters


@pytest.mark.parametrize("call, name", [
    (lambda m: se.localized_style_edit(m, m, CFG, images(1), "ears", 0.1), "roi"),
    (lambda m: se.localized_style_edit(m, m, CFG, images(1), [], 0.1), "roi"),
    (lambda m: se.localized_style_edit(m, m, CFG, images(1), "nose", 0.1, rule="bogus"), "rule"),
    (lambda m: se.localized_style_edit(m, m, CFG, images(1), "nose", -1.0), "mu"),
    (lambda m: se.localized_style_edit(m, None, CFG, images(1), "nose", 0.1), "smpn"),
    (lambda m: se.localized_style_edit(m, None, CFG, images(1), "nose", 0.1, masks=torch.ones(1, 4, 32, 32)),
     "masks"),
    (lambda m: se.global_style_edit(m, images(1), float("nan")), "mu"),
    (lambda m: se.global_style_edit(m, images(1), 0.1, n_draws=0), "n_draws"),
    (lambda m: se.global_style_edit(m, images(1), 0.1, noise=torch.zeros(2, 5)), "noise"),
    (lambda m: se.structure_edit(m, CFG, images(1), "nose", -0.1), "strength"),
    (lambda m: se.style_swap(m, m, CFG, images(1), images(2), "nose"), "reference"),
    (lambda m: se.invert_latent(m, images(1), 0.0, max_steps=-1, init=se.mean_codes(m, images(1))), "max_steps"),
    (lambda m: se.invert_latent(m, images(1), 0.0, lr=0.0, init=se.mean_codes(m, images(1))), "lr"),
])
def test_bad_parameters_name_the_parameter(smn, call, name):
    with pytest.raises(ValueError, match=name):
        call(smn)


def test_a_model_in_training_mode_is_refused():
    model = sae.SwappingAutoencoder(CFG.sae)  # training mode: its decoder injects noise
    with pytest.raises(ValueError, match="eval"):
        se.global_style_edit(model, images(1), 0.1)
