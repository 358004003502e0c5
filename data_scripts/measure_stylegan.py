"""Measure the book's StyleGAN2 with and without paper 004's decorrelation, and its W+ inversion, at one profile.

For each seed it trains (or loads from the checkpoint cache) the profile's StyleGAN2 twice, with the same data, seed
and budget: plain, and with the decorrelation loss (paper 004, Eq. 1, weight 1). Then, for each GAN:

- Table 1's analog: the Fréchet distance between held-out real faces and as many samples (const noise, no truncation),
  in the book's attribute-feature space (`helpers.models.features`: NOT the FID, which needs Inception's weights),
  printed beside its real-vs-real floor (training faces against the held-out ones); and the perceptual path length as
  StyleGAN2 defines it (W, endpoints, eps 1e-4, 1-99 % trim) with the distance measured in that same feature space (NOT
  the published PPL, which uses VGG16-LPIPS);
- what Eq. 1 targets: mean |rho_ij| and the spread (std / mean) of the per-dimension variances of w, on 4096 z;
- an 8 x 8 sample grid (seed 0).

Then, for the plain GAN of the first seed, the W+ encoder (`helpers.models.inversion`) is trained (or loaded), and the
encoder, the projector (stylegan2-ada's, from w_avg in W) and both (the projector refining the encoder's W+ codes)
are measured: reconstruction error (pixel MSE and feature distance) on held-out real SynthFaces and on generated faces,
the W+ recovery error on generated faces (mean squared error over the ws, relative to the codes' own spread), and the
time per image.

    python data_scripts/measure_stylegan.py --profile cpu --seeds 0,1 --out book/figures/stylegan
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from helpers import book_models, config
from helpers.data.splits import helen_label_splits
from helpers.inference import in_chunks
from helpers.models import inversion, stylegan

PAPER_TABLE1 = {"FFHQ 256": {"fid": (25.49, 15.57), "ppl": (34.24, 20.23)},
                "CASIA 96x112": {"fid": (11.85, 9.96), "ppl": (15.26, 12.30)}}


def save_grid(G, path: Path, device) -> None:
    import torchvision

    z = torch.randn(64, G.cfg.z_dim, generator=torch.Generator().manual_seed(2024))
    images = in_chunks(lambda z: G(z, noise_mode="const"), z, device=device).clamp(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest"), path,
                                 nrow=8, padding=2)


def reconstruction(G, feature_net, ws, images, device) -> dict[str, float]:
    images = images.cpu()
    out = in_chunks(lambda w: G.synthesis(w, noise_mode="const"), ws, device=device)
    pixel = (out - images).square().flatten(1).mean(1).mean().item()
    distance = in_chunks(lambda x, y: inversion.feature_distance(feature_net.features, x, y), out, images,
                         device=device)
    return {"pixel_mse": pixel, "feature_distance": distance.mean().item()}


def inversion_measures(G, encoder, feature_net, real_test, device, n: int, projector_steps: int) -> dict:
    """Encoder, projector and both on n held-out real faces and n generated ones (known W+ codes)."""
    torch.manual_seed(99)
    with torch.no_grad():
        true_ws = stylegan.sample_ws(G, n, G.cfg.style_mixing, torch.device(device))
        generated = G.synthesis(true_ws, noise_mode="const")
    spread = (true_ws - G.w_avg).square().mean().item()
    cfg = inversion.ProjectorConfig(steps=projector_steps)
    results = {}
    for name, images in (("real", real_test[:n].to(device)), ("generated", generated)):
        began = time.perf_counter()
        with torch.no_grad():
            encoded = encoder(images)
        t_encoder = (time.perf_counter() - began) / n
        began = time.perf_counter()
        projected, _ = inversion.project(G, images, feature_net.features, cfg, space="w")
        t_projector = (time.perf_counter() - began) / n
        began = time.perf_counter()
        refined, _ = inversion.project(G, images, feature_net.features, cfg, space="w+", start=encoded)
        t_both = t_encoder + (time.perf_counter() - began) / n
        for method, ws, seconds in (("encoder", encoded, t_encoder), ("projector (W)", projected, t_projector),
                                    ("encoder + projector (W+)", refined, t_both)):
            row = {**reconstruction(G, feature_net, ws, images, device), "seconds_per_image": seconds}
            if name == "generated":
                row["w_recovery_relative_mse"] = (ws.to(device) - true_ws).square().mean().item() / spread
            results[f"{name}: {method}"] = row
    return results


def markdown(table: dict, inv: dict, profile: str) -> str:
    lines = [f"Profile `{profile}`. Fréchet distance and PPL in the book's attribute-feature space (not FID, not "
             "LPIPS-PPL; the paper's numbers are on other data and networks, shown for direction only).", "",
             "| GAN | seed | FD (features) | real-vs-real floor | PPL W-end (features) | mean abs rho of w | "
             "variance spread of w |", "|---|---|---|---|---|---|---|"]
    for (variant, seed), m in table.items():
        lines.append(f"| {variant} | {seed} | {m['fd_features']:.3f} | {m['fd_features_floor']:.3f} | "
                     f"{m['ppl_w_end_features']:.1f} | {m['mean_abs_correlation']:.3f} | {m['variance_spread']:.3f} |")
    lines += ["", "Paper 004, Table 1 (FID / PPL, without -> with decorrelation): " + "; ".join(
        f"{k}: FID {v['fid'][0]} -> {v['fid'][1]}, PPL {v['ppl'][0]} -> {v['ppl'][1]}" for k, v in PAPER_TABLE1.items())]
    if inv:
        lines += ["", "| inversion | pixel MSE | feature distance | W+ recovery (relative MSE) | s / image |",
                  "|---|---|---|---|---|"]
        for name, m in inv.items():
            recovery = f"{m['w_recovery_relative_mse']:.3f}" if "w_recovery_relative_mse" in m else ""
            lines.append(f"| {name} | {m['pixel_mse']:.4f} | {m['feature_distance']:.3f} | {recovery} | "
                         f"{m['seconds_per_image']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=list(config.PROFILES))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--n-ppl", type=int, default=2000, help="pairs of the PPL estimate")
    parser.add_argument("--n-inversion", type=int, default=64, help="faces of each kind the inversions are measured on")
    parser.add_argument("--projector-steps", type=int, default=200)
    parser.add_argument("--no-inversion", action="store_true")
    parser.add_argument("--out", default="book/figures/stylegan")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table, inv, summaries = {}, {}, {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        run = config.validate(profile=args.profile, seed=seed, out_dir=str(out))
        row = run.family("stylegan")
        train, test = helen_label_splits("synthfaces", None, row.resolution, run.profile.train_size,
                                         run.profile.test_size, seed, keys=("image", "attributes"))
        features_run = dataclasses.replace(run, profile=dataclasses.replace(
            run.profile, families={**run.profile.families,
                                   "features": dataclasses.replace(run.family("features"), resolution=row.resolution)}))
        features_trained = book_models.train_model(features_run, "features", train)
        feature_net = features_trained.nets["features"].to(run.device)
        f_real, floor = stylegan.real_features(feature_net, test["image"], train["image"], run.device)
        plain_cfg = dataclasses.replace(stylegan.book_config(row), decorrelation=0.0)
        samples = max(plain_cfg.decorrelation_samples, 2 * plain_cfg.w_dim)
        decorrelated_cfg = dataclasses.replace(plain_cfg, decorrelation=1.0, decorrelation_samples=samples)
        for variant, cfg in (("plain", plain_cfg), ("decorrelated", decorrelated_cfg)):
            trained = book_models.train_model(run, "stylegan", train, config=cfg)
            summaries[f"{variant} seed {seed}"] = trained.summary
            print(trained.summary, flush=True)
            G = trained.nets["G"].to(run.device)
            table[(variant, seed)] = stylegan.table1_measures(G, feature_net, f_real, floor, args.n_ppl, run.device)
            print(variant, seed, table[(variant, seed)], flush=True)
            if seed == int(args.seeds.split(",")[0]):
                save_grid(G, out / f"samples_{variant}.png", run.device)
                if variant == "plain" and not args.no_inversion:
                    encoder_trained = book_models.train_model(run, "w_encoder", train, generator=trained,
                                                              features=features_trained)
                    summaries["encoder"] = encoder_trained.summary
                    print(encoder_trained.summary, flush=True)
                    inv = inversion_measures(G, encoder_trained.nets["encoder"].to(run.device), feature_net,
                                             test["image"], run.device, args.n_inversion, args.projector_steps)
                    print(json.dumps(inv, indent=1), flush=True)
    (out / "measures.json").write_text(json.dumps(
        {"profile": args.profile, "summaries": summaries, "paper_table1": PAPER_TABLE1,
         "table1": [{"variant": v, "seed": s, **m} for (v, s), m in table.items()], "inversion": inv}, indent=1) + "\n")
    (out / "measures.md").write_text(markdown(table, inv, args.profile))
    print((out / "measures.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
