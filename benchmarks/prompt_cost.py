"""What a further prompt costs: K prompts in one ``segment`` run against K one-prompt runs.

For each model (``tiny`` DiffRIS and ``rsrefseg-tiny`` by default) on the same scene (a crop of
``examples/scene.tif``), torch pinned to one thread, this times K = 1, 2, 4, 8 prompts in one run
against K runs of one prompt each, and prints K, one run (s), K runs (s) and their ratio. A run
is what ``diffris segment`` does once its model is loaded: the prompts' text features, then the
scene through the library's segment path (``segment_scene``: read, tile, image features once per
tile, one decode per (tile, prompt), stitch, write). The model is loaded once per process, so
these columns leave the load out; the last three columns add the measured load time
(``load_model`` in a fresh process, imports excluded, fingerprint cache warm) to every run, as
each CLI run pays it.

It then splits one 512² tile's cost into its stages (image encoding once per tile; text and
decode per prompt), the floor the ratio approaches: (encode + K decode) / (K (encode + decode)).
``--real-sizes`` adds the same table and split for ``rsrefseg-b``'s real sizes (SigLIP so400m and
SAM ViT-B, built on ``meta`` and filled with random weights: the arithmetic of the real model) on
one 512² tile, each run once (about 6 minutes here); ``--models ""`` runs only that.

Usage: ``python benchmarks/prompt_cost.py [--models tiny,rsrefseg-tiny] [--size 1024]
[--repeats 3] [--real-sizes]``. Each figure is the fastest of ``--repeats`` runs (the stage
split: of at least 3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SCENE = Path(__file__).resolve().parent.parent / "examples" / "scene.tif"
PROMPTS = [
    "the red roofs",
    "the ponds",
    "the roads",
    "the blue vehicles",
    "the green fields",
    "the buildings next to the road",
    "the large pond",
    "the vehicles on the road",
]
COUNTS = (1, 2, 4, 8)


def crop(scene: Path, size: int, out: Path) -> Path:
    """The top-left ``size`` x ``size`` window of ``scene`` as a GeoTIFF (tags kept)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(scene) as source:
        window = Window(0, 0, min(size, source.width), min(size, source.height))
        profile = source.profile | {
            "width": int(window.width),
            "height": int(window.height),
            "transform": source.window_transform(window),
        }
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(source.read(window=window))
            dst.update_tags(**source.tags())
    return out


def one_run(model, texts: list[str], scene: Path, out: Path, model_id: str) -> float:
    """Seconds of one ``segment`` run of ``texts`` on ``scene`` with a loaded model."""
    import torch

    from diffris.data.prompts import prompts_from_texts
    from diffris.inference.predictor import ModelPredictor
    from diffris.inference.segment import SegmentOptions, segment_scene

    started = time.perf_counter()
    prompts = prompts_from_texts(texts)
    predictor = ModelPredictor(model, prompts, device=torch.device("cpu"))
    segment_scene(
        scene, out, predictor, prompts, SegmentOptions(), model_id=model_id, overwrite=True
    )
    return time.perf_counter() - started


def stage_split(model, tile: int, repeats: int) -> tuple[float, float, float]:
    """Seconds of one tile's image encoding, one prompt's text encoding and one decode."""
    import torch

    from diffris.models.interface import first_rows

    pixels = torch.rand(1, 3, tile, tile) * 2 - 1
    best = [float("inf")] * 3
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            image = model.encode_image(pixels)
            encoded = time.perf_counter()
            text = model.encode_text([PROMPTS[0]])
            texted = time.perf_counter()
            model.decode(first_rows(image, 1), text)
            decoded = time.perf_counter()
            times = (encoded - started, texted - encoded, decoded - texted)
            best = [min(b, t) for b, t in zip(best, times, strict=True)]
    return best[0], best[1], best[2]


