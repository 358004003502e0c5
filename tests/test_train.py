"""helpers.train: seeding, batches, resume after a kill equals an uninterrupted run, phases, precision."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from helpers import checkpoint as ckpt
from helpers import train as tr
from helpers.distributed import World
from helpers.train import Phase, TrainSpec, train


class Killed(RuntimeError):
    """Stands for the process dying in the middle of a run."""


class Images(Dataset):
    """48 tiny 2x6x6 images with a scalar target, as dict items."""

    def __init__(self, n: int = 48):
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 2, 6, 6, generator=g)
        self.y = self.x.mean(dim=(1, 2, 3)) * 3 + 0.1 * torch.randn(n, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "index": i}


def kill_once(fn, at: int, killed: list):
    """Wrap a loss so that it raises at step `at` the first time only (the run is then resumed)."""
    def loss(nets, batch, step):
        if step == at and not killed:
            killed.append(step)
            raise Killed(f"killed at step {step}")
        return fn(nets, batch, step)
    return loss


def conv_spec(steps: int = 12, kill_at: int | None = None, killed: list | None = None, seen: list | None = None,
              **kw) -> TrainSpec:
    def build():
        return {"net": nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
                                     nn.Linear(4 * 4 * 4, 1))}

    def loss(nets, batch, step):
        if seen is not None:
            seen.append((step, batch["index"].tolist()))
        noisy = batch["x"] + 0.05 * torch.randn_like(batch["x"])  # more per-step randomness than dropout alone
        value = (nets["net"](noisy).squeeze(1) - batch["y"]).pow(2).mean()
        return value, {"mse": value.detach()}

    fn = kill_once(loss, kill_at, killed) if kill_at is not None else loss
    args = dict(name="conv", config={"kind": "conv"}, build=build,
                optimizers=lambda nets: {"opt": torch.optim.Adam(nets["net"].parameters(), lr=0.01)},
                phases=[Phase("fit", fn, "opt")], steps=steps, batch_size=8, seed=3, data=Images(),
                precision="fp32", checkpoint_every=3)
    args.update(kw)
    return TrainSpec(**args)


def gan_spec(kill_at: int | None = None, killed: list | None = None, steps: int = 12) -> TrainSpec:
    """A toy GAN: G maps noise to 2-D points, D scores them; D step, lazy R1 every 4 steps, G step."""
    def build():
        return {"G": nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)),
                "D": nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Dropout(0.2), nn.Linear(8, 1))}

    def real(batch):
        return batch["x"].flatten(1)[:, :2]

    def d_loss(nets, batch, step):
        fake = nets["G"](torch.randn(len(batch["x"]), 3)).detach()
        value = nn.functional.softplus(nets["D"](fake)).mean() + nn.functional.softplus(-nets["D"](real(batch))).mean()
        return value, {"d": value.detach()}

    def r1(nets, batch, step):
        x = real(batch).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(nets["D"](x).sum(), x, create_graph=True)
        value = 4 * 0.5 * grad.pow(2).sum(1).mean()
        return value, {"r1": value.detach()}

    def g_loss(nets, batch, step):
        value = nn.functional.softplus(-nets["D"](nets["G"](torch.randn(len(batch["x"]), 3)))).mean()
        return value, {"g": value.detach()}

    if kill_at is not None:
        g_loss = kill_once(g_loss, kill_at, killed)  # dies after the D and R1 phases of that step have run
    return TrainSpec(
        name="gan", config={"kind": "gan"}, build=build,
        optimizers=lambda nets: {"g": torch.optim.Adam(nets["G"].parameters(), lr=0.01, betas=(0.0, 0.99)),
                                 "d": torch.optim.Adam(nets["D"].parameters(), lr=0.01, betas=(0.0, 0.99))},
        phases=[Phase("D", d_loss, "d"), Phase("R1", r1, "d", every=4), Phase("G", g_loss, "g")],
        steps=steps, batch_size=8, seed=5, data=Images(), precision="fp32", checkpoint_every=3)


def final_state(path):
    """Networks and optimisers of a finished checkpoint (what a resumed run must reproduce exactly)."""
    saved = ckpt.load_checkpoint(path)
    assert saved["done"] is True
    return saved["state"]


def deterministic(history):
    """A run's history without its wall-clock entries (which no two runs share)."""
    return {k: v for k, v in history.items() if not k.endswith("seconds")}


