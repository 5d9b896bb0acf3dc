"""Can the decoder tell a pond from a river? Probes of the tiny backbone's frozen features.

    python benchmarks/context_probe.py [--train-scenes 6] [--epochs 60] [--threads 2]

Writes synthetic scenes (the demo model's training seeds 101.., its validation seed 202 and the
example scene's seed 7), cuts 512 px tiles (stride 256) that show water, runs the frozen tiny
backbone on them, and trains small probes on the training scenes to label 32 px cells that are at
least 90 % pond or 90 % river. Prints the balanced accuracy (mean of the pond and the river recall)
on the held-out scenes for each input and probe depth:

- ``coarse maps``: the four UNet decoder levels resized to stride 32, what the decoder's fusion
  stages work on;
- ``pooled fine map``: the stride-8 level average-pooled to stride 32, what
  :class:`~diffris.models.diffris.pcmrd.ContextBlock` works on;
- ``water mask``: the true water mask at stride 32 (shape alone; what any probe could reach).

A probe is a 1×1 projection to 64 channels, ``depth`` 3×3 conv-GN-GELU layers, a 1×1 classifier:
depth 0 is a linear probe per cell. This is the measurement behind the tiny preset's
``PCMRDConfig.context_layers``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffris.data.synthetic import DEFAULT_PROMPTS, write_scene
from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.mask_head import group_norm

TILE = 512
CELL = 32
#: A cell is labelled pond (river) when at least this share of it is pond (river).
PURE_SHARE = 0.9
#: Seeds as in tools/train_demo_model.py (training from 101, validation 202) and examples/ (7).
TRAIN_SEED, VAL_SEED, EXAMPLE_SEED = 101, 202, 7

Tile = tuple[list[Tensor], Tensor, Tensor]  # backbone levels, pond share, river share per cell


def scene_tiles(folder: Path, seed: int, size: int, model: nn.Module) -> list[Tile]:
    """Write one scene and return its water-showing tiles' features and cell labels."""
    write_scene(
        folder / "scene.tif",
        size=size,
        seed=seed,
        nodata_border=48 if seed == EXAMPLE_SEED else 0,
        prompts=list(DEFAULT_PROMPTS),
        max_prompts=len(DEFAULT_PROMPTS),
        prompts_out=folder / "prompts.yaml",
        masks_out=folder / "truth",
        overviews=False,
        overwrite=True,
    )
    with rasterio.open(folder / "scene.tif") as source:
        image = np.moveaxis(source.read(), 0, 2)[..., :3]
    truth = {}
    for name in ("ponds", "rivers"):
        with rasterio.open(folder / "truth" / f"{name}.tif") as source:
            truth[name] = source.read(1) > 0
    text = model.encode_text(["the ponds"])
    tiles = []
    for row in range(0, size - TILE + 1, TILE // 2):
        for col in range(0, size - TILE + 1, TILE // 2):
            window = np.s_[row : row + TILE, col : col + TILE]
            if not (truth["ponds"][window].any() or truth["rivers"][window].any()):
                continue
            pixels = torch.from_numpy(image[window]).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                latents = model.encode_image(model.preprocess(pixels))
                levels = model.image_features(latents, text)
            shares = [
                F.avg_pool2d(torch.from_numpy(truth[name][window]).float()[None, None], CELL)[0]
                for name in ("ponds", "rivers")
            ]
            tiles.append(([level[0] for level in levels], *shares))
    return tiles


def coarse_maps(tile: Tile) -> Tensor:
    cells = TILE // CELL
    return torch.cat([F.interpolate(level[None], size=(cells, cells))[0] for level in tile[0]])


def pooled_fine_map(tile: Tile) -> Tensor:
    return F.avg_pool2d(tile[0][-1][None], CELL // 8)[0]  # the finest level is at stride 8


def water_mask(tile: Tile) -> Tensor:
    return tile[1] + tile[2]


def balanced_accuracy(logits: Tensor, pond: Tensor, river: Tensor) -> float | None:
    """Mean of the pond and the river recall; None when a set has no cell of one of them."""
    if not (pond.any() and river.any()):
        return None
    said_pond = logits > 0
    return float((said_pond[pond].float().mean() + (~said_pond[river]).float().mean()) / 2)


def missing_class(tiles: list[Tile]) -> str | None:
    """The class (pond or river) no cell of ``tiles`` shows; a probe cannot learn it."""
    for name, share in (("pond", 1), ("river", 2)):
        if not any(bool((tile[share] > PURE_SHARE).any()) for tile in tiles):
            return name
    return None


def cell(score: float | None, width: int) -> str:
    return f"{score:{width}.3f}" if score is not None else f"{'n/a':>{width}}"


def probe(
    inputs: Callable[[Tile], Tensor],
    depth: int,
    train_tiles: list[Tile],
    held_out: dict[str, list[Tile]],
    *,
    epochs: int,
) -> dict[str, float | None]:
    """Train one probe on ``train_tiles``; its balanced accuracy on each held-out set."""
    torch.manual_seed(0)

    def stack(tiles: list[Tile]) -> tuple[Tensor, Tensor, Tensor]:
        return (
            torch.stack([inputs(t) for t in tiles]),
            torch.stack([t[1] > PURE_SHARE for t in tiles]),
            torch.stack([t[2] > PURE_SHARE for t in tiles]),
        )

    stacked = {name: stack(tiles) for name, tiles in {"train": train_tiles, **held_out}.items()}
    x, pond, river = stacked["train"]
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True) + 1e-6
    width = 64
    layers: list[nn.Module] = [nn.Conv2d(x.shape[1], width, 1)]
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, padding=1), group_norm(width), nn.GELU()]
    net = nn.Sequential(*layers, nn.Conv2d(width, 1, 1))
    optimizer = torch.optim.AdamW(net.parameters(), 3e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 16):
            batch = order[start : start + 16]
            labelled = pond[batch] | river[batch]
            logits = net((x[batch] - mean) / std)[labelled]
            loss = F.binary_cross_entropy_with_logits(logits, pond[batch][labelled].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    scores = {}
    with torch.no_grad():
        for name, (x_, pond_, river_) in stacked.items():
            scores[name] = balanced_accuracy(net((x_ - mean) / std), pond_, river_)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-scenes", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_diffris("tiny").eval()
    with tempfile.TemporaryDirectory(prefix="diffris-probe-") as scratch:
        work = Path(scratch)
        train_tiles = [
            tile
            for k in range(args.train_scenes)
            for tile in scene_tiles(work / f"train{k}", TRAIN_SEED + k, 2048, model)
        ]
        held_out = {
            "val scene": scene_tiles(work / "val", VAL_SEED, 1024, model),
            "example scene": scene_tiles(work / "example", EXAMPLE_SEED, 2048, model),
        }
    if lacking := missing_class(train_tiles):
        parser.error(
            f"the {args.train_scenes} training scene(s) have no {lacking} cell to learn from; "
            "use --train-scenes 2 or more"
        )
    sizes = ", ".join(f"{name} {len(tiles)}" for name, tiles in held_out.items())
    print(f"tiles showing water: train {len(train_tiles)}, {sizes}; {args.epochs} epochs")
    print(f"{'input':>15} | {'depth':>5} | {'train':>5} | {'val scene':>9} | {'example':>7}")
    undefined = False
    for name, inputs, depths in (
        ("coarse maps", coarse_maps, (0, 4)),
        ("pooled fine map", pooled_fine_map, (0, 2, 4)),
        ("water mask", water_mask, (0, 2, 4)),
    ):
        for depth in depths:
            scores = probe(inputs, depth, train_tiles, held_out, epochs=args.epochs)
            print(
                f"{name:>15} | {depth:>5} | {cell(scores['train'], 5)} | "
                f"{cell(scores['val scene'], 9)} | {cell(scores['example scene'], 7)}"
            )
            undefined |= None in scores.values()
    if undefined:
        print("n/a: that set has no pond or no river cell, so balanced accuracy is undefined")


if __name__ == "__main__":
    main()
