"""helpers.distributed and the data-parallel path of helpers.train: 2 gloo processes under torchrun on the CPU."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap

import torch

from helpers import distributed
from helpers.distributed import World

WORKER = textwrap.dedent('''
    """A tiny deterministic model trained by helpers.train.train, alone or under torchrun."""
    import json
    import os
    import sys

    import torch
    from torch import nn
    from torch.utils.data import Dataset

    import helpers.checkpoint as ckpt
    from helpers.train import Phase, TrainSpec, train

    STEPS, BATCH = 5, 8


    class Points(Dataset):
        def __init__(self, n=40):
            g = torch.Generator().manual_seed(11)
            self.x = torch.randn(n, 3, generator=g)
            self.y = torch.sin(self.x.sum(1)) + 0.5 * self.x[:, 0]

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "y": self.y[i], "index": i}


    def make_spec(seen):
        def build():
            net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
            if os.environ.get("RANK") == "1":  # a different start on rank 1: the loop must broadcast rank 0's
                with torch.no_grad():
                    net[0].weight.add_(1.0)
            return {"net": net}

        def loss(nets, batch, step):
            seen.append([step, batch["index"].tolist()])
            value = (nets["net"](batch["x"]).squeeze(1) - batch["y"]).pow(2).mean()  # a mean over this rank's share
            return value, {"mse": value.detach()}

        return TrainSpec(name="ddp_toy", config={"toy": 1}, build=build,
                         optimizers=lambda nets: {"opt": torch.optim.SGD(nets["net"].parameters(), lr=0.2,
                                                                         momentum=0.9)},
                         phases=[Phase("fit", loss, "opt")], steps=STEPS, batch_size=BATCH, seed=0, data=Points(),
                         precision="fp32", channels_last=False, checkpoint_every=2)


    if __name__ == "__main__":
        out, cache = sys.argv[1], sys.argv[2]
        rank = int(os.environ["RANK"])
        saves = []
        real_save = ckpt.save_atomic
        ckpt.save_atomic = lambda obj, path: (saves.append(str(path)), real_save(obj, path))
        seen = []
        trained = train(make_spec(seen), device="cpu", cache_dir=cache, progress=False)
        torch.save(trained.nets["net"].state_dict(), os.path.join(out, f"rank{rank}.pt"))
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"world": int(os.environ["WORLD_SIZE"]), "saves": saves, "seen": seen,
                       "backend": torch.distributed.get_backend()}, f)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_gloo_processes(worker, tmp_path, timeout: int):
    """Run `worker` (argv: out dir, cache dir) under torchrun with 2 CPU processes; (out, cache) once it succeeded."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(worker), str(out), str(cache)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, cache


def load_worker(path):
    spec = importlib.util.spec_from_file_location("ddp_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_single_process_world_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert distributed.launched_by_torchrun() is False
    world = distributed.init_world(torch.device("cpu"))
    assert world == World(0, 1, 0) and world.is_main
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients([p], world)
    distributed.broadcast_state([torch.nn.Linear(2, 2)], world)
    distributed.barrier(world)
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.launched_by_torchrun() is False
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun with one process: it still joins a process group
    assert distributed.launched_by_torchrun() is True
    assert not World(rank=1, size=2).is_main


def test_two_gloo_processes_match_one_process(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out, cache = run_two_gloo_processes(worker, tmp_path, timeout=120)

    info = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [i["world"] for i in info] == [2, 2] and [i["backend"] for i in info] == ["gloo", "gloo"]
    w0, w1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k  # the ranks stay in lockstep

    # only rank 0 writes the checkpoint (steps 2 and 4, then the final one), and there is one file
    assert len(info[0]["saves"]) == 3 and info[1]["saves"] == []
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("ddp_toy-") and files[0].endswith(".pt")

    # the same model trained by one process with the same global batch
    module = load_worker(worker)
    seen: list = []
    single = module.train(module.make_spec(seen), device="cpu", cache_dir=tmp_path / "single", progress=False)
    ws = single.nets["net"].state_dict()
    for k in ws:
        torch.testing.assert_close(w0[k], ws[k], atol=1e-5, rtol=0)
    torch.manual_seed(0)  # the loop's seeding before build(): the initial weights
    initial = module.make_spec([]).build()["net"].state_dict()
    assert all((ws[k] - initial[k]).abs().max() > 1e-3 for k in ws)  # training moved every tensor

    # each rank saw half of every global batch: together exactly the one-process batch
    for step in range(module.STEPS):
        halves = [dict((s, idx) for s, idx in i["seen"])[step] for i in info]
        assert len(halves[0]) == len(halves[1]) == module.BATCH // 2
        assert not set(halves[0]) & set(halves[1])
        assert sorted(halves[0] + halves[1]) == sorted(seen[step][1])

    # the checkpoint written under torchrun is the finished model, the same as rank 0's weights
    saved = torch.load(cache / files[0], weights_only=True)
    assert saved["done"] is True and saved["step"] == module.STEPS
    for k in w0:
        assert torch.equal(saved["state"]["nets"]["net"][k], w0[k]), k


GAN_WORKER = textwrap.dedent('''
    """A tiny StyleGAN2 (every phase: D, lazy R1, G with decorrelation, lazy path length) under torchrun."""
    import os
    import sys

    import torch

    from helpers.data.memory import InMemory
    from helpers.models import stylegan
    from helpers.train import EMA, train

    if __name__ == "__main__":
        out, cache = sys.argv[1], sys.argv[2]
        cfg = stylegan.scaled_config(16, 8, 8, r1_every=2, pl_every=2, decorrelation=1.0, decorrelation_samples=64)
        data = InMemory({"image": torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))})
        spec = stylegan.training_spec(cfg, data, steps=4, batch_size=8, seed=0, precision="fp32",
                                      ema=EMA(stylegan.EVALUATED_NETS, half_life=100.0), data_id={"name": "noise"})
        trained = train(spec, device="cpu", cache_dir=cache, progress=False)
        rank = os.environ["RANK"]
        torch.save({"G": trained.nets["G"].state_dict(), "D": trained.nets["D"].state_dict(),
                    "keys": sorted(trained.history)}, os.path.join(out, f"rank{rank}.pt"))
''')


def test_stylegan_trains_under_two_gloo_processes_in_lockstep(tmp_path):
    worker = tmp_path / "gan_worker.py"
    worker.write_text(GAN_WORKER)
    out, cache = run_two_gloo_processes(worker, tmp_path, timeout=180)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert {"d", "r1", "g", "pl", "decorr"} <= set(r0["keys"])
    for net in ("G", "D"):
        for k in r0[net]:
            if k.endswith("w_avg") or k.endswith("pl_mean"):
                continue  # running statistics of each rank's own samples (stylegan2-ada skips them alike)
            assert torch.equal(r0[net][k], r1[net][k]), (net, k)  # the weights stay in lockstep
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("stylegan-")