def assert_equal_tree(a, b, where="state"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_equal_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


# ------------------------------------------------------------------------------------------------ seeding and batches
def test_step_seed_distinct_over_steps_and_ranks():
    seeds = {tr.step_seed(s, step, rank) for s in range(3) for step in range(50) for rank in range(4)}
    assert len(seeds) == 3 * 50 * 4
    assert tr.step_seed(1, 2, 0) == tr.step_seed(1, 2, 0)


def test_batch_indices_cover_each_epoch_and_reshuffle():
    one = World()
    epoch0 = [tr.batch_indices(s, 20, 4, seed=0, world=one) for s in range(5)]
    epoch1 = [tr.batch_indices(s, 20, 4, seed=0, world=one) for s in range(5, 10)]
    assert sorted(i for b in epoch0 for i in b) == list(range(20))
    assert sorted(i for b in epoch1 for i in b) == list(range(20))
    assert epoch0 != epoch1
    assert tr.batch_indices(0, 20, 4, seed=1, world=one) != epoch0[0]
    # 22 items, batches of 4: 5 batches per epoch, 2 items left out of each epoch
    assert len({i for s in range(5) for i in tr.batch_indices(s, 22, 4, seed=0, world=one)}) == 20


def test_batch_indices_split_the_global_batch_across_ranks():
    for step in range(7):
        whole = tr.batch_indices(step, 30, 6, seed=2, world=World())
        parts = [tr.batch_indices(step, 30, 6, seed=2, world=World(rank=r, size=3)) for r in range(3)]
        assert all(len(p) == 2 for p in parts)
        assert sorted(i for p in parts for i in p) == sorted(whole)


def test_batch_indices_errors():
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        tr.batch_indices(0, 20, 5, 0, World(0, 2))
    with pytest.raises(ValueError, match="larger than the dataset"):
        tr.batch_indices(0, 3, 4, 0, World())


def test_batches_follow_the_sampler(tmp_path):
    seen: list = []
    train(conv_spec(steps=8, seen=seen), cache_dir=tmp_path, progress=False)
    assert [s for s, _ in seen] == list(range(8))
    for step, indices in seen:
        assert indices == tr.batch_indices(step, 48, 8, 3, World())


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("kill_at", [7, 6, 1])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, kill_at):
    whole = train(conv_spec(), cache_dir=tmp_path / "a", progress=False)
    killed: list = []
    spec = conv_spec(kill_at=kill_at, killed=killed)
    with pytest.raises(Killed):
        train(spec, cache_dir=tmp_path / "b", progress=False)
    partial = ckpt.cache_path("conv", tr.cache_key(spec, "fp32"), tmp_path / "b")
    if kill_at >= 3:
        saved = ckpt.load_checkpoint(partial)
        assert saved["done"] is False and saved["step"] == kill_at // 3 * 3
    else:
        assert not partial.exists()
    seen: list = []
    resumed = train(conv_spec(kill_at=kill_at, killed=killed, seen=seen), cache_dir=tmp_path / "b", progress=False)
    assert resumed.from_cache is False and killed == [kill_at]
    assert seen[0][0] == kill_at // 3 * 3  # started from the last checkpoint, not from 0
    a, b = final_state(whole.path), final_state(resumed.path)
    assert_equal_tree(a["nets"], b["nets"], "nets")
    assert_equal_tree(a["optimizers"], b["optimizers"], "optimizers")
    assert_equal_tree(deterministic(a["history"]), deterministic(b["history"]), "history")
    for k, v in whole.nets["net"].state_dict().items():
        assert torch.equal(v, resumed.nets["net"].state_dict()[k]), k


def test_per_step_seeding_matters(tmp_path):
    """Guards the resume test against passing trivially: another seed gives other weights."""
    a = train(conv_spec(steps=3), cache_dir=tmp_path / "a", progress=False)
    b = train(conv_spec(steps=3, seed=4), cache_dir=tmp_path / "b", progress=False)
    assert not torch.equal(a.nets["net"][0].weight, b.nets["net"][0].weight)


