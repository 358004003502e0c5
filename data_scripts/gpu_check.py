"""GPU check: everything a GPU session should try first, in one command that fits in about 8 minutes.

On a machine with CUDA it runs, each part with its own time limit, and writes `report.md` (and `report.json`) to --out:

1. the device, torch and CUDA versions, and the fp32 and bf16 GEMM peak of the GPU;
2. one training step of every model family of chapters 01-03, 04's unsup3d and 05's flow at its `gpu` row
   (bench_families.py --row-only, synchronised), and the StyleGAN2's phases at its `gpu` and `paper` rows (bench_stylegan.py);
3. the data-parallel training path under torchrun with the NCCL backend (one process per GPU): a small model trained
   by `helpers.train.train`, checked to finish with the same weights on every rank;
4. every chapter of `_toc.yml` at the `smoke` profile with `device="cuda"` (run_book.py).

A part that fails is reported with its error and the rest still run; the exit status is 1 if any part failed.
On a machine without CUDA it says so and exits 0 (the book never needs a GPU).

    python data_scripts/gpu_check.py --out runs/gpu_check          # or: make gpu-check
    python data_scripts/gpu_check.py --parts ddp,benchmarks         # some parts only
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PARTS = ("benchmarks", "ddp", "chapters")
LIMITS_S = {"benchmarks": 150, "ddp": 90, "chapters": 300}  # per part; about 8 minutes in all


def run_part(name: str, cmd: list[str], out: Path, limit: float) -> dict:
    """Run one part as a subprocess with a time limit; its output goes to <out>/<name>.log."""
    began = time.perf_counter()
    log = out / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        with open(log, "w") as f:
            code = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=limit, env=env).returncode
        status = "passed" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        status = f"stopped after its limit of {limit:.0f} s"
    seconds = time.perf_counter() - began
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print(f"[{name}] {status} in {seconds:.0f} s (log: {log})", flush=True)
    return {"part": name, "status": status, "seconds": round(seconds, 1), "log": str(log), "tail": tail}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(out: Path) -> int:
    """Under torchrun: train a small model on this rank's GPU and save its weights and the backend used."""
    from torch import nn

    from helpers.train import Phase, TrainSpec, train

    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")  # cpu: the tests
    if device.type == "cuda":
        torch.cuda.set_device(device)
    x = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))
    data = [{"x": row, "y": row.sin().sum()} for row in x]

    def loss(nets, batch, step):
        value = (nets["net"](batch["x"]).squeeze(1) - batch["y"]).pow(2).mean()
        return value, {"mse": value.detach()}

    spec = TrainSpec(name="gpu_check_ddp", config={"world": int(os.environ["WORLD_SIZE"])},
                     build=lambda: {"net": nn.Sequential(nn.Linear(16, 256), nn.SiLU(), nn.Linear(256, 1))},
                     optimizers=lambda nets: {"opt": torch.optim.Adam(nets["net"].parameters(), lr=1e-3)},
                     phases=[Phase("fit", loss, "opt")], steps=200, batch_size=64, seed=0, data=data,
                     precision="bf16" if device.type == "cuda" else "fp32", channels_last=False)
    trained = train(spec, device=device, cache_dir=out / "cache", retrain=True, progress=rank == 0)
    weights = torch.cat([p.detach().float().flatten().cpu() for p in trained.nets["net"].parameters()])
    torch.save(weights, out / f"rank{rank}.pt")
    world = torch.distributed.get_world_size()
    ranks = torch.tensor([rank + 1.0], device=device)  # a collective even in a world of one (one GPU)
    torch.distributed.all_reduce(ranks)
    (out / f"rank{rank}.json").write_text(json.dumps({"backend": torch.distributed.get_backend(), "world": world,
                                                      "all_reduce_ok": ranks.item() == world * (world + 1) / 2,
                                                      "final_mse": trained.history["mse"][-1]}))
    torch.distributed.destroy_process_group()
    return 0


def check_ddp(out: Path, n: int, backend: str = "nccl") -> dict:
    """torchrun with `n` processes (one per GPU); passes if every rank used `backend` and ended with the same weights."""
    folder = out / "ddp"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(n),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, "--ddp-worker", str(folder)]
    result = run_part("ddp", cmd, out, LIMITS_S["ddp"])
    if result["status"] == "passed":
        ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(n)]
        weights = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(n)]
        same = all(torch.equal(weights[0], w) for w in weights[1:])
        summed = all(r["all_reduce_ok"] and r["world"] == n for r in ranks)
        if not same or not summed or any(r["backend"] != backend for r in ranks):
            result["status"] = (f"failed: backends {[r['backend'] for r in ranks]}, same weights on every rank: "
                                f"{same}, all_reduce right on every rank: {summed}")
        result["detail"] = f"{n} process(es), backend {ranks[0]['backend']}, final mse {ranks[0]['final_mse']:.4f}"
    return result


def report(results: list[dict], device: dict) -> str:
    lines = ["# GPU check", "", f"Device: {device['name']} ({device['memory_gib']:.0f} GiB), torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}; GEMM peak fp32 {device['gemm_fp32']:.0f}, bf16 {device['gemm_bf16']:.0f} "
             "GFLOP/s.", "", "| part | status | seconds | detail |", "| --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['part']} | {r['status']} | {r['seconds']:.0f} | {r.get('detail', '')} |")
    for r in results:
        lines += ["", f"## {r['part']}: last lines of its log", "", "```text", *r["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {PARTS}")
    parser.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; allowed {PARTS}")
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine, nothing to check (the book runs on CPUs; see "
              "book/running.md).")
        return 0
    from helpers.timing import gemm_peak

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    props = torch.cuda.get_device_properties(0)
    device = {"name": props.name, "memory_gib": props.total_memory / 2 ** 30, "count": torch.cuda.device_count(),
              "gemm_fp32": gemm_peak(torch.float32, device="cuda"), "gemm_bf16": gemm_peak(torch.bfloat16, device="cuda")}
    print(f"{device['count']} x {device['name']}: GEMM peak fp32 {device['gemm_fp32']:.0f}, "
          f"bf16 {device['gemm_bf16']:.0f} GFLOP/s", flush=True)
    results = []
    if "benchmarks" in parts:
        scripts = REPO / "data_scripts"
        results.append(run_part("benchmarks", ["bash", "-c", " && ".join([
            f"{sys.executable} {scripts / 'bench_families.py'} --profile gpu --device cuda --row-only --rounds 2 "
            f"--repeats 2 --out {out / 'bench_families.json'}",
            f"{sys.executable} {scripts / 'bench_stylegan.py'} --profiles gpu,paper --device cuda --rounds 2 "
            f"--out {out / 'bench_stylegan.json'}"])], out, LIMITS_S["benchmarks"]))
    if "ddp" in parts:
        results.append(check_ddp(out, torch.cuda.device_count()))
    if "chapters" in parts:
        results.append(run_part("chapters", [sys.executable, str(REPO / "data_scripts" / "run_book.py"), "--toc",
                                             str(REPO / "_toc.yml"), "--profile", "smoke", "-p", "device", "cuda",
                                             "--out", str(out / "chapters")], out, LIMITS_S["chapters"]))
    text = report(results, device)
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps({"device": device, "results": results,
                                                 "seconds": time.perf_counter() - began}, indent=1) + "\n")
    print(text)
    print(f"gpu_check: {time.perf_counter() - began:.0f} s; report in {out / 'report.md'}")
    return 0 if all(r["status"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
