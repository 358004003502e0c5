"""One training loop for every model of the book.

A model is described by a `TrainSpec`: how to build its networks and optimisers, the phases of one iteration (e.g.
discriminator step, lazy R1 every 16 steps, generator step), its data and its full configuration. `train(spec, ...)`
then either loads the finished checkpoint of that configuration from the cache or trains, with

- seeding that makes a step's randomness a function of (seed, step, rank): a resumed run is identical to an
  uninterrupted one, whatever the step it stopped at;
- batches drawn by a DistributedSampler per epoch (one process or many under torchrun);
- mixed precision: bf16 autocast where it is native and faster (CPUs with AMX/AVX512-BF16, CUDA), channels_last for
  convolutional models;
- periodic atomic checkpoints (the cache file itself, marked done at the end) written by rank 0;
- a progress bar in JupyterLab and plain lines in headless runs.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, default_collate

from . import checkpoint as ckpt
from .distributed import World, average_gradients, barrier, broadcast_state, init_world
from .progress import Progress

Nets = Mapping[str, nn.Module]
Batch = Mapping[str, Any]
LossFn = Callable[[Nets, Batch, int], "tuple[torch.Tensor, Mapping[str, float]]"]


@dataclass(frozen=True)
class Phase:
    """One optimisation step inside an iteration: `loss(nets, batch, step)` minimised by optimiser `optimizer`.

    `every=k` runs the phase on steps divisible by k (lazy regularisation: the loss should scale itself by k).
    """

    name: str
    loss: LossFn
    optimizer: str
    every: int = 1


@dataclass
class TrainSpec:
    """Everything that defines one trained model. `config` must hold every setting that changes the result."""

    name: str
    config: Mapping[str, Any]
    build: Callable[[], dict[str, nn.Module]]
    optimizers: Callable[[dict[str, nn.Module]], dict[str, torch.optim.Optimizer]]
    phases: Sequence[Phase]
    steps: int
    batch_size: int
    seed: int
    data: Dataset | None = None
    precision: str = "auto"
    channels_last: bool = True
    checkpoint_every: int = 500
    after_step: Callable[[dict[str, nn.Module], int], None] | None = None
    record_every: int | None = None


@dataclass
class Trained:
    """The outcome of `train`: networks (in eval mode), the loss history, and where they came from."""

    nets: dict[str, nn.Module]
    history: dict[str, list[float]]
    steps: int
    path: Path
    from_cache: bool
    seconds: float
    precision: str
    extra: dict[str, Any] = field(default_factory=dict)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX or AVX512-BF16), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on CUDA with bf16 and on CPUs with native bf16, else 'fp32'."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision={precision!r}: allowed values are 'auto', 'fp32', 'bf16'")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(precision: str, device: torch.device):
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one step's randomness (noise, dropout, reparameterisation)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


def batch_indices(step: int, length: int, batch_size: int, seed: int, world: World) -> list[int]:
    """This rank's share of the global batch of `step`: DistributedSampler order, one permutation per epoch."""
    if batch_size % world.size:
        raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes ({world.size})")
    per_epoch = length // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size={batch_size} is larger than the dataset ({length} items)")
    epoch, position = divmod(step, per_epoch)
    per_rank = batch_size // world.size
    return list(_epoch_order(length, seed, epoch, world.rank, world.size)[position * per_rank:(position + 1) * per_rank])


