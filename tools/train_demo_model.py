"""Train a demo model (examples/models/demo*/): a tiny preset on synthetic aerial scenes.

    python tools/train_demo_model.py [--preset tiny|rsrefseg-tiny] [--work DIR] [--epochs N]

Each preset has its recipe (:data:`RECIPES`: output folder, epochs, lr, tile, scenes, prompts,
loss); every option on the command line overrides it. ``tiny`` writes ``examples/models/demo``
(DiffRIS), ``rsrefseg-tiny`` writes ``examples/models/demo-rsrefseg`` (RSRefSeg).

1. Writes synthetic georeferenced scenes with seeds the example scene does not use (seed 7 is
   the example's): ``--train-scenes`` to train on, one to validate on, each with a ground-truth
   mask for every default scene prompt ("the red roofs", "the ponds", "the roads", ...).
2. Cuts them into 256 px tiles (``--tile``) at native scale (the objects keep the size they have
   in a 512 px inference tile) and writes (tile, prompt, mask) samples in the RISBench layout,
   (only the recipe's ``--prompts``), keeping a quarter of the training pairs whose mask is empty (``--keep-empty``) and listing
   four times each pair whose tile shows look-alikes of its objects (``--lookalike-repeats``: a
   river tile for "the ponds").
3. Trains the preset with ``diffris.train.train`` and saves to ``--out`` (``save_trained``) the
   run's model folder ``--keep`` names: ``tiny`` keeps the epoch with the best validation score
   (``--select-by`` oIoU); ``rsrefseg-tiny`` keeps the final stochastic weight average of
   epochs 12-18 (``--average-from 12 --keep last``). ``tiny``: a decoder context block
   (``--context-layers``: a pond and a river share a colour and differ only in shape, which the
   paper's decoder cannot see from random frozen features; see benchmarks/context_probe.py),
   cached latents, 256 px tiles. ``rsrefseg-tiny``: LoRA in its image encoders (no latent cache),
   a context block on SAM's embedding and fixed text features (``--model-option``), pairs of
   few-pixel objects listed four times (``--small-repeats``); 512 px tiles, the tile size of
   inference: SAM sees every tile at 1024² whatever its size, so a 256 px tile would show the
   objects twice as large as at inference, for the same cost.

Prints the validation scores and the CPU time. Everything is seeded: the same command writes the
same data; the weights are reproducible on the same torch build and thread count (the default,
one thread, is how the committed model was trained).
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import yaml
from PIL import Image

from diffris.data.synthetic import DEFAULT_PROMPTS, write_scene
from diffris.models.checkpoint import load_trained, read_metadata, save_trained
from diffris.models.diffris.tiny import tiny_head_configs
from diffris.train import LaunchOptions, TrainConfig, train
from diffris_cli.train import parse_model_options

REPO = Path(__file__).resolve().parents[1]
TILE = 256
#: Seeds of the training scenes (consecutive from here) and of the validation scene; the example
#: scene uses seed 7, so neither sees it.
TRAIN_SEED = 101
VAL_SEED = 202
#: Share of a tile's pixels that must look like the prompt's objects, outside its mask, for the
#: (tile, prompt) pair to count as a look-alike pair.
LOOKALIKE_SHARE = 0.02
#: Share of a tile's pixels below which a non-empty mask counts as small objects (a few vehicles
#: cover 0.5 % of a 512 px tile) for ``--small-repeats``.
SMALL_SHARE = 0.01
#: Largest per-band standard deviation of a prompt's object pixels for them to count as one colour.
MAX_COLOUR_SD = 12.0
#: The example scene's prompts (examples/prompts.yaml), what benchmarks/demo_scene.py scores.
EXAMPLE_PROMPTS = ("the red roofs", "the ponds", "the roads", "the blue vehicles")

#: Each preset's recipe: the defaults of the command-line options (``context_layers`` None: the
#: preset's decoder as built; ``cache_latents`` only where the image features are frozen).
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "out": REPO / "examples" / "models" / "demo",
        "epochs": 20,
        "train_scenes": 6,
        "tile": TILE,
        "prompts": DEFAULT_PROMPTS,
        "lr": 3e-3,
        "weight_decay": 0.01,
        "bce_weight": 1.0,
        "dice_weight": 1.0,
        "context_layers": 4,
        "cache_latents": True,
        "select_by": "oIoU",
        "model_option": {},
        "small_repeats": 0,
        "val_size": 1024,
        "average_from": None,
        "keep": "best",
    },
    "rsrefseg-tiny": {
        "out": REPO / "examples" / "models" / "demo-rsrefseg",
        # the committed demo-rsrefseg (2,833 s CPU): the mean of the weights at the ends of
        # epochs 12-18; val mIoU 53.9, oIoU 83.4 (the best validated epoch, 9: mIoU 54.4)
        "epochs": 18,
        "train_scenes": 6,
        "tile": 512,
        "prompts": EXAMPLE_PROMPTS,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "bce_weight": 1.0,
        "dice_weight": 1.0,
        "context_layers": None,
        "cache_latents": False,
        "select_by": "mIoU",
        # a context block on SAM's embedding (a pond and a river differ only in shape) and
        # fixed text features (LoRA in the text tower pulled two prompts onto one mask)
        "model_option": {"context_layers": 4, "text_lora": False},
        # vehicles cover 0.5 % of a tile: listed four times, they get a say in the loss
        "small_repeats": 4,
        # 64 validation pairs: 16 picked the best epoch by chance
        "val_size": 2048,
        # stochastic weight averaging over the last 7 epochs, and that average kept, as SWA
        # keeps its final average: the epochs' own weights swing (vehicles 0.58-0.70 on the
        # example scene over epochs 13-18), and the epoch validation picked (9) had 0.62
        "average_from": 12,
        "keep": "last",
    },
}


def cut_scene(
    scene: Path,
    prompts_file: Path,
    truth: Path,
    out: Path,
    prefix: str,
    *,
    tile: int = TILE,
    keep_empty: float = 1.0,
    lookalike_repeats: int = 0,
    small_repeats: int = 0,
    seed: int = 0,
) -> list[str]:
    """Write ``tile`` px tiles of ``scene`` and one mask per (tile, prompt); the phrase lines.

    A (tile, prompt) pair whose mask is empty is kept with probability ``keep_empty``: a few teach
    the model to answer "nothing here", but at the 70 % they make up of all pairs they taught it
    to answer nothing at all (per-sample Dice scores an empty prediction of an empty mask 1).

    With ``lookalike_repeats`` ≥ 1, a pair whose tile shows look-alikes (at least
    :data:`LOOKALIKE_SHARE` of its pixels outside the mask have the colour of the prompt's
    objects, e.g. a river for "the ponds") is always kept and listed that many times: such pairs
    are rare (one river crosses a scene) and they are the only ones that teach the model what
    the colour alone cannot. With ``small_repeats`` ≥ 2, a pair whose mask covers less than
    :data:`SMALL_SHARE` of its tile (a few vehicles) is listed that many times (the larger of
    the two counts where both apply): so few pixels are otherwise too little of the loss.
    """
    rng = np.random.default_rng(seed)
    entries = yaml.safe_load(prompts_file.read_text())
    with rasterio.open(scene) as source:
        image = np.moveaxis(source.read(), 0, 2)
    masks = {}
    for entry in entries:
        with rasterio.open(truth / f"{entry['id']}.tif") as source:
            masks[entry["id"]] = source.read(1) > 0
    # the colour test costs a pass over every (tile, prompt): only when look-alikes are wanted
    colours = (
        {key: object_colour(image, mask) for key, mask in masks.items()}
        if lookalike_repeats
        else {}
    )
    lines = []
    height, width = image.shape[:2]
    for row in range(0, height - tile + 1, tile):
        for col in range(0, width - tile + 1, tile):
            pixels = image[row : row + tile, col : col + tile]
            for entry in entries:
                mask = masks[entry["id"]][row : row + tile, col : col + tile]
                hard = bool(colours) and (
                    (colours[entry["id"]](pixels) & ~mask).mean() >= LOOKALIKE_SHARE
                )
                if not hard and not mask.any() and rng.random() >= keep_empty:
                    continue
                small = bool(mask.any()) and mask.mean() < SMALL_SHARE
                repeats = max(lookalike_repeats if hard else 1, small_repeats if small else 1)
                name = f"{prefix}_{row // tile:02d}_{col // tile:02d}_{entry['id']}.png"
                Image.fromarray(pixels).save(out / "img_rgb" / name, compress_level=1)
                Image.fromarray(mask.astype(np.uint8) * 255).save(out / "mask" / name)
                lines += [f"{name} {entry['text']}"] * repeats
    return lines


def object_colour(image: np.ndarray, mask: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A test for "has the colour of the masked objects": within 2 sd (+4) of their mean, per band.

    Only for objects of one colour (every band's sd at most :data:`MAX_COLOUR_SD`); for mixed
    ones ("the buildings") it matches nothing. On the synthetic scenes it matches 94 % of pond
    pixels, 98 % of river pixels and no other object's (ponds and rivers share one renderer).
    """
    objects = image[mask].astype(np.float32)
    if not len(objects) or objects.std(axis=0).max() > MAX_COLOUR_SD:
        return lambda pixels: np.zeros(pixels.shape[:2], dtype=bool)
    mean, tolerance = objects.mean(axis=0), 2 * objects.std(axis=0) + 4

    def matches(pixels: np.ndarray) -> np.ndarray:
        return (np.abs(pixels.astype(np.float32) - mean) < tolerance).all(axis=-1)

    return matches


