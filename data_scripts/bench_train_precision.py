"""Benchmark: one training step of a small conv encoder-decoder at 64 px, fp32 vs bf16 autocast, +/- channels_last.

Prints the mean step time of each variant and its speed-up over fp32, measured side by side (interleaved rounds) in
one run, since these machines are noisy. The loop's `precision="auto"` uses bf16 where the CPU has native bf16.

    python data_scripts/bench_train_precision.py --batch 32 --resolution 64 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from helpers.train import autocast, cpu_has_native_bf16


def encoder_decoder(width: int) -> nn.Module:
    """A small U-Net-free encoder-decoder: 3 stride-2 convs down, 3 upsampling convs back to RGB."""
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())
    return nn.Sequential(
        block(3, width), nn.Conv2d(width, width, 4, 2, 1), block(width, 2 * width), nn.Conv2d(2 * width, 2 * width, 4, 2, 1),
        block(2 * width, 4 * width), nn.Conv2d(4 * width, 4 * width, 4, 2, 1), block(4 * width, 4 * width),
        nn.Upsample(scale_factor=2), block(4 * width, 2 * width), nn.Upsample(scale_factor=2), block(2 * width, width),
        nn.Upsample(scale_factor=2), block(width, width), nn.Conv2d(width, 3, 3, padding=1),
    )


def step_time(model, opt, x, precision: str, channels_last: bool, repeats: int) -> float:
    """Mean seconds of one forward+backward+Adam step."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    device = torch.device("cpu")
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss = (model(x).float() - x).abs().mean()
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.resolution, args.resolution)
    variants = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    models = {}
    for precision, cl in variants:
        torch.manual_seed(0)
        model = encoder_decoder(args.width)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        models[(precision, cl)] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))
    results = {v: [] for v in variants}
    for _ in range(args.rounds):  # interleave the variants so that machine noise hits all of them alike
        for v in variants:
            model, opt = models[v]
            results[v].append(step_time(model, opt, x, v[0], v[1], args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")
    print(f"encoder-decoder width {args.width}, batch {args.batch}, {args.resolution} px, "
          f"{args.rounds} rounds x {args.repeats} steps")
    base = statistics.median(results[("fp32", False)])
    for precision, cl in variants:
        t = statistics.median(results[(precision, cl)])
        print(f"  {precision:5s} channels_last={str(cl):5s}  {1000 * t:8.1f} ms/step   speed-up x{base / t:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
