"""helpers.progress: deterministic text lines when headless, tqdm elsewhere, and no widgets in papermill runs."""
from __future__ import annotations

import json

import nbformat
import pytest

from helpers.progress import Progress, track

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_text_lines_every_n_steps_and_at_the_end(capsys):
    bar = Progress(10, "fit", every=3, mode="text")
    for step in range(1, 11):
        bar.update(step, {"loss": 1.0 / step, "kl": 12345.678})
    bar.close()
    assert capsys.readouterr().out.splitlines() == [
        "[fit] step 3/10  loss 0.3333 kl 1.235e+04",
        "[fit] step 6/10  loss 0.1667 kl 1.235e+04",
        "[fit] step 9/10  loss 0.1111 kl 1.235e+04",
        "[fit] step 10/10  loss 0.1 kl 1.235e+04",
    ]


def test_default_every_is_a_quarter_and_start_offset(capsys):
    with Progress(20, "g", start=3, mode="text") as bar:  # a handful of milestones, not one line per step
        for step in range(4, 21):
            bar.update(step)
    assert capsys.readouterr().out.splitlines() == ["[g] step 5/20", "[g] step 10/20", "[g] step 15/20",
                                                    "[g] step 20/20"]
    assert bar.step == 20


def test_small_totals_print_every_step(capsys):
    bar = Progress(3, "s", mode="text")
    for step in (1, 2, 3):
        bar.update(step)
    assert capsys.readouterr().out.splitlines() == ["[s] step 1/3", "[s] step 2/3", "[s] step 3/3"]


def test_disabled_prints_nothing(capsys):
    bar = Progress(10, "quiet", every=1, mode="text", enabled=False)
    for step in range(1, 11):
        bar.update(step)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_headless_default_is_text(capsys):
    bar = Progress(4, "auto")  # outside any kernel: headless
    assert bar.mode == "text" and bar._bar is None
    bar.update(4)
    assert capsys.readouterr().out == "[auto] step 4/4\n"


def test_track_prints_and_yields_everything(capsys):
    assert list(track(range(5), "items", every=2)) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().out.splitlines() == ["[items] step 2/5", "[items] step 4/5", "[items] step 5/5"]


def test_bar_mode_outside_a_notebook_uses_plain_tqdm(capsys):
    import tqdm
    import tqdm.notebook

    bar = Progress(5, "bar", mode="bar")
    assert type(bar._bar) is tqdm.tqdm and not isinstance(bar._bar, tqdm.notebook.tqdm)
    for step in range(1, 6):
        bar.update(step, {"loss": 0.5})
    assert bar._bar.n == 5
    bar.close()
    bar.close()  # closing twice is harmless
    captured = capsys.readouterr()
    assert captured.out == "" and "5/5" in captured.err and "loss 0.5" in captured.err


def test_bad_mode():
    with pytest.raises(ValueError, match="mode='widget'"):
        Progress(3, "x", mode="widget")


def test_train_prints_plain_lines(tmp_path, capsys):
    import torch
    from torch import nn

    from helpers.train import Phase, TrainSpec, train

    def loss(nets, batch, step):
        return nets["w"].weight.pow(2).sum() * 0 + torch.tensor(float(step)), {"step_loss": step}

    spec = TrainSpec(name="lines", config={}, build=lambda: {"w": nn.Linear(1, 1)},
                     optimizers=lambda nets: {"o": torch.optim.SGD(nets["w"].parameters(), lr=0.1)},
                     phases=[Phase("p", loss, "o")], steps=4, batch_size=1, seed=0, precision="fp32")
    train(spec, cache_dir=tmp_path)
    assert capsys.readouterr().out.splitlines() == [
        "[lines] step 1/4  step_loss 0", "[lines] step 2/4  step_loss 1", "[lines] step 3/4  step_loss 2",
        "[lines] step 4/4  step_loss 3"]
    train(spec, cache_dir=tmp_path)  # a cache hit shows nothing
    assert capsys.readouterr().out == ""


NOTEBOOK_CELL = '''\
import torch
from torch import nn
from helpers import config
from helpers.progress import Progress, track
from helpers.train import Phase, TrainSpec, train

print("headless", config.is_headless(), "kernel", config.in_notebook_kernel())
with Progress(6, "manual", every=2) as bar:
    for step in range(1, 7):
        bar.update(step)
total = sum(track(range(3), "track"))

def loss(nets, batch, step):
    value = (nets["lin"](batch["x"]) - 1).pow(2).mean()
    return value, {}

class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        return {"x": torch.full((2,), float(i))}

spec = TrainSpec(name="nb", config={}, build=lambda: {"lin": nn.Linear(2, 1)},
                 optimizers=lambda nets: {"o": torch.optim.SGD(nets["lin"].parameters(), lr=0.01)},
                 phases=[Phase("fit", loss, "o")], steps=3, batch_size=4, seed=seed, data=Data(), precision="fp32")
trained = train(spec, cache_dir="cache")
print("steps", trained.steps, "seed", seed)
'''


def test_papermill_run_leaves_no_widgets(tmp_path):
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    src, out = tmp_path / "progress.ipynb", tmp_path / "progress.out.ipynb"
    nbformat.write(nb, src)
    # BOOK_HEADLESS is not "1" here (see conftest): the kernel must notice papermill's injected parameters itself
    pm.execute_notebook(str(src), str(out), parameters={"seed": 2}, kernel_name="python3", cwd=str(tmp_path),
                        progress_bar=False)
    text = out.read_text()
    assert WIDGET_MIME not in text
    executed = nbformat.read(out, as_version=4)
    assert "widgets" not in executed.metadata
    outputs = executed.cells[-1].outputs
    assert {o.output_type for o in outputs} == {"stream"}
    printed = "".join(o.text for o in outputs if o.name == "stdout")
    assert printed.splitlines() == [
        "headless True kernel True",
        "[manual] step 2/6", "[manual] step 4/6", "[manual] step 6/6",
        "[track] step 1/3", "[track] step 2/3", "[track] step 3/3",
        "[nb] step 1/3", "[nb] step 2/3", "[nb] step 3/3",
        "steps 3 seed 2",
    ]
    assert not [o for o in outputs if o.name == "stderr"]
    assert json.loads(text)["cells"][1]["metadata"]["tags"] == ["injected-parameters"]


def test_jupyterlab_bar_is_html_updated_in_place_and_survives_a_save(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "import time\nfrom helpers.progress import Progress\n"
        "with Progress(50, 'fit') as bar:\n"
        "    for step in range(1, 51):\n"
        "        time.sleep(0.01)\n"
        "        bar.update(step, {'loss': 1 / step})\n")]
    monkeypatch.setenv("BOOK_HEADLESS", "0")  # as in JupyterLab: a person is looking
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"]  # one output, redrawn in place
    data = outputs[0].data
    assert WIDGET_MIME not in data and "widgets" not in nb.metadata
    assert data["text/plain"].startswith("fit: 50/50 steps") and data["text/plain"].endswith("loss 0.02")
    assert '<progress value="50" max="50"' in data["text/html"]
