"""data_scripts/gpu_check.py: exits 0 without CUDA; its DDP part trains in lockstep under torchrun (gloo here)."""
import torch

from tests.data_scripts.layouts import load_script

check = load_script("gpu_check")


def test_without_cuda_it_says_so_and_exits_0(capsys, tmp_path):
    if torch.cuda.is_available():
        return  # on a GPU machine the check runs for real (make gpu-check)
    assert check.main(["--out", str(tmp_path)]) == 0
    assert "no CUDA device on this machine" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_ddp_part_passes_with_two_cpu_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    result = check.check_ddp(tmp_path, 2, backend="gloo")
    assert result["status"] == "passed", result["tail"]
    assert result["detail"].startswith("2 process(es), backend gloo")
    wrong = check.check_ddp(tmp_path, 2, backend="nccl")  # the same run judged against the GPU's backend
    assert wrong["status"].startswith("failed: backends ['gloo', 'gloo']")


def test_ddp_part_joins_a_process_group_with_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    result = check.check_ddp(tmp_path, 1, backend="gloo")  # a machine with one GPU runs one process
    assert result["status"] == "passed", result["tail"]
    assert result["detail"].startswith("1 process(es), backend gloo")


def test_report_lists_every_part():
    device = {"name": "Some GPU", "memory_gib": 80.0, "gemm_fp32": 50000.0, "gemm_bf16": 700000.0}
    results = [{"part": "ddp", "status": "passed", "seconds": 12.3, "detail": "1 process(es)", "tail": ["ok"]},
               {"part": "chapters", "status": "stopped after its limit of 300 s", "seconds": 300.0, "tail": []}]
    text = check.report(results, device)
    assert "| ddp | passed | 12 | 1 process(es) |" in text and "| chapters | stopped after its limit of 300 s |" in text
    assert "Some GPU (80 GiB)" in text and "bf16 700000" in text