def test_two_phase_resume_with_lazy_phase(tmp_path):
    whole = train(gan_spec(), cache_dir=tmp_path / "a", progress=False)
    assert whole.history["step"] == [float(s) for s in range(12)]
    assert len(whole.history["d"]) == len(whole.history["g"]) == 12
    killed: list = []
    with pytest.raises(Killed):
        train(gan_spec(kill_at=8, killed=killed), cache_dir=tmp_path / "b", progress=False)
    resumed = train(gan_spec(kill_at=8, killed=killed), cache_dir=tmp_path / "b", progress=False)
    a, b = final_state(whole.path), final_state(resumed.path)
    assert_equal_tree(a["nets"], b["nets"], "nets")
    assert_equal_tree(a["optimizers"], b["optimizers"], "optimizers")
    # the lazy phase ran on steps 0, 4, 8 only: D's optimiser took 12 + 3 steps, G's 12
    assert b["optimizers"]["d"]["state"][0]["step"] == 15
    assert b["optimizers"]["g"]["state"][0]["step"] == 12


def test_phase_differentiates_only_its_own_parameters(tmp_path):
    flags: list = []
    spec = gan_spec(steps=4)
    d_phase, r1_phase, g_phase = spec.phases

    def spy(phase):
        def loss(nets, batch, step):
            flags.append((phase.name, step, all(p.requires_grad for p in nets["D"].parameters()),
                          any(p.requires_grad for p in nets["G"].parameters())))
            return phase.loss(nets, batch, step)
        return Phase(phase.name, loss, phase.optimizer, phase.every)

    spec.phases = [spy(p) for p in spec.phases]
    train(spec, cache_dir=tmp_path, progress=False)
    assert flags == [("D", 0, True, False), ("R1", 0, True, False), ("G", 0, False, True),
                     ("D", 1, True, False), ("G", 1, False, True), ("D", 2, True, False), ("G", 2, False, True),
                     ("D", 3, True, False), ("G", 3, False, True)]


def deterministic_gan_spec(shared: bool, steps: int = 6) -> TrainSpec:
    """A toy GAN whose generator is a function of the batch alone (no noise draws, no dropout): D step, then G step,
    with the fakes decoded in each phase, or once per step by a SharedForward."""
    def build():
        torch.manual_seed(3)
        return {"G": nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)),
                "D": nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))}

    def fake_of(nets, batch):
        return nets["G"](batch["x"].flatten(1)[:, 2:5])

    def d_value(nets, batch, fake):
        real = batch["x"].flatten(1)[:, :2]
        return nn.functional.softplus(nets["D"](fake)).mean() + nn.functional.softplus(-nets["D"](real)).mean()

    def d_loss(nets, batch, step):
        fake = batch["fake"].detach() if shared else fake_of(nets, batch).detach()
        value = d_value(nets, batch, fake)
        return value, {"d": value.detach()}

    def g_loss(nets, batch, step):
        value = nn.functional.softplus(-nets["D"](batch["fake"] if shared else fake_of(nets, batch))).mean()
        return value, {"g": value.detach()}

    return TrainSpec(
        name="gan", config={"kind": "deterministic gan"}, build=build,
        optimizers=lambda nets: {"g": torch.optim.Adam(nets["G"].parameters(), lr=0.01, betas=(0.0, 0.99)),
                                 "d": torch.optim.Adam(nets["D"].parameters(), lr=0.01, betas=(0.0, 0.99))},
        phases=[Phase("D", d_loss, "d"), Phase("G", g_loss, "g")], steps=steps, batch_size=8, seed=5, data=Images(),
        precision="fp32", shared=tr.SharedForward("fakes", lambda nets, batch, step: {"fake": fake_of(nets, batch)},
                                                  "g") if shared else None)


