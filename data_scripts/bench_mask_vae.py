"""Benchmark: one training step of the mask VAE (paper 001) at a profile's size, per part-code grid and precision.

Prints the mean step time of each variant (16 x 16 part codes as in the paper, 8 x 8 as the small profiles use; fp32
and bf16 autocast), measured side by side in interleaved rounds of one run, since these machines are noisy. The
relation block (3-layer bidirectional LSTM) grows with the code size, so the grid sets most of the cost at 64 px.

    python data_scripts/bench_mask_vae.py --resolution 64 --width 32 --batch 16 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from helpers.models import mask_vae as mv
from helpers.train import autocast


def step_time(model: mv.MaskVAE, opt: torch.optim.Optimizer, labels: torch.Tensor, precision: str,
              repeats: int) -> float:
    """Median seconds of one forward + backward + Adam step (after one warm-up step)."""
    parts = mv.one_hot_parts(labels, model.cfg.num_classes)
    weights = torch.ones(model.cfg.num_classes)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(precision, torch.device("cpu")):
            out = model(parts, sample=True)
        loss, _ = mv.mask_vae_loss(out, labels, weights, model.cfg)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    labels = torch.randint(0, args.classes, (args.batch, args.resolution, args.resolution))
    variants = {(grid, precision): None for grid in (16, 8) for precision in ("fp32", "bf16")}
    for key in variants:
        model = mv.MaskVAE(mv.scaled_config(args.classes, args.resolution, args.width, grid=key[0]))
        variants[key] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    times = {key: [] for key in variants}
    for _ in range(args.rounds):
        for key, (model, opt) in variants.items():
            times[key].append(step_time(model, opt, labels, key[1], args.repeats))
    reference = statistics.median(times[(16, "fp32")])
    print(f"mask VAE step, {args.resolution} px, width {args.width}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads")
    for (grid, precision), values in times.items():
        ms = 1000 * statistics.median(values)
        print(f"  grid {grid:2d} x {grid:<2d} {precision}: {ms:7.1f} ms/step  ({reference * 1000 / ms:.2f}x the paper grid in fp32)")


if __name__ == "__main__":
    main()
