"""Benchmark: one training step of every model family of chapters 01-03, 04's unsup3d and 05's flow over width x
batch x precision.

For each family (mask_vae, sis, sae, l2s, segmenter, features, unsup3d, flow) and every width, batch size, precision
(fp32, bf16 autocast) and memory format (contiguous NCHW, channels_last) of a grid it builds the book's own training
spec (`<module>.book_spec`, the one `helpers.book_models.train_model` trains), runs the training loop's own
`Iteration` (every phase of a step that is not lazy; lazy R1 excluded), and prints ms per step, images per second, the
step's FLOPs (forward + backward, `torch.utils.flop_counter`) and the achieved GFLOP/s beside this machine's measured
fp32 and bf16 GEMM peak. Variants are timed side by side in interleaved rounds (median), since these machines are
noisy. `--compile` adds `torch.compile`d phase losses at the profile's row (its own precision and memory format; the
eager twin is in the grid).

Images per second and GFLOP/s say how well a setting uses the CPU, not what it learns: the rows of the profiles are
chosen from learning curves against wall-clock seconds (`data_scripts/learning_curves.py`).

    python data_scripts/bench_families.py                               # every family, the default grid
    python data_scripts/bench_families.py --families sae --widths 4,8 --batches 8,16,32 --compile
    python data_scripts/bench_families.py --out runs/benchmarks/families.json
    python data_scripts/bench_families.py --out book/figures/bench_families.json --table-only   # redraw the table
    python data_scripts/bench_families.py --families flow --widths 128,256,512 --batches 8,64 --layouts nchw \
        --out book/figures/bench_flow.json
    python data_scripts/bench_families.py --profile gpu --device cuda --row-only   # each gpu row, on the GPU

The flow (chapter 05's T: W+ -> W*) steps on random codes of the profile's W+ size against untrained classifiers:
its cost does not depend on what they hold. unsup3d (chapter 04) draws each step's batch from an untrained StyleGAN2 of
the profile's `stylegan` row, as it trains on a trained one's generations: the step includes generating them; where
the row has unsup3d's perceptual term (`lam_perc`, the gpu row) its features come from an untrained feature network
of width 16.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.config import PROFILES, resolve_device
from helpers.data.splits import helen_label_splits
from helpers.timing import gemm_peak, interleaved_ms
from helpers.models import flow, l2s, mask_vae, sae, segmenter, sis, stylegan, unsup3d
from helpers.models import features as ft
from helpers.models.attribute_classifiers import LinearClassifiers
from helpers.train import (Iteration, Phase, Trained, build_networks, count_parameters, cpu_has_native_bf16, fetch,
                           resolve_precision, to_device)

FAMILIES = ("mask_vae", "sis", "sae", "l2s", "segmenter", "features", "unsup3d", "flow")


def spec_for(family: str, row, split, seed: int = 0, gan_row=None):
    """The book's TrainSpec of `family` at the Family `row` (as helpers.book_models builds it); unsup3d's generations
    come from an untrained StyleGAN2 at `gan_row` (the profile's `stylegan` row)."""
    if family == "mask_vae":
        cfg = mask_vae.scaled_config(11, row.resolution, row.width, grid=16 if row.resolution >= 128 else 8)
        return mask_vae.book_spec(row, split, seed, config=cfg, class_weights=torch.ones(11))
    if family == "sis":
        return sis.book_spec(row, split, seed, config=sis.SISConfig(num_classes=11, resolution=row.resolution,
                                                                    width=row.width, n_blocks=1))
    if family == "l2s":  # fine-tuning starts from an SAE; an untrained one costs the same per step
        cfg = l2s.scaled_config(row.resolution, row.width)
        untrained = Trained(sae.build(cfg.sae), {}, 0, Path("untrained-sae"), False, 0.0, "fp32")
        return l2s.book_spec(row, split, seed, sae=untrained, config=cfg)
    if family == "flow":  # split: random "code" and "attributes"; untrained classifiers cost the same per step
        dim, n_attributes = split["code"].shape[1], split["attributes"].shape[1]
        untrained = Trained({"classifier": LinearClassifiers(dim, n_attributes)}, {}, 0, Path("untrained-classifier"),
                            False, 0.0, "fp32")
        return flow.book_spec(row, split, seed, classifiers=untrained)
    if family == "unsup3d":
        if gan_row is None:
            raise ValueError("unsup3d needs gan_row: the profile's stylegan row, whose generations it trains on")
        untrained = Trained(stylegan.build(stylegan.book_config(gan_row)), {}, 0, Path("untrained-stylegan"), False,
                            0.0, "fp32")
        features = Trained({"features": ft.FeatureNet(ft.scaled_config(row.resolution, 16))}, {}, 0,
                           Path("untrained-features"), False, 0.0, "fp32")  # the perceptual term's (gpu row)
        return unsup3d.book_spec(row, split, seed, generator=untrained, features=features)
    module = {"sae": sae, "segmenter": segmenter, "features": ft}[family]
    return module.book_spec(row, split, seed)


def compiled(spec):
    """The spec with every phase loss wrapped in torch.compile (graph breaks allowed)."""
    spec = dataclasses.replace(spec)
    spec.phases = [Phase(p.name, torch.compile(p.loss), p.optimizer, p.every) for p in spec.phases]
    return spec


def setup(spec, precision: str, device: torch.device):
    """(iteration, batch) of a spec: its networks and optimisers on `device`, and the batch of step 1."""
    nets, optimizers = build_networks(spec, device)
    for net in nets.values():
        net.train()
    batch = to_device(fetch(spec.data, list(range(spec.batch_size))), device, spec.channels_last)
    return Iteration(spec, nets, optimizers, precision, device), batch, nets


def step_flops(iteration, batch) -> float:
    with FlopCounterMode(display=False) as counter:
        iteration(batch, 1)
    return counter.get_total_flops()


def bench_family(family: str, base, split, widths, batches, precisions, layouts, rounds: int, repeats: int,
                 compile_row: bool, failures: list[dict], device: torch.device = torch.device("cpu"),
                 gan_row=None) -> list[dict]:
    """Timed records of one family's grid; a compiled variant that fails is appended to `failures` instead."""
    variants = {}
    for width in widths:
        for batch in batches:
            for precision in precisions:
                for layout in layouts:
                    row = dataclasses.replace(base, width=width, batch_size=batch)
                    spec = spec_for(family, row, split, gan_row=gan_row)
                    spec.channels_last = layout == "cl"
                    variants[(width, batch, precision, layout, False)] = spec
    if compile_row:  # one compilation per family (minutes on 2 cores): at the row's own precision and layout
        precision = resolve_precision(base.precision, device)
        layout = "cl" if base.channels_last else "nchw"
        spec = compiled(spec_for(family, base, split, gan_row=gan_row))
        spec.channels_last = base.channels_last
        variants[(base.width, base.batch_size, precision, layout, True)] = spec
    setups, records = {}, []
    for key, spec in variants.items():
        width, batch, precision, layout, is_compiled = key
        iteration, data, nets = setup(spec, precision, device)
        began = time.perf_counter()
        try:
            iteration(data, 1)  # warm-up (and compilation)
        except Exception as error:  # torch.compile does not handle every model on CPU: report it, time the rest
            if not is_compiled:
                raise
            print(f"{family}: torch.compile failed at the row ({type(error).__name__}: {str(error).splitlines()[0]})")
            failures.append({"family": family, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"})
            continue
        warmup = time.perf_counter() - began
        flops = step_flops(iteration, data) if not is_compiled else None
        params = sum(count_parameters(n) for n in nets.values())
        setups[key] = (iteration, data)
        records.append({"family": family, "width": width, "batch": batch, "precision": precision, "layout": layout,
                        "compiled": is_compiled, "params": params, "flops": flops, "first_step_s": warmup})
    calls = {key: (lambda it=iteration, d=data: it(d, 1)) for key, (iteration, data) in setups.items()}
    ms = interleaved_ms(calls, rounds=rounds, repeats=repeats, warmup=0, device=device)  # warmed up above
    eager = {}
    for record, key in zip(records, setups):
        record["ms_per_step"] = ms[key]
        record["images_per_s"] = record["batch"] / record["ms_per_step"] * 1000
        if not record["compiled"]:
            eager[(record["width"], record["batch"], record["precision"], record["layout"])] = record
    for record in records:  # a compiled variant does the eager variant's FLOPs
        if record["compiled"]:
            twin = eager.get((record["width"], record["batch"], record["precision"], record["layout"]))
            record["flops"] = twin["flops"] if twin else float("nan")
        record["gflop_per_s"] = record["flops"] / record["ms_per_step"] * 1000 / 1e9
    return records


def markdown(records: list[dict], peaks: dict[str, float], profile, threads: int, failures: list[dict],
             device: torch.device) -> str:
    """Markdown: each family at its profile row (eager, compiled), then the whole grid in a dropdown (FLOPs in the JSON)."""
    header = ["| family | width | batch | setting | ms/step | img/s | GFLOP/s | % peak |", "|---|---|---|---|---|---|---|---|"]

    def is_row(r: dict) -> bool:
        row = profile.family(r["family"])
        precision = resolve_precision(row.precision, device)  # "auto" resolves as it did where the timings ran
        return (r["width"], r["batch"], r["precision"], r["layout"] == "cl") == \
            (row.width, row.batch_size, precision, row.channels_last)

    def line(r: dict, bold: bool) -> str:
        setting = f"{r['precision']} {r['layout']}" + (" compiled" if r["compiled"] else "")
        cells = [r["family"], r["width"], r["batch"], setting, f"{r['ms_per_step']:.0f}", f"{r['images_per_s']:.1f}",
                 f"{r['gflop_per_s']:.0f}", f"{100 * r['gflop_per_s'] / peaks[r['precision']]:.1f}"]
        return "| " + " | ".join(f"**{c}**" if bold else str(c) for c in cells) + " |"

    rows = [r for r in records if is_row(r)]
    how = "eager and compiled" if any(r["compiled"] for r in records) else "eager"
    lines = [f"GEMM peak of this machine ({threads} threads): fp32 {peaks['fp32']:.0f} GFLOP/s, "
             f"bf16 {peaks['bf16']:.0f} GFLOP/s. Each family at its profile row, {how}:", "", *header,
             *(line(r, False) for r in rows), ""]
    lines += [f"torch.compile failed for {f['family']} at its row: `{f['error']}`" for f in failures]
    if len(records) > len(rows):  # a grid beyond the rows goes into a dropdown
        lines += ["", f"````{{dropdown}} The whole grid: {len(records)} settings (the rows in bold)", *header,
                  *(line(r, is_row(r) and not r["compiled"]) for r in records), "````"]
    return "\n".join(lines) + "\n"


def print_records(family: str, base, records: list[dict], peaks: dict[str, float]) -> None:
    """One family's records as a text table."""
    print(f"\n{family} at {base.resolution} px (profile row: width {base.width}, batch {base.batch_size})")
    print(f"  {'width':>5} {'batch':>5} {'prec':>5} {'layout':>6} {'compile':>7} {'params':>9} {'ms/step':>9} {'img/s':>7} "
          f"{'GFLOP/step':>10} {'GFLOP/s':>8} {'% peak':>6}")
    for r in records:
        print(f"  {r['width']:5d} {r['batch']:5d} {r['precision']:>5} {r['layout']:>6} {'yes' if r['compiled'] else 'no':>7} "
              f"{r['params'] / 1e6:8.2f}M {r['ms_per_step']:9.1f} {r['images_per_s']:7.1f} "
              f"{r['flops'] / 1e9:10.2f} {r['gflop_per_s']:8.1f} {100 * r['gflop_per_s'] / peaks[r['precision']]:6.1f}"
              + (f"   (first step {r['first_step_s']:.0f} s)" if r["compiled"] else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=list(PROFILES))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--widths", default="", help="comma-separated widths (default: half, 1x and 2x the row's)")
    parser.add_argument("--batches", default="", help="comma-separated batch sizes (default: half, 1x, 2x the row's)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--layouts", default="nchw,cl", help="memory formats: nchw (contiguous), cl (channels_last)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd phases at the row")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--row-only", action="store_true",
                        help="time each family at its profile row only (its width, batch, precision and layout)")
    parser.add_argument("--out", default="", help="also write every record to this JSON file (and a .md beside it)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON at --out; no timing")
    args = parser.parse_args(argv)
    if args.table_only:
        if not args.out:
            parser.error("--table-only needs --out (the JSON file of an earlier run)")
        saved = json.loads(Path(args.out).read_text())
        Path(args.out).with_suffix(".md").write_text(markdown(saved["records"], saved["gemm_peak_gflops"],
                                                              PROFILES[saved["profile"]], saved["threads"],
                                                              saved["compile_failures"], torch.device(saved["device"])))
        print("table:", Path(args.out).with_suffix(".md"))
        return 0
    families = args.families.split(",")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"--families: unknown {unknown}; allowed {FAMILIES}")
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = PROFILES[args.profile]
    device = resolve_device(args.device)
    peaks = {"fp32": gemm_peak(torch.float32, device=device), "bf16": gemm_peak(torch.bfloat16, device=device)}
    if device.type == "cuda":
        print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device)}")
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")
    print(f"GEMM peak (n x n matmul; n = 8192 on a GPU, 2048 on a CPU, 512 for bf16 without native bf16): "
          f"fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    resolution = max(profile.family(f).resolution for f in families)
    largest = max(max(int(b) for b in args.batches.split(",")) if args.batches else 2 * profile.family(f).batch_size
                  for f in families)
    split, _ = helen_label_splits("synthfaces", None, resolution, max(64, largest), 1, seed=0,
                                  keys=("image", "labels", "attributes"))
    everything, failures = [], []
    for family in families:
        base = profile.family(family)
        widths = [int(w) for w in args.widths.split(",")] if args.widths else sorted({max(1, base.width // 2),
                                                                                       base.width, 2 * base.width})
        batches = [int(b) for b in args.batches.split(",")] if args.batches else sorted({max(2, base.batch_size // 2),
                                                                                          base.batch_size,
                                                                                          2 * base.batch_size})
        precisions, layouts = args.precisions.split(","), args.layouts.split(",")
        if args.row_only:
            widths, batches = [base.width], [base.batch_size]
            precisions = [resolve_precision(base.precision, device)]
            layouts = ["cl" if base.channels_last else "nchw"]
        if family == "flow":  # random W+ codes of the profile's StyleGAN2
            gan_cfg = stylegan.book_config(profile.family("stylegan"))
            fam_split = {"code": torch.randn(len(split["attributes"]), gan_cfg.num_ws * gan_cfg.w_dim,
                                             generator=torch.Generator().manual_seed(0)),
                         "attributes": split["attributes"]}
        elif base.resolution == resolution:
            fam_split = split
        else:
            fam_split = {k: torch.nn.functional.interpolate(v[:, None].float() if v.dim() == 3 else v.float(),
                                                            size=base.resolution, mode="nearest").squeeze(1).to(v.dtype)
                         if v.dim() >= 3 else v for k, v in split.items()}
        records = bench_family(family, base, fam_split, widths, batches, precisions, layouts, args.rounds,
                               args.repeats, args.compile, failures, device, gan_row=profile.family("stylegan"))
        print_records(family, base, records, peaks)
        everything += records
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"profile": args.profile, "device": str(device), "threads": torch.get_num_threads(),
                                   "gemm_peak_gflops": peaks, "records": everything,
                                   "compile_failures": failures}, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown(everything, peaks, profile, torch.get_num_threads(), failures,
                                                   device))
        print(f"\nwritten to {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
