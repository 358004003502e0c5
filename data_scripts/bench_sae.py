"""Benchmark of chapter 2's models: SAE and L2S training steps, fp32 vs bf16, and segmentation throughput.

Prints (1) ms per training step (D phase + G phase, as the book's loop runs them; lazy R1 not included) of the SAE
and of L2S at a profile's size, fp32 vs bf16 autocast, each with and without channels_last, measured side by side
in interleaved rounds (these machines are noisy); (2) ms per image of segmentation by masked decoding (L2S: encoder
+ one generator call for the K ROIs) and of the baseline U-Net segmenter, at batch 1 and batched, in eval mode.

    python data_scripts/bench_sae.py --profile cpu --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from helpers.config import PROFILES
from helpers.models import l2s, sae, segmenter
from helpers.train import autocast, cpu_has_native_bf16

VARIANTS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def step_time(nets, opts, phases, batch, precision: str, repeats: int) -> float:
    """Mean seconds of one D + G step (after one warm-up step)."""
    device = torch.device("cpu")
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        for loss_fn, opt in phases:
            opts[opt].zero_grad(set_to_none=True)
            with autocast(precision, device):
                loss, _ = loss_fn(nets, batch, 1)
            loss.backward()
            opts[opt].step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def bench_training(label: str, make, batch: dict, rounds: int, repeats: int) -> None:
    """Interleaved rounds of the four precision / memory-format variants of one model's step."""
    setups = {}
    for precision, cl in VARIANTS:
        torch.manual_seed(0)
        nets, opts, phases = make()
        data = batch
        if cl:
            for net in nets.values():
                net.to(memory_format=torch.channels_last)
            data = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}
        setups[(precision, cl)] = (nets, opts, phases, data)
    results = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for v in VARIANTS:
            nets, opts, phases, data = setups[v]
            results[v].append(step_time(nets, opts, phases, data, v[0], repeats))
    base = statistics.median(results[("fp32", False)])
    print(label)
    for precision, cl in VARIANTS:
        t = statistics.median(results[(precision, cl)])
        print(f"  {precision:5s} channels_last={str(cl):5s}  {1000 * t:8.1f} ms/step   speed-up x{base / t:.2f}")


@torch.no_grad()
def per_image_ms(fn, images: torch.Tensor, batch: int, precision: str, repeats: int) -> float:
    """Median ms per image of fn over `images` in chunks of `batch` (one warm-up pass)."""
    device = torch.device("cpu")
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with autocast(precision, device):
            for s in range(0, len(images), batch):
                fn(images[s:s + batch])
        if i:
            times.append((time.perf_counter() - t0) / len(images))
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=list(PROFILES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=32, help="images timed for segmentation")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = PROFILES[args.profile]
    fam_sae, fam_l2s, fam_seg = (profile.family(n) for n in ("sae", "l2s", "segmenter"))
    res = fam_sae.resolution
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")
    print(f"profile {args.profile}: sae {fam_sae}, l2s {fam_l2s}, segmenter {fam_seg}; "
          f"{args.rounds} rounds x {args.repeats} steps")

    scfg = sae.scaled_config(res, fam_sae.width)

    def make_sae():
        nets = sae.build(scfg)
        d, _, g = sae.losses(scfg)
        return nets, sae.optimizers(nets, scfg), [(d, "d"), (g, "g")]

    torch.manual_seed(0)
    images = torch.rand(fam_sae.batch_size, 3, res, res)
    bench_training(f"SAE step (D + G), width {fam_sae.width}, batch {fam_sae.batch_size}, {res} px",
                   make_sae, {"image": images}, args.rounds, args.repeats)

    lcfg = l2s.scaled_config(fam_l2s.resolution, fam_l2s.width)
    k = len(lcfg.slices)

    def make_l2s():
        nets = sae.build(lcfg.sae)
        d, _, g = l2s.losses(lcfg)
        return nets, sae.optimizers(nets, lcfg.sae), [(d, "d"), (g, "g")]

    lres, lb = fam_l2s.resolution, fam_l2s.batch_size
    batch = {"image": torch.rand(lb, 3, lres, lres), "roi_images": torch.rand(lb, k, 3, lres, lres)}
    bench_training(f"L2S step (D + G over {k} ROIs), width {fam_l2s.width}, batch {lb}, {lres} px",
                   make_l2s, batch, args.rounds, args.repeats)

    model = sae.SwappingAutoencoder(lcfg.sae).eval()
    seg = segmenter.UNetSegmenter(segmenter.scaled_config(fam_seg.resolution, fam_seg.width)).eval()
    test = torch.rand(args.images, 3, lres, lres)
    print(f"segmentation, ms per image ({args.images} images, {lres} px; L2S width {fam_l2s.width}, "
          f"U-Net width {fam_seg.width})")
    for precision in ("fp32", "bf16"):
        for batch_size in (1, args.images):
            a = per_image_ms(lambda x: l2s.segment_images(model, x, lcfg), test, batch_size, precision, args.repeats)
            b = per_image_ms(lambda x: segmenter.segment_images(seg, x), test, batch_size, precision, args.repeats)
            print(f"  {precision:5s} batch {batch_size:3d}:  L2S {a:7.2f} ms   U-Net baseline {b:7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