@functools.lru_cache(maxsize=2)
def _epoch_order(length: int, seed: int, epoch: int, rank: int, size: int) -> tuple[int, ...]:
    """This rank's DistributedSampler order for one epoch (computed once per epoch, not once per step)."""
    sampler = DistributedSampler(range(length), num_replicas=size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return tuple(sampler)


def fetch(data: Dataset | None, indices: list[int]) -> dict[str, Any]:
    """A batch: `data.batch(indices)` when the dataset renders batches itself, else collated items."""
    if data is None:
        return {}
    if hasattr(data, "batch"):
        return data.batch(indices)
    return default_collate([data[i] for i in indices])


def to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    """Move tensors to `device`; 4-D floating tensors become channels_last when asked."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4 and value.is_floating_point():
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def cache_key(spec: TrainSpec, precision: str) -> dict[str, Any]:
    """The full configuration that names a checkpoint: the model's config plus the loop's settings."""
    return {
        "name": spec.name, "config": dict(spec.config), "steps": spec.steps, "batch_size": spec.batch_size,
        "seed": spec.seed, "precision": precision, "channels_last": spec.channels_last,
        "phases": [[p.name, p.optimizer, p.every] for p in spec.phases],
    }


def _build(spec: TrainSpec, device: torch.device):
    torch.manual_seed(spec.seed)
    nets = spec.build()
    for net in nets.values():
        net.to(device)
        if spec.channels_last:
            net.to(memory_format=torch.channels_last)
    return nets, spec.optimizers(nets)


def _load_state(nets, optimizers, state: Mapping[str, Any], with_optimizers: bool) -> None:
    for name, net in nets.items():
        net.load_state_dict(state["nets"][name])
    if with_optimizers:
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])


def _history_to_state(history: dict[str, list[float]]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()}


def _history_from_state(state: Mapping[str, torch.Tensor]) -> dict[str, list[float]]:
    return {k: v.tolist() for k, v in state.items()}


def train(spec: TrainSpec, device: torch.device | str = "cpu", retrain: bool = False,
          cache_dir: str | Path | None = None, progress: bool = True) -> Trained:
    """Load the finished model of this configuration from the cache, or train it (resuming a stopped run)."""
    device = torch.device(device)
    if spec.steps < 0:
        raise ValueError(f"steps={spec.steps}: must be >= 0")
    precision = resolve_precision(spec.precision, device)
    key = cache_key(spec, precision)
    path = ckpt.cache_path(spec.name, key, cache_dir)
    world = init_world(device)
    nets, optimizers = _build(spec, device)

    start, history = 0, {"step": []}
    if path.exists() and not retrain:
        saved = ckpt.load_checkpoint(path, key, map_location=device)
        _load_state(nets, optimizers, saved["state"], with_optimizers=not saved["done"])
        history = _history_from_state(saved["state"]["history"])
        if saved["done"]:
            for net in nets.values():
                net.eval()
            return Trained(nets, history, saved["step"], path, True, 0.0, precision)
        start = saved["step"]
    broadcast_state(nets.values(), world)

    all_params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()}
    # the phases switch requires_grad per optimiser; parameters frozen by build() stay frozen, and every flag is
    # restored at the end (a trained model then looks like a model loaded from the cache)
    flags = [(p, p.requires_grad) for params in all_params.values() for p in params]
    frozen = {id(p) for p, trainable in flags if not trainable}
    record_every = spec.record_every or max(1, spec.steps // 1000)
    began = time.perf_counter()
    bar = Progress(spec.steps, spec.name, start=start, enabled=progress and world.is_main)
    for net in nets.values():
        net.train()
    try:
        for step in range(start, spec.steps):
            torch.manual_seed(step_seed(spec.seed, step, world.rank))
            indices = batch_indices(step, len(spec.data), spec.batch_size, spec.seed, world) if spec.data else []
            batch = to_device(fetch(spec.data, indices), device, spec.channels_last)
            logs: dict[str, float] = {}
            for phase in spec.phases:
                if step % phase.every:
                    continue
                logs.update(_run_phase(phase, nets, optimizers[phase.optimizer], all_params, frozen, batch, step,
                                       precision, device, world))
            if spec.after_step is not None:
                spec.after_step(nets, step)
            if step % record_every == 0 or step + 1 == spec.steps:
                history["step"].append(float(step))
                for name, value in logs.items():
                    history.setdefault(name, []).append(value)
            bar.update(step + 1, logs)
            done = step + 1 == spec.steps
            if done or (step + 1) % spec.checkpoint_every == 0:
                _save(path, spec, key, step + 1, done, nets, optimizers, history, world)
    finally:
        for p, trainable in flags:
            p.requires_grad_(trainable)
    bar.close()
    if start >= spec.steps:
        _save(path, spec, key, spec.steps, True, nets, optimizers, history, world)
    for net in nets.values():
        net.eval()
    return Trained(nets, history, spec.steps, path, False, time.perf_counter() - began, precision)


def _run_phase(phase: Phase, nets, optimizer, all_params, frozen, batch, step, precision, device,
               world) -> dict[str, float]:
    mine = {id(p) for p in all_params[phase.optimizer]}
    for params in all_params.values():
        for p in params:
            p.requires_grad_(id(p) in mine and id(p) not in frozen)
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, device):
        loss, logs = phase.loss(nets, batch, step)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"phase {phase.name!r} gave a non-finite loss ({loss.item()}) at step {step}")
    loss.backward()
    average_gradients(all_params[phase.optimizer], world)
    optimizer.step()
    return {name: float(value) for name, value in logs.items()}


def _save(path, spec, key, step, done, nets, optimizers, history, world) -> None:
    if world.size > 1:
        broadcast_state(nets.values(), world)  # keep buffers (e.g. running stats) identical across ranks
    if world.is_main:
        state = {
            "nets": {k: v.state_dict() for k, v in nets.items()},
            "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
            "history": _history_to_state(history),
        }
        ckpt.save_atomic(ckpt.make_checkpoint(spec.name, key, step, done, state), path)
    barrier(world)


def single_network_spec(name: str, net_name: str, make_net: Callable[[], nn.Module], loss: LossFn, lr: float,
                        config: Mapping[str, Any], steps: int, batch_size: int, seed: int,
                        data: Dataset | None = None, **loop: Any) -> TrainSpec:
    """A TrainSpec for one network `net_name` trained by Adam (betas 0.9, 0.999) on one loss, phase `net_name`."""
    return TrainSpec(
        name=name, config=config, build=lambda: {net_name: make_net()},
        optimizers=lambda nets: {net_name: torch.optim.Adam(nets[net_name].parameters(), lr=lr)},
        phases=[Phase(net_name, loss, net_name)], steps=steps, batch_size=batch_size, seed=seed, data=data, **loop)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["Phase", "TrainSpec", "Trained", "train", "resolve_precision", "autocast", "batch_indices",
           "cpu_has_native_bf16", "count_parameters", "step_seed"]
