"""Benchmark of chapter 2's models: SAE and L2S training steps, fp32 vs bf16, and segmentation throughput.

Prints (1) ms per training step (the shared decodes, D phase and G phase, run by the book's loop `Iteration`; lazy
R1 not included) of the SAE and of L2S at a profile's row, fp32 vs bf16 autocast, each with and without
channels_last, measured side by side in interleaved rounds (these machines are noisy); (2) ms per image of
segmentation by masked decoding (L2S: encoder + one generator call for the K ROIs) and of the baseline U-Net segmenter,
at batch 1 and batched, in eval mode.

`--compare-with DIR` times an older copy of the models (DIR/sae.py and DIR/l2s.py, e.g. from `git show REV:...`)
in the same interleaved rounds, so that a change is measured against its baseline under the same machine load.

    python data_scripts/bench_sae.py --profile cpu --rounds 3 --threads 1
    python data_scripts/bench_sae.py --threads 1 --variants bf16-cl,fp32 --compare-with /tmp/old_models
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from helpers.config import PROFILES
from helpers.models import l2s, sae, segmenter
from helpers.train import Iteration, autocast, build_networks, cpu_has_native_bf16

VARIANTS = {"fp32": ("fp32", False), "fp32-cl": ("fp32", True), "bf16": ("bf16", False), "bf16-cl": ("bf16", True)}


def load_baseline(folder: str):
    """(sae, l2s) modules loaded from older copies DIR/sae.py and DIR/l2s.py (l2s bound to that sae)."""
    name = "helpers.models._bench_baseline_sae"
    spec = importlib.util.spec_from_file_location(name, Path(folder) / "sae.py")
    old_sae = importlib.util.module_from_spec(spec)
    sys.modules[name] = old_sae
    spec.loader.exec_module(old_sae)
    source = (Path(folder) / "l2s.py").read_text().replace("from . import sae as sae_lib", f"import {name} as sae_lib")
    old_l2s = type(sys)("helpers.models._bench_baseline_l2s")
    old_l2s.__package__ = "helpers.models"
    sys.modules[old_l2s.__name__] = old_l2s
    exec(compile(source, str(Path(folder) / "l2s.py"), "exec"), old_l2s.__dict__)
    return old_sae, old_l2s


def step_time(spec, nets, opts, batch, precision: str, repeats: int) -> float:
    """Mean seconds of one step without its lazy R1 (after one warm-up step), run by the book's loop (`Iteration`)."""
    iteration = Iteration(spec, nets, opts, precision, torch.device("cpu"))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        iteration(batch, 1)
        if i:
            times.append(time.perf_counter() - t0)
    iteration.restore_flags()
    return statistics.mean(times)