def write_tiles(
    work: Path,
    *,
    train_scenes: int,
    train_size: int,
    val_size: int,
    keep_empty: float,
    lookalike_repeats: int = 0,
    small_repeats: int = 0,
    tile: int = TILE,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
) -> Path:
    """The RISBench-layout dataset of scene tiles under ``work/data`` (pairs of ``prompts``)."""
    data = work / "data"
    for sub in ("img_rgb", "mask"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    scenes = [("train", TRAIN_SEED + k, train_size) for k in range(train_scenes)]
    for number, (split, seed, size) in enumerate([*scenes, ("val", VAL_SEED, val_size)]):
        folder = work / f"scene_{number}"
        write_scene(
            folder / "scene.tif",
            size=size,
            seed=seed,
            nodata_border=0,
            prompts=list(prompts),
            max_prompts=len(prompts),
            prompts_out=folder / "prompts.yaml",
            masks_out=folder / "truth",
            overviews=False,
            overwrite=True,
        )
        splits[split] += cut_scene(
            folder / "scene.tif",
            folder / "prompts.yaml",
            folder / "truth",
            data,
            f"s{number}",
            tile=tile,
            # validation keeps every pair: its oIoU then scores whole scenes, empty tiles included
            keep_empty=keep_empty if split == "train" else 1.0,
            lookalike_repeats=lookalike_repeats if split == "train" else 0,
            small_repeats=small_repeats if split == "train" else 0,
            seed=seed,
        )
    splits["test"] = splits["val"]
    for split, lines in splits.items():
        (data / f"output_phrase_{split}.txt").write_text("".join(f"{x}\n" for x in lines))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(RECIPES), default="tiny")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--out", type=Path, default=None, help="model folder (recipe's)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-scenes", type=int, default=None, help="training scenes")
    parser.add_argument("--train-size", type=int, default=2048, help="training scene side, px")
    parser.add_argument("--val-size", type=int, default=None, help="validation scene side, px")
    parser.add_argument(
        "--keep-empty",
        type=float,
        default=0.25,
        help="share of training (tile, prompt) pairs with an empty mask that are kept",
    )
    parser.add_argument(
        "--lookalike-repeats",
        type=int,
        default=4,
        help="times each training pair whose tile shows look-alikes of its objects is listed "
        "(0: no special treatment)",
    )
    parser.add_argument(
        "--small-repeats",
        type=int,
        default=None,
        help=f"times each training pair whose objects cover less than {SMALL_SHARE * 100:g} %% "
        "of its tile is listed (0 or 1: once)",
    )
    parser.add_argument(
        "--context-layers",
        type=int,
        default=None,
        help="3x3 layers of the DiffRIS decoder context block (PCMRDConfig.context_layers; 0: "
        "none)",
    )
    parser.add_argument("--tile", type=int, default=None, help="training tile side, px")
    parser.add_argument("--prompts", nargs="+", default=None, help="prompts to train on (recipe's)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--bce-weight", type=float, default=None)
    parser.add_argument("--dice-weight", type=float, default=None)
    parser.add_argument(
        "--select-by", choices=("oIoU", "mIoU"), default=None, help="best-epoch score (recipe's)"
    )
    parser.add_argument(
        "--model-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a model option, as diffris train --model-option (recipe's)",
    )
    parser.add_argument(
        "--average-from",
        type=int,
        default=None,
        help="validate and keep the mean of the weights at the epoch ends from this epoch on, "
        "as diffris train --average-from (recipe's)",
    )
    parser.add_argument(
        "--keep",
        choices=("best", "last"),
        default=None,
        help="the run's model folder to keep: best/ (best validation score) or last/ (the last "
        "epoch; with --average-from, the final average) (recipe's)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name, value in RECIPES[args.preset].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.prompts = list(args.prompts)
    if isinstance(args.model_option, list):
        args.model_option = parse_model_options(args.model_option)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    scratch = None
    if args.work is None:
        scratch = tempfile.mkdtemp(prefix="diffris-demo-")
        args.work = Path(scratch)
    try:
        data = write_tiles(
            args.work,
            train_scenes=args.train_scenes,
            train_size=args.train_size,
            val_size=args.val_size,
            keep_empty=args.keep_empty,
            lookalike_repeats=args.lookalike_repeats,
            small_repeats=args.small_repeats,
            tile=args.tile,
            prompts=args.prompts,
        )
        decoder = None
        if args.context_layers is not None:
            decoder = tiny_head_configs()[1].replace(context_layers=args.context_layers)
        config = TrainConfig(
            dataset="synthetic",
            data_root=str(data),
            preset=args.preset,
            pcmrd=decoder,
            epochs=args.epochs,
            batch_size=8,
            device_batch=8,
            image_size=args.tile,
            lr=args.lr,
            weight_decay=args.weight_decay,
            bce_weight=args.bce_weight,
            dice_weight=args.dice_weight,
            cache_latents=args.cache_latents,
            # both demo models were trained with the poly schedule (the default before each
            # architecture had its recipe); RSRefSeg's recipe would warm up for 5 epochs
            schedule="poly",
            warmup_epochs=0.0,
            select_by=args.select_by,
            model_options=args.model_option,
            average_from=args.average_from,
            seed=0,
        )
        launch = LaunchOptions(workers=0, threads=args.threads, save_every=0)
        train_started = time.process_time()
        result = train(config, args.work / "run", launch=launch, overwrite=True)
        train_cpu = time.process_time() - train_started
        assert result.best is not None
        kept = args.work / "run" / args.keep
        model = load_trained(kept)
        kept_metadata = read_metadata(kept)
        kept_training, kept_scores = kept_metadata["training"], kept_metadata["metrics"]
        metadata = {
            "description": f"demo model: {args.preset} preset trained on synthetic scenes (see "
            "tools/train_demo_model.py); not a real-imagery model",
            "training": {
                "script": "tools/train_demo_model.py",
                **{k: v for k, v in vars(args).items() if k not in ("work", "out")},
                "cpu_s": round(train_cpu),
            },
            # the kept folder's scores, split first as there, named for this dataset
            "metrics": {**kept_scores, "split": "val (synthetic scene tiles)"},
        }
        metadata["training"] = {k: str(v) for k, v in metadata["training"].items()}
        save_trained(model, args.out, metadata=metadata, overwrite=True)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    scores = kept_scores
    usage = resource.getrusage(resource.RUSAGE_SELF)
    averaged = kept_training.get("averaged_epochs")
    which = (
        f"the mean of epochs {averaged[0]}-{averaged[1]}"
        if averaged
        else f"epoch {kept_training['epoch']}"
    )
    print(
        f"wrote {args.out} ({args.keep}/: {which} of {args.epochs}; best validated epoch "
        f"{result.best['epoch']})"
    )
    print(
        f"validation: oIoU {scores['oIoU']:.2f}, mIoU {scores['mIoU']:.2f}, "
        f"Pr@0.5 {scores['Pr@0.5']:.2f} over {scores['n']} tile-prompt pairs"
    )
    print(
        f"time: {time.perf_counter() - started:.0f} s wall, training {train_cpu:.0f} s CPU, "
        f"total {time.process_time() - cpu_started:.0f} s CPU "
        f"({usage.ru_utime + usage.ru_stime:.0f} s incl. children)"
    )


if __name__ == "__main__":
    main()
