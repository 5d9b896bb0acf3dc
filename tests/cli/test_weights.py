"""``diffris weights download sd15`` through huggingface_hub's real cache, offline; ``info``.

The Hub cache is built as huggingface_hub lays it out (``models--org--name/blobs``,
``snapshots/<commit>/...`` symlinks, ``refs/main``) from the tiny preset saved in the diffusers
layout, and the command runs in a subprocess with ``HF_HUB_OFFLINE=1`` (huggingface_hub reads
it at import), so the real ``snapshot_download`` answers from the cache and nothing leaves the
machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffris.errors import WeightsNotFoundError
from diffris.models.diffris.backbone import load_sd_components, save_sd_components
from diffris.models.diffris.build import resolve_sd15
from diffris.models.diffris.tiny import build_tiny_components, tiny_component_configs
from diffris.paths import SD15_REPO_ID
from diffris_cli.app import app

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PICKLES = ("unet/diffusion_pytorch_model.bin", "v1-5-pruned-emaonly.ckpt")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    """The tiny preset's VAE, UNet, text model and tokenizer in the diffusers layout."""
    return save_sd_components(build_tiny_components(), tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, saved_tiny) -> Path:
    """A Hugging Face cache holding the tiny copy as SD-1.5's repository, plus two pickles."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    repo = cache / f"models--{SD15_REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    files = {
        p.relative_to(saved_tiny).as_posix(): p.read_bytes()
        for p in saved_tiny.rglob("*")
        if p.is_file()
    }
    # the tokenizer as SD-1.5's repository has it (vocabulary and merges, no tokenizer.json)
    files = {name: data for name, data in files.items() if not name.startswith("tokenizer/")}
    bundled = Path(__file__).parents[2] / "diffris" / "assets" / "clip_tokenizer"
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        files[f"tokenizer/{name}"] = (bundled / name).read_bytes()
    files |= {name: b"pickled, never to be copied" for name in PICKLES}
    files["model_index.json"] = b'{"_class_name": "StableDiffusionPipeline"}'
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def diffris(*args: str, cache: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DIFFRIS_"))}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "DIFFRIS_HOME": str(home)}
    command = [sys.executable, "-m", "diffris_cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_download_materialises_the_folder_that_info_and_segment_then_find(
    tmp_path, monkeypatch, hub_cache
):
    home = tmp_path / "home"
    done = diffris("weights", "download", "sd15", cache=hub_cache, home=home)
    assert done.returncode == 0, done.stderr
    folder = home / "stable-diffusion-v1-5"
    assert f"{SD15_REPO_ID}@{COMMIT[:12]}) written to {folder}" in done.stdout
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "unet/diffusion_pytorch_model.safetensors" in names
    assert "text_encoder/model.safetensors" in names and "tokenizer/vocab.json" in names
    assert not any(name.endswith((".bin", ".ckpt")) for name in names)  # never a pickle
    assert not any(p.is_symlink() for p in folder.rglob("*"))  # real files, not cache links
    assert sorted(p.name for p in home.iterdir()) == ["stable-diffusion-v1-5"]  # no staging

    monkeypatch.setenv("DIFFRIS_HOME", str(home))
    monkeypatch.delenv("DIFFRIS_SD15", raising=False)
    report = json.loads(CliRunner().invoke(app, ["info", "--json"]).stdout)
    assert report["stable_diffusion"][-1] == {
        "path": str(folder),
        "found": True,
        "missing": [],
        "problems": [],
        "status": "found",
    }
    assert resolve_sd15(None, allow_download=False) == folder  # what segment/train load
    loaded = load_sd_components(folder)
    assert (
        loaded.unet.config["block_out_channels"]
        == tiny_component_configs()["unet"]["block_out_channels"]
    )

    again = diffris("weights", "download", "sd15", cache=hub_cache, home=home)
    assert again.returncode == 0 and "already holds Stable Diffusion 1.5" in again.stdout


def test_offline_without_the_cache_fails_with_one_line(tmp_path):
    home = tmp_path / "home"
    done = diffris("weights", "download", "sd15", cache=tmp_path / "empty", home=home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [
        f"error: cannot fetch {SD15_REPO_ID}: the Hugging Face Hub is not reachable (or "
        "HF_HUB_OFFLINE=1) and the files are not in the Hugging Face cache; connect to the "
        "network and run it again, or pass --pretrained DIR with a local copy"
    ]
    assert not home.exists() or not list(home.iterdir())


def test_weights_not_found_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path))
    monkeypatch.delenv("DIFFRIS_SD15", raising=False)
    with pytest.raises(WeightsNotFoundError, match="run 'diffris weights download sd15' to fetch"):
        resolve_sd15(None, allow_download=False)
    result = CliRunner().invoke(app, ["info"], env={"COLUMNS": "300"})
    assert "run 'diffris weights download sd15'" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sd21"], "unknown weights 'sd21'; choose one of: sd15, siglip, sam-b, sam-l"),
        (["sd15", "--variant", "x"], "--variant"),
        (["siglip", "--variant", "fp16"], "--variant fp16 applies to sd15 only"),
        (["sam-l", "--variant", "fp16"], "sam-l is fetched as float32"),
    ],
)
def test_an_unknown_name_or_variant_is_one_line(tmp_path, monkeypatch, args, expected):
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["weights", "download", *args])
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
    assert not (tmp_path / "home").exists()  # refused before anything is fetched or written


def _cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """``files`` as huggingface_hub lays a cached snapshot out (blobs, symlinks, refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def _sam_config(hidden_size: int, layers: int) -> bytes:
    vision = {"hidden_size": hidden_size, "num_hidden_layers": layers}
    return json.dumps({"model_type": "sam", "vision_config": vision}).encode()


@pytest.fixture(scope="module")
def rsrefseg_cache(tmp_path_factory) -> Path:
    """SigLIP and SAM repositories as the Hub has them (pickles and TF weights beside the
    safetensors); the ViT-L repository wrongly holds a ViT-B config."""
    cache = tmp_path_factory.mktemp("hf-rsrefseg") / "hub"
    siglip = {"model_type": "siglip", "text_config": {"hidden_size": 8}}
    siglip["vision_config"] = {"hidden_size": 8}
    common = {"model.safetensors": b"safe", "pytorch_model.bin": b"pickle", "README.md": b"#"}
    _cache_repo(
        cache,
        "google/siglip-so400m-patch14-384",
        {
            **common,
            "config.json": json.dumps(siglip).encode(),
            "spiece.model": b"sentencepiece",
            "tokenizer_config.json": b"{}",
            "special_tokens_map.json": b"{}",
            "preprocessor_config.json": b"{}",
        },
    )
    sam = {**common, "tf_model.h5": b"tf", "preprocessor_config.json": b"{}"}
    _cache_repo(cache, "facebook/sam-vit-base", {**sam, "config.json": _sam_config(768, 12)})
    _cache_repo(cache, "facebook/sam-vit-large", {**sam, "config.json": _sam_config(768, 12)})
    return cache


def test_rsrefseg_downloads_land_where_resolve_folders_looks(tmp_path, monkeypatch, rsrefseg_cache):
    from diffris.models.rsrefseg.folders import resolve_folders

    home = tmp_path / "home"
    for name, folder, names in (
        (
            "siglip",
            "siglip-so400m-patch14-384",
            [
                "config.json",
                "model.safetensors",
                "special_tokens_map.json",
                "spiece.model",
                "tokenizer_config.json",
            ],
        ),
        ("sam-b", "sam-vit-base", ["config.json", "model.safetensors"]),
    ):
        done = diffris("weights", "download", name, cache=rsrefseg_cache, home=home)
        assert done.returncode == 0, done.stderr
        assert f"@{COMMIT[:12]}) written to {home / folder}" in done.stdout
        assert sorted(p.name for p in (home / folder).iterdir()) == names  # never a pickle
    monkeypatch.setenv("DIFFRIS_HOME", str(home))
    monkeypatch.delenv("DIFFRIS_SIGLIP", raising=False)
    monkeypatch.delenv("DIFFRIS_SAM", raising=False)
    assert resolve_folders(None, "rsrefseg-b") == (
        home / "siglip-so400m-patch14-384",
        home / "sam-vit-base",
    )

    wrong = diffris("weights", "download", "sam-l", cache=rsrefseg_cache, home=home)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip() == (
        "error: facebook/sam-vit-large does not hold what diffris loads: it holds SAM ViT-B, "
        "not the ViT-L needed here"
    )
    assert not (home / "sam-vit-large").exists()
    assert sorted(p.name for p in home.iterdir()) == ["sam-vit-base", "siglip-so400m-patch14-384"]

    elsewhere = tmp_path / "mine"
    done = diffris(
        "weights", "download", "sam-b", "-o", str(elsewhere), cache=rsrefseg_cache, home=home
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"pass --pretrained sam={elsewhere} or set DIFFRIS_SAM={elsewhere}"
        in done.stdout.replace("\n", " ")
    )
