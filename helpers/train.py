"""One training loop for every model of the book.

A model is described by a `TrainSpec`: how to build its networks and optimisers, the phases of one iteration (e.g.
discriminator step, lazy R1 every 16 steps, generator step), its data and its full configuration. `train(spec, ...)`
then either loads the finished checkpoint of that configuration from the cache or trains, with

- an optional shared forward pass per step (`SharedForward`): a GAN's fakes computed once, with the generator's
  gradients, seen detached by the discriminator phase and differentiated by the generator phase;
- seeding that makes a step's randomness a function of (seed, step, rank): a resumed run is identical to an
  uninterrupted one, whatever the step it stopped at;
- batches drawn by a DistributedSampler per epoch (one process or many under torchrun);
- mixed precision: bf16 autocast where it is native and faster (CPUs with AMX/AVX512-BF16, CUDA), channels_last for
  convolutional models;
- periodic atomic checkpoints (the cache file itself, marked done at the end) written by rank 0;
- a learning-rate schedule (linear warm-up, then constant, cosine or linear decay) applied to every optimiser;
- an exponential moving average of chosen networks' weights (StyleGAN2's G_ema, with its ramp-up), which the returned
  model uses for evaluation;
- an optional evaluation callback at chosen steps that records held-out quality against training wall-clock seconds
  (the learning curves behind each profile's rows);
- a progress bar in JupyterLab and plain lines in headless runs.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
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


@dataclass(frozen=True)
class SharedForward:
    """A forward pass run once per step before the phases, with only optimiser `optimizer`'s parameters requiring grad:
    `forward(nets, batch, step)` returns a dict that joins the batch every phase of that step sees.

    For a GAN: the fakes, which the D phase detaches and the G phase differentiates through the D it has just updated
    (pix2pix's order). The G phase then sees the same fakes as when it decodes them itself (the generator has not
    changed between the two phases; only its noise draws differ), and the step makes one generator forward instead of
    two. Phases keep their graphs apart: a phase's backward may not run through the shared graph unless it is the
    only one that does.
    """

    name: str
    forward: Callable[[Nets, Batch, int], Mapping[str, Any]]
    optimizer: str


@dataclass(frozen=True)
class Schedule:
    """Learning-rate multiplier over a run: linear warm-up over `warmup` steps, then `decay` down to `final` x lr.

    decay "constant" keeps the lr after the warm-up; "cosine" and "linear" reach `final` x lr at the last step.
    """

    warmup: int = 0
    decay: str = "constant"
    final: float = 0.0

    def __post_init__(self) -> None:
        if self.decay not in ("constant", "cosine", "linear"):
            raise ValueError(f"decay={self.decay!r}: allowed values are 'constant', 'cosine', 'linear'")
        if self.warmup < 0 or not 0.0 <= self.final <= 1.0:
            raise ValueError(f"warmup={self.warmup}, final={self.final}: need warmup >= 0 and 0 <= final <= 1")

    def factor(self, step: int, steps: int) -> float:
        """The lr multiplier of step `step` (0-based) of a run of `steps` steps."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant" or steps - self.warmup <= 1:
            return 1.0
        progress = (step - self.warmup) / (steps - self.warmup - 1)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.decay == "cosine" else 1.0 - progress
        return self.final + (1.0 - self.final) * shape