def test_shared_forward_trains_the_same_networks_as_decoding_in_each_phase(tmp_path):
    # the generator does not change between the D and the G phase of a step, so one forward serves both
    separate = train(deterministic_gan_spec(shared=False), cache_dir=tmp_path, progress=False)
    once = train(deterministic_gan_spec(shared=True), cache_dir=tmp_path, progress=False)
    assert once.path != separate.path  # the shared forward is part of the cache key
    for name in ("G", "D"):
        for a, b in zip(separate.nets[name].parameters(), once.nets[name].parameters()):
            assert torch.allclose(a, b, atol=1e-6), name
    assert not torch.equal(next(iter(separate.nets["G"].parameters())),
                           next(iter(deterministic_gan_spec(False).build()["G"].parameters())))  # G did train


def test_shared_forward_differentiates_only_its_optimizers_parameters(tmp_path):
    seen: list = []

    def forward(nets, batch, step):
        seen.append((any(p.requires_grad for p in nets["D"].parameters()),
                     all(p.requires_grad for p in nets["G"].parameters())))
        return {"fake": nets["G"](batch["x"].flatten(1)[:, 2:5])}

    spec = deterministic_gan_spec(shared=True, steps=2)
    spec.shared = tr.SharedForward("fakes", forward, "g")
    trained = train(spec, cache_dir=tmp_path, progress=False)
    assert seen == [(False, True), (False, True)]
    assert all(p.requires_grad for net in trained.nets.values() for p in net.parameters())  # flags restored


def test_requires_grad_flags_are_restored_and_frozen_parameters_stay_frozen(tmp_path):
    from helpers.train import count_parameters

    spec = gan_spec(steps=3)
    build = spec.build

    def build_with_frozen_layer():
        nets = build()
        nets["G"][0].requires_grad_(False)  # e.g. a pretrained layer, still listed in the optimiser
        return nets

    spec.build = build_with_frozen_layer
    torch.manual_seed(5)  # the loop's seeding before build(): the initial weights
    initial = build_with_frozen_layer()["G"]
    fresh = train(spec, cache_dir=tmp_path, progress=False)
    assert torch.equal(fresh.nets["G"][0].weight, initial[0].weight)  # not trained
    assert not torch.equal(fresh.nets["G"][2].weight, initial[2].weight)  # trained
    cached = train(spec, cache_dir=tmp_path, progress=False)
    assert cached.from_cache
    for name in ("G", "D"):  # a trained model and the same model from the cache look alike
        assert [p.requires_grad for p in fresh.nets[name].parameters()] == \
               [p.requires_grad for p in cached.nets[name].parameters()]
    assert count_parameters(fresh.nets["D"]) == count_parameters(cached.nets["D"]) == 2 * 8 + 8 + 8 + 1
    assert count_parameters(fresh.nets["G"]) == 8 * 2 + 2


# ------------------------------------------------------------------------------------------------ loop details
def test_history_after_step_and_record_every(tmp_path):
    calls: list = []
    spec = conv_spec(steps=10, after_step=lambda nets, step: calls.append(step), record_every=4)
    trained = train(spec, cache_dir=tmp_path, progress=False)
    assert calls == list(range(10))
    assert trained.history["step"] == [0.0, 4.0, 8.0, 9.0]  # every 4 steps and the last one
    assert len(trained.history["mse"]) == 4
    assert trained.steps == 10 and not trained.nets["net"].training


def test_non_finite_loss_is_an_error(tmp_path):
    spec = conv_spec(steps=4)
    spec.phases = [Phase("boom", lambda nets, batch, step: (torch.tensor(float("nan"), requires_grad=True), {}),
                         "opt")]
    with pytest.raises(FloatingPointError, match="phase 'boom' gave a non-finite loss .* at step 0"):
        train(spec, cache_dir=tmp_path, progress=False)


def test_zero_steps_and_negative_steps(tmp_path):
    trained = train(conv_spec(steps=0), cache_dir=tmp_path, progress=False)
    assert trained.steps == 0 and ckpt.load_checkpoint(trained.path)["done"] is True
    with pytest.raises(ValueError, match="steps=-1"):
        train(conv_spec(steps=-1), cache_dir=tmp_path, progress=False)


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert tr.resolve_precision("fp32", cpu) == "fp32"
    assert tr.resolve_precision("bf16", cpu) == "bf16"
    assert tr.resolve_precision("auto", cpu) == ("bf16" if tr.cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError, match="precision='fp16'"):
        tr.resolve_precision("fp16", cpu)


