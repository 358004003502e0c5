"""How ACS and segmentation F1 of Latents2Segments grow with training: the measurement behind the chapter's budget.

Trains the Swapping Autoencoder and then Latents2Segments from it on SynthFaces at a profile's resolution, widths
and batch sizes, with the step counts given here, and evaluates every `--every` steps on a fixed test batch:

- SAE: L1 of the full reconstruction, and the ACS of its structure slices (paper's Table 1 row "Swapping Autoencoder");
- L2S: ACS (Eq. 3), mean F1 over the ROIs for each segmentation rule, and the L1 of the ROI decodes.

The models train in a private cache (`--cache`, a temporary folder by default) so the chapter's cache is untouched,
and the evaluations run between steps in eval mode with their own random generator (they do not change training).

    python data_scripts/l2s_training_curve.py --profile cpu --sae-steps 1500 --l2s-steps 2000 --every 250
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from helpers import config, metrics
from helpers.data.memory import InMemory
from helpers.data.splits import helen_label_splits
from helpers.data.transforms import ToROI
from helpers.models import l2s, sae
from helpers.train import train


def evaluate_sae(model: sae.SwappingAutoencoder, test: dict, cfg: l2s.L2SConfig, n_noise: int) -> dict:
    """Full-reconstruction L1 and the ACS of the structure slices of a plain SAE."""
    structure, texture = model.encode(test["image"])
    l1 = (model.decode(structure, texture) - test["image"]).abs().mean()
    return {"recon_l1": float(l1), "acs": acs(model, structure, texture, test, cfg, n_noise)}


def acs(model, structure, texture, test, cfg, n_noise: int) -> float:
    regions = torch.stack([test["roi_labels"] == i + 1 for i in range(len(cfg.slices))], 1)
    amap = metrics.activeness_map(model.decode, structure, texture, cfg.channel_lists, regions, n_noise=n_noise,
                                  generator=torch.Generator().manual_seed(0), max_batch=256)
    return metrics.activeness_compaction_score(amap)


def evaluate_l2s(model: sae.SwappingAutoencoder, test: dict, cfg: l2s.L2SConfig, n_noise: int) -> dict:
    """ACS, mean F1 over the ROIs per segmentation rule, and the L1 of the ROI decodes."""
    structure, texture = model.encode(test["image"])
    decoded = l2s.decode_rois(model, structure, texture, l2s.slice_masks(cfg))
    out = {"acs": acs(model, structure, texture, test, cfg, n_noise),
           "roi_l1": float((decoded - test["roi_images"]).abs().mean())}
    k = len(cfg.slices)
    for rule in l2s.SEGMENT_RULES:
        predicted = l2s.segment(decoded, test["image"], rule=rule)
        f1 = metrics.f1_per_class(metrics.confusion_matrix(predicted, test["roi_labels"], k + 1))
        out[f"f1_{rule}"] = float(f1[1:].nanmean())
    return out


def evaluator(name: str, evaluate, test: dict, cfg: l2s.L2SConfig, every: int, steps: int, n_noise: int, began):
    def after_step(nets, step):
        if (step + 1) % every and step + 1 != steps:
            return
        model = nets["sae"]
        model.eval()
        with torch.no_grad():
            row = evaluate(model, test, cfg, n_noise)
        model.train()
        cells = "  ".join(f"{k} {v:.4f}" for k, v in row.items())
        print(f"{name} step {step + 1:6d}  {time.perf_counter() - began[0]:7.0f} s  {cells}", flush=True)
    return after_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES))
    parser.add_argument("--sae-steps", type=int, required=True)
    parser.add_argument("--l2s-steps", type=int, required=True)
    parser.add_argument("--width", type=int, default=None, help="base width of the SAE (default: the profile's)")
    parser.add_argument("--every", type=int, default=250, help="evaluate every this many steps")
    parser.add_argument("--test", type=int, default=32, help="test faces in the evaluation batch")
    parser.add_argument("--n-noise", type=int, default=4, help="noise draws per slice for the ACS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", default=None, help="checkpoint folder (default: a fresh temporary folder)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = config.PROFILES[args.profile]
    sae_family, l2s_family = profile.families["sae"], profile.families["l2s"]
    cfg = l2s.scaled_config(l2s_family.resolution, args.width or l2s_family.width)
    train_split, test_split = helen_label_splits("synthfaces", None, sae_family.resolution, profile.train_size,
                                                 args.test, args.seed)
    test = ToROI(cfg.roi_names)(test_split)
    cache = args.cache or tempfile.mkdtemp(prefix="l2s_curve_")
    print(f"profile {args.profile}: {profile.train_size} training faces at {sae_family.resolution} px, SAE width "
          f"{cfg.sae.width} batch {sae_family.batch_size}, L2S batch {l2s_family.batch_size}, {args.test} test "
          f"faces, {args.n_noise} noise draws; cache {cache}", flush=True)
    began = [time.perf_counter()]
    sae_spec = sae.training_spec(
        cfg.sae, InMemory({"image": train_split["image"]}), steps=args.sae_steps, batch_size=sae_family.batch_size,
        seed=args.seed, checkpoint_every=10 ** 9,
        after_step=evaluator("sae", evaluate_sae, test, cfg, args.every, args.sae_steps, args.n_noise, began))
    trained = train(sae_spec, cache_dir=cache, progress=False, retrain=True)
    init = {name: net.state_dict() for name, net in trained.nets.items()}
    began[0] = time.perf_counter()
    l2s_spec = l2s.training_spec(
        cfg, InMemory(train_split, transform=ToROI(cfg.roi_names)), init, steps=args.l2s_steps,
        batch_size=l2s_family.batch_size, seed=args.seed, checkpoint_every=10 ** 9,
        after_step=evaluator("l2s", evaluate_l2s, test, cfg, args.every, args.l2s_steps, args.n_noise, began))
    train(l2s_spec, cache_dir=cache, progress=False, retrain=True)


if __name__ == "__main__":
    main()