@dataclass(frozen=True)
class EMA:
    """StyleGAN2's moving average of the weights of `nets`: half-life `half_life` images, ramped up.

    After each step, ema = beta * ema + (1 - beta) * weights with beta = 0.5 ** (batch / h), where the half-life h is
    min(half_life, rampup x images seen so far) (stylegan2-ada: ema_kimg 10, ema_rampup 0.05 for short runs);
    rampup None uses half_life throughout. Buffers are copied. The averaged networks are the ones a run returns.
    """

    nets: tuple[str, ...]
    half_life: float = 10_000.0
    rampup: float | None = 0.05

    def __post_init__(self) -> None:
        if not self.nets or self.half_life <= 0 or (self.rampup is not None and self.rampup <= 0):
            raise ValueError(f"EMA(nets={self.nets}, half_life={self.half_life}, rampup={self.rampup}): need at "
                             "least one network, half_life > 0 and rampup None or > 0")

    def beta(self, step: int, batch_size: int) -> float:
        """The decay after step `step` (0-based) with global batch `batch_size`."""
        seen = (step + 1) * batch_size
        half_life = self.half_life if self.rampup is None else min(self.half_life, seen * self.rampup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(ema_net: nn.Module, net: nn.Module, beta: float) -> None:
    """ema_net <- beta * ema_net + (1 - beta) * net for parameters; buffers are copied."""
    for averaged, current in zip(ema_net.parameters(), net.parameters()):
        averaged.lerp_(current.detach(), 1.0 - beta)
    for averaged, current in zip(ema_net.buffers(), net.buffers()):
        averaged.copy_(current)


Evaluate = Callable[[Mapping[str, nn.Module]], Mapping[str, float]]


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
    schedule: Schedule = field(default_factory=Schedule)
    ema: EMA | None = None
    data_id: Mapping[str, Any] | None = None  # what names the training data in the cache key (dataset, split, ...)
    evaluate: Evaluate | None = None  # held-out quality of the networks a run returns (not part of the cache key)
    evaluate_at: Sequence[int] = ()  # steps (1-based: after that many steps) at which `evaluate` runs
    shared: SharedForward | None = None  # computed once per step before the phases (see SharedForward)

    def describe(self) -> str:
        """Steps, batch, optimisers' lr and the recipe, in one line (what a chapter shows of a model it trains)."""
        text = f"{self.steps} steps of batch {self.batch_size}"
        if self.schedule != Schedule():
            text += f", lr warm-up {self.schedule.warmup} steps then {self.schedule.decay}"
            if self.schedule.decay != "constant":
                text += f" to {self.schedule.final:g} x lr"
        if self.ema is not None:
            text += f", EMA of {'/'.join(self.ema.nets)} (half-life {self.ema.half_life:g} images"
            text += f", ramp-up {self.ema.rampup:g})" if self.ema.rampup is not None else ")"
        return text


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
    spec: TrainSpec | None = None
    lrs: dict[str, float] = field(default_factory=dict)  # each optimiser's base learning rate

    @property
    def curve(self) -> dict[str, list[float]]:
        """The evaluations recorded while training: "step", "seconds" (training wall-clock) and each metric."""
        return {k.removeprefix("eval/"): v for k, v in self.history.items() if k.startswith("eval/")}

    @property
    def summary(self) -> str:
        """One line: the model, its size, how it was trained, and whether it came from the cache."""
        params = sum(p.numel() for net in self.nets.values() for p in net.parameters())
        text = f"{self.path.stem.rsplit('-', 1)[0]}: {params / 1e6:.2f} M parameters"
        text += f", {self.spec.describe()}" if self.spec is not None else f", {self.steps} steps"
        if self.lrs:
            text += ", lr " + ", ".join(f"{lr:.3g} ({name})" for name, lr in self.lrs.items())
        text += f", {self.precision}, trained in {self.seconds:.0f} s"
        return text + (" (loaded from the checkpoint cache)" if self.from_cache else "")


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


def cache_key(spec: TrainSpec, precision: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The full configuration that names a checkpoint: the model's config plus the loop's settings.

    A model trained on an accelerator is a different model (other kernels, other random streams): its key names the
    device type; a CPU key has none (the keys of every checkpoint trained so far)."""
    key = {
        "name": spec.name, "config": dict(spec.config), "steps": spec.steps, "batch_size": spec.batch_size,
        "seed": spec.seed, "precision": precision, "channels_last": spec.channels_last,
        "phases": [[p.name, p.optimizer, p.every] for p in spec.phases],
    }
    if torch.device(device).type != "cpu":
        key["device"] = torch.device(device).type
    if spec.shared is not None:
        key["shared"] = [spec.shared.name, spec.shared.optimizer]
    if spec.data_id is not None:
        key["data"] = dict(spec.data_id)
    if spec.schedule != Schedule():
        key["schedule"] = dataclasses.asdict(spec.schedule)
    if spec.ema is not None:
        key["ema"] = {**dataclasses.asdict(spec.ema), "nets": list(spec.ema.nets)}
    return key


def build_networks(spec: TrainSpec, device: torch.device) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    """The spec's networks (seeded, on `device`, channels_last when asked) and their optimisers."""
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
    key = cache_key(spec, precision, device)
    path = ckpt.cache_path(spec.name, key, cache_dir)
    world = init_world(device)
    nets, optimizers = build_networks(spec, device)
    averaged = _ema_copies(spec, nets)

    start, history = 0, {"step": [], "seconds": []}
    if path.exists() and not retrain:
        saved = ckpt.load_checkpoint(path, key, map_location=device)
        _load_state(nets, optimizers, saved["state"], with_optimizers=not saved["done"])
        for name, net in averaged.items():
            net.load_state_dict(saved["state"]["ema"][name])
        history = _history_from_state(saved["state"]["history"])
        if saved["done"]:
            result = {**nets, **averaged}
            for net in result.values():
                net.eval()
            seconds = history["seconds"][-1] if history.get("seconds") else 0.0
            return Trained(result, history, saved["step"], path, True, seconds, precision, spec=spec,
                           lrs=_base_lrs(optimizers))
        start = saved["step"]
    broadcast_state([*nets.values(), *averaged.values()], world)

    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    iteration = Iteration(spec, nets, optimizers, precision, device, world)
    record_every = spec.record_every or max(1, spec.steps // 1000)
    evaluate_at = set(spec.evaluate_at) if spec.evaluate is not None else set()
    clock = _Clock(history["seconds"][-1] if history.get("seconds") else 0.0)
    bar = Progress(spec.steps, spec.name, start=start, enabled=progress and world.is_main)
    if start in evaluate_at:
        _evaluate(spec, {**nets, **averaged}, start, clock, history)
    for net in nets.values():
        net.train()
    try:
        for step in range(start, spec.steps):
            torch.manual_seed(step_seed(spec.seed, step, world.rank))
            factor = spec.schedule.factor(step, spec.steps)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * factor
            indices = batch_indices(step, len(spec.data), spec.batch_size, spec.seed, world) if spec.data else []
            batch = to_device(fetch(spec.data, indices), device, spec.channels_last)
            logs = iteration(batch, step)
            if averaged:
                beta = spec.ema.beta(step, spec.batch_size)
                for name, net in averaged.items():
                    update_ema(net, nets[name], beta)
            if spec.after_step is not None:
                spec.after_step(nets, step)
            if step % record_every == 0 or step + 1 == spec.steps:
                history["step"].append(float(step))
                history["seconds"].append(clock.seconds())
                for name, value in logs.items():
                    history.setdefault(name, []).append(value)
            bar.update(step + 1, logs)
            if step + 1 in evaluate_at:
                _evaluate(spec, {**nets, **averaged}, step + 1, clock, history)
            done = step + 1 == spec.steps
            if done or (step + 1) % spec.checkpoint_every == 0:
                _save(path, spec, key, step + 1, done, nets, averaged, optimizers, history, world)
    finally:
        iteration.restore_flags()
    bar.close()
    if start >= spec.steps:
        _save(path, spec, key, spec.steps, True, nets, averaged, optimizers, history, world)
    result = {**nets, **averaged}
    for net in result.values():
        net.eval()
    seconds = history["seconds"][-1] if history["seconds"] else clock.seconds()  # up to the last step
    return Trained(result, history, spec.steps, path, False, seconds, precision, spec=spec,
                   lrs=_base_lrs(optimizers))


def _base_lrs(optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, float]:
    return {name: opt.param_groups[0].get("initial_lr", opt.param_groups[0]["lr"]) for name, opt in optimizers.items()}


class _Clock:
    """Training wall-clock seconds: continues a resumed run's count, and stops while the networks are evaluated."""

    def __init__(self, offset: float = 0.0):
        self.offset, self.began, self.paused = offset, time.perf_counter(), 0.0

    def seconds(self) -> float:
        return self.offset + time.perf_counter() - self.began - self.paused

    @contextlib.contextmanager
    def pause(self):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - began


def _ema_copies(spec: TrainSpec, nets: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    """The averaged copies of the networks `spec.ema` names (empty without EMA)."""
    if spec.ema is None:
        return {}
    unknown = [name for name in spec.ema.nets if name not in nets]
    if unknown:
        raise ValueError(f"EMA of {unknown}: the spec builds only {sorted(nets)}")
    return {name: copy.deepcopy(nets[name]) for name in spec.ema.nets}  # updated under no_grad (update_ema)


def _evaluate(spec: TrainSpec, nets: Mapping[str, nn.Module], step: int, clock: _Clock,
              history: dict[str, list[float]]) -> None:
    """Run `spec.evaluate` on the networks a run returns (eval mode, no autograd); record it against the clock."""
    with clock.pause():
        modes = {name: net.training for name, net in nets.items()}
        for net in nets.values():
            net.eval()
        with torch.no_grad():
            values = spec.evaluate(nets)
        for name, net in nets.items():
            net.train(modes[name])
    history.setdefault("eval/step", []).append(float(step))
    history.setdefault("eval/seconds", []).append(clock.seconds())
    for name, value in values.items():
        history.setdefault(f"eval/{name}", []).append(float(value))


class Iteration:
    """One training iteration of a spec's networks: every phase due at a step, in order, each differentiating only
    its own optimiser's parameters (parameters frozen by `build` stay frozen; `restore_flags` puts every
    requires_grad back as it was, so a trained model looks like a model loaded from the cache)."""

    def __init__(self, spec: TrainSpec, nets: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                 precision: str, device: torch.device, world: World | None = None):
        self.spec, self.nets, self.optimizers = spec, nets, optimizers
        self.precision, self.device, self.world = precision, device, world or World()
        self.params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()}
        self.flags = [(p, p.requires_grad) for params in self.params.values() for p in params]
        self.frozen = {id(p) for p, trainable in self.flags if not trainable}

    def __call__(self, batch: Batch, step: int) -> dict[str, float]:
        logs: dict[str, float] = {}
        shared = self.spec.shared
        if shared is not None:
            self._differentiate_only(shared.optimizer)
            with autocast(self.precision, self.device):
                batch = {**batch, **shared.forward(self.nets, batch, step)}
        for phase in self.spec.phases:
            if step % phase.every == 0:
                logs.update(self._phase(phase, batch, step))
        return logs

    def _differentiate_only(self, optimizer: str) -> None:
        mine = {id(p) for p in self.params[optimizer]}
        for params in self.params.values():
            for p in params:
                p.requires_grad_(id(p) in mine and id(p) not in self.frozen)

    def _phase(self, phase: Phase, batch: Batch, step: int) -> dict[str, float]:
        self._differentiate_only(phase.optimizer)
        optimizer = self.optimizers[phase.optimizer]
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.precision, self.device):
            loss, logs = phase.loss(self.nets, batch, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"phase {phase.name!r} gave a non-finite loss ({loss.item()}) at step {step}")
        loss.backward()
        average_gradients(self.params[phase.optimizer], self.world)
        optimizer.step()
        return {name: float(value) for name, value in logs.items()}

    def restore_flags(self) -> None:
        for p, trainable in self.flags:
            p.requires_grad_(trainable)


def _save(path, spec, key, step, done, nets, averaged, optimizers, history, world) -> None:
    if world.size > 1:
        broadcast_state(nets.values(), world)  # keep buffers (e.g. running stats) identical across ranks
    if world.is_main:
        state = {
            "nets": {k: v.state_dict() for k, v in nets.items()},
            "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
            "history": _history_to_state(history),
        }
        if averaged:
            state["ema"] = {k: v.state_dict() for k, v in averaged.items()}
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


__all__ = ["Phase", "SharedForward", "Schedule", "EMA", "update_ema", "TrainSpec", "Trained", "train", "build_networks", "Iteration",
           "fetch", "to_device", "resolve_precision", "autocast", "batch_indices",
           "cpu_has_native_bf16", "count_parameters", "step_seed"]