def test_bf16_autocast_and_cache_key(tmp_path):
    dtypes: list = []

    def loss(nets, batch, step):
        out = nets["net"](batch["x"]).squeeze(1)
        dtypes.append(out.dtype)
        value = (out.float() - batch["y"]).pow(2).mean()
        return value, {"mse": value.detach()}

    spec = conv_spec(steps=2, precision="bf16", phases=[Phase("fit", loss, "opt")])
    trained = train(spec, cache_dir=tmp_path, progress=False)
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert trained.precision == "bf16"
    assert trained.nets["net"][0].weight.dtype == torch.float32  # master weights stay fp32
    fp32 = train(conv_spec(steps=2, phases=[Phase("fit", loss, "opt")]), cache_dir=tmp_path, progress=False)
    assert fp32.path != trained.path and dtypes[-1] == torch.float32  # precision is part of the cache key
    cpu_key = tr.cache_key(spec, "bf16")
    assert "device" not in cpu_key and tr.cache_key(spec, "bf16", torch.device("cpu")) == cpu_key
    assert tr.cache_key(spec, "bf16", "cuda:1") == {**cpu_key, "device": "cuda"}  # a GPU-trained model is another


def test_channels_last_inputs(tmp_path):
    formats: list = []

    def loss(nets, batch, step):
        formats.append(batch["x"].stride())
        value = nets["net"](batch["x"]).pow(2).mean()
        return value, {}

    train(conv_spec(steps=1, phases=[Phase("fit", loss, "opt")]), cache_dir=tmp_path / "a", progress=False)
    train(conv_spec(steps=1, phases=[Phase("fit", loss, "opt")], channels_last=False), cache_dir=tmp_path / "b",
          progress=False)
    assert formats == [(72, 1, 12, 2), (72, 36, 6, 1)]  # [8, 2, 6, 6]: channels_last strides, then the default


def test_count_parameters():
    assert tr.count_parameters(nn.Linear(3, 2)) == 8


