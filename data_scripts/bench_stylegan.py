"""Benchmark: the StyleGAN2's training phases at each profile's row: D and G step times, kimg per minute, GFLOP/s.

For every profile row of the `stylegan` family it builds the book's training spec (`helpers.models.stylegan.book_spec`,
what `helpers.book_models.train_model` trains) and times each phase of an iteration on its own, side by side in
interleaved rounds (median): the D step, the lazy R1 step, the G step with and without paper 004's decorrelation term,
and the lazy path-length step. kimg per minute counts the lazy phases at their share (R1 every 16 steps, path length
every 4); FLOPs of the D and G steps come from `torch.utils.flop_counter` (it cannot follow the double backward of
R1 and path length), beside this machine's measured GEMM peak.

    python data_scripts/bench_stylegan.py                           # the rows that fit this device (CPU: smoke, cpu)
    python data_scripts/bench_stylegan.py --profiles smoke,cpu,gpu,paper --batch 4   # every row, batch 4 on a CPU
    python data_scripts/bench_stylegan.py --out book/figures/bench_stylegan.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.config import PROFILES, resolve_device
from helpers.models import stylegan
from helpers.timing import gemm_peak, interleaved_ms
from helpers.train import Iteration, Phase, build_networks, count_parameters, resolve_precision, to_device


def phase_calls(spec, device: torch.device, precision: str) -> tuple[dict, dict, dict]:
    """(one callable per phase, its FLOPs, the parameter counts): each runs one phase of the spec, as the loop does."""
    nets, optimizers = build_networks(spec, device)
    for net in nets.values():
        net.train()
    res = spec.config["model"]["resolution"]
    batch = to_device({"image": torch.rand(spec.batch_size, 3, res, res)}, device, spec.channels_last)
    calls, flops = {}, {}
    for phase in spec.phases:
        single = dataclasses.replace(spec)
        single.phases = [Phase(phase.name, phase.loss, phase.optimizer, 1)]
        iteration = Iteration(single, nets, optimizers, precision, device)
        # each call puts the requires_grad flags back: the next phase's Iteration must find them as built
        calls[phase.name] = lambda it=iteration: (it(batch, 0), it.restore_flags())
        calls[phase.name]()  # warm-up
        if phase.every == 1:  # the flop counter cannot follow the double backward of R1 and path length
            with FlopCounterMode(display=False) as counter:
                calls[phase.name]()
            flops[phase.name] = counter.get_total_flops()
    return calls, flops, {name: count_parameters(net) for name, net in nets.items()}


def bench_row(profile: str, batch: int | None, device: torch.device, rounds: int) -> dict:
    row = PROFILES[profile].family("stylegan")
    if batch:
        row = dataclasses.replace(row, batch_size=batch)
    cfg = stylegan.book_config(row)
    split = {"image": torch.zeros(row.batch_size, 3, cfg.resolution, cfg.resolution)}
    precision = resolve_precision(row.precision, device)
    specs = {"": stylegan.book_spec(row, split, seed=0, config=cfg)}
    decorrelated = dataclasses.replace(cfg, decorrelation=1.0,
                                       decorrelation_samples=max(cfg.decorrelation_samples, 2 * cfg.w_dim))
    if cfg.decorrelation == 0:
        specs["decorr "] = stylegan.book_spec(row, split, seed=0, config=decorrelated)
    calls, flops = {}, {}
    for prefix, spec in specs.items():
        spec.channels_last = row.channels_last
        c, f, params = phase_calls(spec, device, precision)
        for name in c:
            if prefix and name != "g":
                continue  # the decorrelation term changes only the G step
            calls[prefix + name] = c[name]
            if name in f:
                flops[prefix + name] = f[name]
    ms = interleaved_ms(calls, rounds=rounds, repeats=1, warmup=0, device=device)
    every = {"r1": cfg.r1_every, "pl": cfg.pl_every}
    per_step = sum(ms[name] / every.get(name, 1) for name in ("d", "r1", "g", "pl") if name in ms)
    per_step_decorr = per_step - ms["g"] + ms.get("decorr g", ms["g"])
    return {
        "profile": profile, "resolution": cfg.resolution, "width": row.width, "batch": row.batch_size,
        "precision": precision, "params_G": params["G"], "params_D": params["D"], "pl": cfg.pl_weight > 0,
        "decorrelation": cfg.decorrelation, "ms": ms, "gflop": {k: v / 1e9 for k, v in flops.items()},
        "gflop_per_s": {k: flops[k] / ms[k] / 1e6 for k in ms if k in flops},
        "kimg_per_min": row.batch_size / per_step * 60, "kimg_per_min_decorr": row.batch_size / per_step_decorr * 60,
    }


def markdown(records: list[dict], peaks: dict[str, float], device: str) -> str:
    lines = [f"Device: {device}; GEMM peak fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s.", "",
             "| profile | px | width | batch | G / D params | D step ms | G step ms | G + decorr. ms | R1 ms (1/16) "
             "| PL ms (1/4) | kimg/min | kimg/min decorr. | D / G GFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        ms, gf = r["ms"], r["gflop_per_s"]
        cells = [r["profile"], r["resolution"], r["width"], r["batch"],
                 f"{r['params_G'] / 1e6:.2f} M / {r['params_D'] / 1e6:.2f} M", f"{ms['d']:.0f}", f"{ms['g']:.0f}",
                 f"{ms.get('decorr g', ms['g']):.0f}", f"{ms['r1']:.0f}", f"{ms['pl']:.0f}" if "pl" in ms else "off",
                 f"{r['kimg_per_min']:.2f}", f"{r['kimg_per_min_decorr']:.2f}", f"{gf['d']:.0f} / {gf['g']:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="", help="comma-separated profiles (default: smoke,cpu on a CPU, all "
                                                       "four on a GPU)")
    parser.add_argument("--batch", type=int, default=0, help="time every row at this batch (0: the row's own)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="", help="also write the records to this JSON file (and a .md beside it)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    profiles = args.profiles.split(",") if args.profiles else (
        ["smoke", "cpu"] if device.type == "cpu" else ["smoke", "cpu", "gpu", "paper"])
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        parser.error(f"--profiles: unknown {unknown}; allowed {list(PROFILES)}")
    peaks = {"fp32": gemm_peak(torch.float32, device=device), "bf16": gemm_peak(torch.bfloat16, device=device)}
    name = str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {name}")
    records = []
    for profile in profiles:
        record = bench_row(profile, args.batch or None, device, args.rounds)
        records.append(record)
        print(f"{profile}: {json.dumps({k: v for k, v in record.items() if k not in ('gflop',)}, default=str)}",
              flush=True)
    table = markdown(records, peaks, name)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"device": name, "threads": torch.get_num_threads(), "gemm_peak_gflops": peaks,
                                   "records": records}, indent=1) + "\n")
        out.with_suffix(".md").write_text(table)
        print(f"written to {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
