"""``benchmarks/gpu.py`` runs end to end: its ``--device cpu --smoke`` mode, in a real process.

The script is written for a lent CUDA machine, where nobody can fix it mid-run; this runs the
same code on the tiny presets so that a broken import, option or table shows here first.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_smoke_run_prints_every_table_and_writes_them_as_json(tmp_path):
    out = tmp_path / "gpu.json"
    done = run_script("--device", "cpu", "--smoke", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in ("matmul 256³", "GFLOP", "tiles/s", "% peak", "samples/s"):
        assert heading in done.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["errors"] == [] and "FAILED" not in done.stdout
    models = ["tiny", "rsrefseg-tiny"]
    assert [row["model"] for row in report["flops"]] == models
    assert all(row["image"] > 0 and row["decode"] > 0 for row in report["flops"])
    settings = [
        (row["model"], row["prompts"], row["batch"], row["micro_batch"])
        for row in report["segment"]
    ]
    # (model, prompts, batch, micro-batch): 1 and 2 prompts, then the first model's batch of
    # half a micro-batch, padded and not (the NCHW row is CUDA's alone)
    assert settings == [
        ("tiny", 1, 2, 2),
        ("tiny", 2, 2, 2),
        ("tiny", 1, 1, 2),
        ("tiny", 1, 1, 1),
        ("rsrefseg-tiny", 1, 2, 2),
        ("rsrefseg-tiny", 2, 2, 2),
    ]
    assert all(row["tiles_per_s"] > 0 and row["tflops"] > 0 for row in report["segment"])
    assert {row["latents"] for row in report["training"]} == {"VAE", "cached"}
    assert all(row["samples_per_s"] > 0 for row in report["training"])
    assert "sdpa" in report["environment"]["attention"]["rsrefseg-tiny"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_one_fails_in_one_line():
    done = run_script("--device", "cuda", "--no-train")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --device cuda is not available: this machine has 0 CUDA device(s); use "
        "--device cpu or auto"
    ]