# ------------------------------------------------------------------------------------------------ recipes
def test_schedule_warmup_then_decay():
    assert [tr.Schedule().factor(s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    warm = tr.Schedule(warmup=4)
    assert [warm.factor(s, 10) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = tr.Schedule(warmup=2, decay="cosine", final=0.1)
    assert cosine.factor(2, 12) == pytest.approx(1.0) and cosine.factor(11, 12) == pytest.approx(0.1)
    assert cosine.factor(2, 12) > cosine.factor(6, 12) > cosine.factor(10, 12)
    assert tr.Schedule(decay="linear").factor(5, 11) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay='step'"):
        tr.Schedule(decay="step")


def test_schedule_sets_every_optimisers_lr(tmp_path):
    seen: list = []

    def spy(nets, step):
        seen.append(opt_ref[0].param_groups[0]["lr"])

    opt_ref: list = []

    def optimizers(nets):
        opt_ref[:] = [torch.optim.Adam(nets["net"].parameters(), lr=0.01)]
        return {"opt": opt_ref[0]}

    spec = conv_spec(steps=6, optimizers=optimizers, after_step=spy, schedule=tr.Schedule(warmup=2, decay="linear"))
    train(spec, cache_dir=tmp_path, progress=False)
    assert seen == pytest.approx([0.005, 0.01, 0.01, 0.01 * 2 / 3, 0.01 / 3, 0.0])
    assert tr.cache_key(spec, "fp32")["schedule"] == {"warmup": 2, "decay": "linear", "final": 0.0}
    assert "schedule" not in tr.cache_key(conv_spec(), "fp32")  # the default leaves old keys as they were


def test_ema_beta_ramps_up_like_stylegan2():
    ema = tr.EMA(("G",), half_life=10_000, rampup=0.05)
    # after 100 images the half-life is 5 images: with a batch of 10, beta = 0.5 ** 2
    assert ema.beta(9, 10) == pytest.approx(0.25)
    assert ema.beta(10**6, 32) == pytest.approx(0.5 ** (32 / 10_000))
    assert tr.EMA(("G",), half_life=100, rampup=None).beta(0, 10) == pytest.approx(0.5 ** 0.1)


def test_ema_averages_weights_and_is_what_a_run_returns(tmp_path):
    ema = tr.EMA(("net",), half_life=16, rampup=None)
    averaged = train(conv_spec(steps=6, ema=ema), cache_dir=tmp_path, progress=False)
    plain = train(conv_spec(steps=6), cache_dir=tmp_path, progress=False)
    assert averaged.path != plain.path
    # the raw weights are the plain run's (the EMA does not touch training); the returned ones are their average
    raw = ckpt.load_checkpoint(averaged.path)["state"]["nets"]["net"]
    for k, v in plain.nets["net"].state_dict().items():
        assert torch.equal(raw[k], v), k
    returned = averaged.nets["net"].state_dict()["0.weight"]
    assert not torch.equal(returned, raw["0.weight"])
    # the average, by hand: start from the initial weights, then beta = 0.5 ** (8 / 16) after every step
    torch.manual_seed(3)
    initial = conv_spec().build()["net"].state_dict()["0.weight"]
    weights = [initial]
    for steps in range(1, 7):
        weights.append(train(conv_spec(steps=steps), cache_dir=tmp_path / "steps", progress=False)
                       .nets["net"].state_dict()["0.weight"])
    expected, beta = initial.clone(), 0.5 ** 0.5
    for w in weights[1:]:
        expected = beta * expected + (1 - beta) * w
    assert torch.allclose(returned, expected, atol=1e-6)
    cached = train(conv_spec(steps=6, ema=ema), cache_dir=tmp_path, progress=False)
    assert cached.from_cache and torch.equal(cached.nets["net"].state_dict()["0.weight"], returned)


def test_ema_resume_equals_uninterrupted_run(tmp_path):
    ema = tr.EMA(("net",), half_life=20)
    whole = train(conv_spec(ema=ema), cache_dir=tmp_path / "a", progress=False)
    killed: list = []
    with pytest.raises(Killed):
        train(conv_spec(ema=ema, kill_at=7, killed=killed), cache_dir=tmp_path / "b", progress=False)
    resumed = train(conv_spec(ema=ema, kill_at=7, killed=killed), cache_dir=tmp_path / "b", progress=False)
    assert_equal_tree(final_state(whole.path)["ema"], final_state(resumed.path)["ema"], "ema")


def test_ema_of_an_unknown_network_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"EMA of \['G'\]"):
        train(conv_spec(ema=tr.EMA(("G",))), cache_dir=tmp_path, progress=False)


def test_evaluate_records_a_learning_curve_against_training_seconds(tmp_path):
    calls: list = []

    def evaluate(nets):
        calls.append(nets["net"].training)
        return {"weight_norm": nets["net"][0].weight.norm().item()}

    trained = train(conv_spec(steps=9, evaluate=evaluate, evaluate_at=(0, 3, 9)), cache_dir=tmp_path, progress=False)
    assert calls == [False, False, False]  # networks in eval mode while evaluated
    curve = trained.curve
    assert curve["step"] == [0.0, 3.0, 9.0] and len(curve["weight_norm"]) == 3
    assert curve["seconds"][0] < curve["seconds"][1] < curve["seconds"][2]
    assert curve["seconds"][2] == pytest.approx(trained.seconds, abs=0.05)
    assert trained.curve["weight_norm"][-1] == pytest.approx(trained.nets["net"][0].weight.norm().item())
    # the evaluation does not change training, nor the key
    plain = train(conv_spec(steps=9), cache_dir=tmp_path / "plain", progress=False)
    assert plain.path.name == trained.path.name
    assert torch.equal(plain.nets["net"][0].weight, trained.nets["net"][0].weight)
    cached = train(conv_spec(steps=9), cache_dir=tmp_path, progress=False)
    assert cached.curve == curve and cached.seconds == trained.seconds  # the curve comes back from the cache
