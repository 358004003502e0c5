"""Benchmark SynthFaces: images per second of ``ds.batch``, of the canonical drawing and of the renderer alone.

Usage: python data_scripts/bench_synthfaces.py [--resolutions 64 128] [--batch 256] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.data.synthfaces import SynthFaces, draw_faces  # noqa: E402
from helpers.render import render  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--supersample", type=int, default=None, help="default: the dataset's (2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"batch {args.batch}, {args.repeats} timed repeats after a warm-up")
    for res in args.resolutions:
        options = {} if args.supersample is None else {"supersample": args.supersample}
        ds = SynthFaces(resolution=res, length=args.batch * (args.repeats + 1), seed=0, **options)
        starts = iter(range(0, len(ds), args.batch))  # new faces each call
        times = timed(lambda: ds.batch(range((s := next(starts)), s + args.batch)), args.repeats)
        best, mean = min(times), sum(times) / len(times)
        print(f"SynthFaces.batch  {res:4d}px  supersample {ds.supersample}  batch {args.batch}: "
              f"{args.batch / mean:8.1f} images/s (best {args.batch / best:.1f})")
        def draw(ds=ds, res=res):
            r, factors, colours, _, _ = ds._sample(range(args.batch))  # random numbers, factors (no pixel work)
            return draw_faces(factors, colours, r, res)

        times = timed(draw, args.repeats)
        best, mean = min(times), sum(times) / len(times)
        print(f"sample+draw_faces {res:4d}px                batch {args.batch}: "
              f"{args.batch / mean:8.1f} images/s (best {args.batch / best:.1f})")
        item = ds.batch(range(args.batch))
        inputs = dict(labels=item["canonical_labels"], background=item["background"], alpha=item["canonical_mask"],
                      supersample=ds.supersample, steps=ds.steps)
        times = timed(lambda: render(item["depth"], item["albedo"], item["light"], item["view"], **inputs),
                      args.repeats)
        best, mean = min(times), sum(times) / len(times)
        print(f"render alone      {res:4d}px  supersample {ds.supersample}  batch {args.batch}: "
              f"{args.batch / mean:8.1f} images/s (best {args.batch / best:.1f})")


if __name__ == "__main__":
    main()