def bench_training(label: str, makers: dict, batch: dict, variants: list[str], rounds: int, repeats: int) -> None:
    """Interleaved rounds of every (version, precision / memory-format variant) of one model's step."""
    setups = {}
    for version, make in makers.items():
        for v in variants:
            precision, cl = VARIANTS[v]
            torch.manual_seed(0)
            spec, nets, opts = make()
            data = batch
            if cl:
                for net in nets.values():
                    net.to(memory_format=torch.channels_last)
                data = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                        for k, v in batch.items()}
            setups[(version, v)] = (spec, nets, opts, data, precision)
    results = {key: [] for key in setups}
    for _ in range(rounds):
        for key, (spec, nets, opts, data, precision) in setups.items():
            results[key].append(step_time(spec, nets, opts, data, precision, repeats))
    print(label)
    base = {v: statistics.median(results[(next(iter(makers)), v)]) for v in variants}
    for (version, v), times in results.items():
        t = statistics.median(times)
        print(f"  {version:8s} {v:8s} {1000 * t:8.1f} ms/step   (x{base[v] / t:.2f} vs {next(iter(makers))}, "
              f"x{base[variants[0]] / t:.2f} vs {next(iter(makers))} {variants[0]})")


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
    parser.add_argument("--variants", default="fp32,fp32-cl,bf16,bf16-cl",
                        help=f"comma-separated precision / memory-format variants of {list(VARIANTS)}")
    parser.add_argument("--compare-with", default="", help="folder with older sae.py and l2s.py to time as 'baseline'")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: sae, l2s, segment")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; allowed {list(VARIANTS)}")
    skip = set(filter(None, args.skip.split(",")))
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = PROFILES[args.profile]
    fam_sae, fam_l2s, fam_seg = (profile.family(n) for n in ("sae", "l2s", "segmenter"))
    res = fam_sae.resolution
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")
    print(f"profile {args.profile}: sae {fam_sae}, l2s {fam_l2s}, segmenter {fam_seg}; "
          f"{args.rounds} rounds x {args.repeats} steps")
    versions = {"current": (sae, l2s)}
    if args.compare_with:
        versions = {"baseline": load_baseline(args.compare_with), **versions}

    def sae_maker(sae_mod):
        cfg = sae_mod.scaled_config(res, fam_sae.width)

        def make():
            spec = sae_mod.training_spec(cfg, None, steps=1, batch_size=fam_sae.batch_size, seed=0)
            return (spec, *build_networks(spec, torch.device("cpu")))
        return make

    if "sae" not in skip:
        torch.manual_seed(0)
        images = torch.rand(fam_sae.batch_size, 3, res, res)
        bench_training(f"SAE step (D + G), width {fam_sae.width}, batch {fam_sae.batch_size}, {res} px",
                       {name: sae_maker(s) for name, (s, _) in versions.items()}, {"image": images}, variants,
                       args.rounds, args.repeats)

    lres, lb = fam_l2s.resolution, fam_l2s.batch_size

    def l2s_maker(sae_mod, l2s_mod):
        lcfg = dataclasses.replace(l2s_mod.scaled_config(lres, fam_l2s.width), **fam_l2s.model)

        def make():
            spec = l2s_mod.training_spec(lcfg, None, None, steps=1, batch_size=lb, seed=0)
            return (spec, *build_networks(spec, torch.device("cpu")))
        return make

    lcfg = l2s.scaled_config(lres, fam_l2s.width)
    k = len(lcfg.slices)
    if "l2s" not in skip:
        batch = {"image": torch.rand(lb, 3, lres, lres), "roi_images": torch.rand(lb, k, 3, lres, lres),
                 "roi_labels": torch.randint(0, k + 1, (lb, lres, lres))}
        bench_training(f"L2S step (D + G over {k} ROIs), width {fam_l2s.width}, batch {lb}, {lres} px",
                       {name: l2s_maker(s, m) for name, (s, m) in versions.items()}, batch, variants,
                       args.rounds, args.repeats)

    if "segment" in skip:
        return 0
    seg = segmenter.UNetSegmenter(segmenter.scaled_config(fam_seg.resolution, fam_seg.width)).eval()
    test = torch.rand(args.images, 3, lres, lres)
    print(f"segmentation, ms per image ({args.images} images, {lres} px; L2S width {fam_l2s.width}, "
          f"U-Net width {fam_seg.width})")
    for v in variants:
        precision, cl = VARIANTS[v]
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = test.contiguous(memory_format=fmt)
        seg.to(memory_format=fmt)
        for batch_size in (1, args.images):
            cells = []
            for name, (sae_mod, l2s_mod) in versions.items():
                torch.manual_seed(0)
                model = sae_mod.SwappingAutoencoder(lcfg.sae).eval().to(memory_format=fmt)
                ms = per_image_ms(lambda im: l2s_mod.segment_images(model, im, lcfg), x, batch_size, precision,
                                  args.repeats)
                cells.append(f"L2S {name} {ms:7.2f} ms")
            b = per_image_ms(lambda im: segmenter.segment_images(seg, im), x, batch_size, precision, args.repeats)
            print(f"  {v:8s} batch {batch_size:3d}:  {'   '.join(cells)}   U-Net baseline {b:7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