def measure(label: str, model, scene: Path, work: Path, repeats: int, load: float | None) -> None:
    """Print one model's table (``load``: seconds of a fresh ``load_model``, None if unknown)."""
    one_run(model, PROMPTS[:1], scene, work / "warm.tif", label)  # first-call costs
    loaded = f"model load {load:.2f} s per run" if load is not None else "no load: random weights"
    print(f"\n{label} ({loaded})")
    print(f"{'':>15}{'model loaded once':^26}  {'+ load per run (CLI)':^26}")
    print(f"{'K':>2}  {'one run s':>9}  {'K runs s':>8}  {'ratio':>5}  ", end="")
    print(f"{'one run s':>9}  {'K runs s':>8}  {'ratio':>5}")
    # Each prompt's one-prompt run, fastest of ``repeats``; "K runs" sums the first K of them.
    alone = [
        min(one_run(model, [text], scene, work / f"p{i}.tif", label) for _ in range(repeats))
        for i, text in enumerate(PROMPTS[: max(COUNTS)])
    ]
    for count in COUNTS:
        together = min(
            one_run(model, PROMPTS[:count], scene, work / "k.tif", label) for _ in range(repeats)
        )
        apart = sum(alone[:count])
        print(f"{count:>2}  {together:>9.2f}  {apart:>8.2f}  {together / apart:>5.2f}  ", end="")
        if load is None:
            print(f"{'':>9}  {'':>8}  {'':>5}")
            continue
        loaded_one, loaded_k = together + load, apart + count * load
        print(f"{loaded_one:>9.2f}  {loaded_k:>8.2f}  {loaded_one / loaded_k:>5.2f}")
    print_split(label, model, max(3, repeats))


def fresh_load_seconds(preset: str) -> float:
    """Seconds of ``load_model(preset)`` in a fresh process (imports excluded, the fingerprint
    cache warm): what each CLI run pays before its first tile."""
    import subprocess
    import sys

    code = (
        "import time, torch; torch.set_num_threads(1); "
        "from diffris.models.loading import load_model; t = time.perf_counter(); "
        f"load_model({preset!r}); print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def print_split(label: str, model, repeats: int) -> None:
    """Print one 512² tile's stage times and the K = 8 floor they give."""
    encode, text, decode = stage_split(model, 512, repeats)
    floor = (encode + 8 * decode) / (8 * (encode + decode))
    print(
        f"{label}, per 512² tile: image encoding {encode:.3f} s, decode {decode:.3f} s per "
        f"prompt (text {text:.3f} s per prompt, once per run); K=8 floor {floor:.2f}"
    )


def real_size_model(preset: str, device: str = "cpu"):
    """``preset``'s architecture at its real sizes with random weights on ``device``, frozen
    (timing only; ``benchmarks/gpu.py`` and ``feature_cache.py`` use it too)."""
    import torch

    from diffris.models.registry import build_on_meta

    model = build_on_meta(preset).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02, generator=generator)
            else:
                tensor.zero_()
    return model.requires_grad_(False).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,rsrefseg-tiny")
    parser.add_argument("--scene", type=Path, default=SCENE)
    parser.add_argument("--size", type=int, default=1024, help="crop side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-sizes", action="store_true", help="add rsrefseg-b's split")
    args = parser.parse_args()

    import torch

    from diffris.models.loading import load_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        scene = crop(args.scene, args.size, work / "scene.tif")
        print(
            f"{args.scene.name}, top-left {args.size}² crop, tile 512, overlap 64, batch 4, "
            "1 torch thread, CPU; fastest of "
            f"{args.repeats}"
        )
        for preset in args.models.split(","):
            if preset:
                model = load_model(preset).eval()
                measure(preset, model, scene, work, args.repeats, fresh_load_seconds(preset))
        if args.real_sizes:
            # One 512² tile: each run pays SAM ViT-B and SigLIP so400m once (~25 s here).
            tile = crop(args.scene, 512, work / "tile.tif")
            model = real_size_model("rsrefseg-b")
            measure("rsrefseg-b sizes, random weights, 512² crop", model, tile, work, 1, None)


if __name__ == "__main__":
    main()
