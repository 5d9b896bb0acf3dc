"""The synthetic data generator: unambiguous referrals, the three real layouts, georeferenced scenes."""

from __future__ import annotations

import io
import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from PIL import Image
from pycocotools import mask as coco_mask
from rasterio.errors import NotGeoreferencedWarning

from diffris.data.prompts import load_prompts
from diffris.data.synthetic import (
    Category,
    Colour,
    Expression,
    Kind,
    Layout,
    Position,
    Relation,
    SceneObject,
    Size,
    category_names,
    generate_image,
    generate_samples,
    parse,
    resolve,
    split_counts,
    write_dataset,
    write_scene,
)
from diffris.data.synthetic.layout import plan_scene_bands
from diffris.data.synthetic.render import render
from diffris.errors import InputError, OutputExistsError

SIZE = 128
SAMPLES = 12


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _samples(samples: int = SAMPLES, seed: int = 0) -> list[tuple[str, int, object]]:
    """What write_dataset writes, in order, as (split, number, referral)."""
    counts = split_counts(samples, (0.5, 0.25, 0.25))
    return [
        (split, number, referral)
        for split, number, image in generate_samples(counts, size=SIZE, seed=seed, max_referrals=4)
        for referral in image.referrals
    ]


def _write(root: Path, layout: Layout, seed: int = 0) -> object:
    return write_dataset(
        root, layout=layout, samples=SAMPLES, splits=(0.5, 0.25, 0.25), size=SIZE, seed=seed
    )


# --- in-memory generator -------------------------------------------------------------------------


def test_generate_image_is_deterministic_per_seed():
    a, b, c = generate_image(7, SIZE), generate_image(7, SIZE), generate_image(8, SIZE)
    assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
    assert a.image.tobytes() == b.image.tobytes()
    assert [r.sentence for r in a.referrals] == [r.sentence for r in b.referrals]
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize("size", [128, 256])
def test_every_referral_resolves_to_exactly_its_object(size):
    kinds = set()
    for seed in range(10 if size == 128 else 4):
        image = generate_image(seed, size)
        assert image.referrals, "every image has at least one referral"
        targets = [r.object_indices for r in image.referrals]
        assert len(set(targets)) == len(targets), "referrals of an image pick different targets"
        for referral in image.referrals:
            expression = parse(referral.sentence)
            assert expression == referral.expression
            assert resolve(expression, image.objects, image.shape) == referral.object_indices
            union = np.logical_or.reduce([image.objects[i].mask for i in referral.object_indices])
            assert np.array_equal(referral.mask, union)
            assert referral.mask.mean() >= 0.005
            kinds.add(expression.kind)
        # Every object's visible mask is disjoint from the others' (occlusion is resolved).
        coverage = np.sum([o.mask for o in image.objects], axis=0)
        assert coverage.max() <= 1
    assert {Kind.CATEGORY, Kind.COLOUR, Kind.GROUP} & kinds
    assert {Kind.SIZE, Kind.POSITION, Kind.RELATION} & kinds


def test_referral_mix_has_easy_and_hard_kinds():
    kinds = [r.expression.kind for seed in range(30) for r in generate_image(seed, 96).referrals]
    assert set(kinds) == set(Kind)
    easy = sum(k in (Kind.CATEGORY, Kind.COLOUR, Kind.GROUP) for k in kinds) / len(kinds)
    assert 0.3 < easy < 0.7


def test_write_dataset_easy_fraction_sets_the_referral_mix(tmp_path):
    easy_kinds = {Kind.CATEGORY.value, Kind.COLOUR.value, Kind.GROUP.value}
    shares = []
    for fraction in (0.0, 1.0):
        summary = write_dataset(
            tmp_path / str(fraction), layout="risbench", samples=60, size=96, easy_fraction=fraction
        )
        easy = sum(n for kind, n in summary.kinds.items() if kind in easy_kinds)
        shares.append(easy / sum(summary.kinds.values()))
    assert shares[0] < 0.3 < 0.9 < shares[1]


def test_object_scale_draws_objects_at_native_size():
    def median_area(size, scale):
        areas = [
            int(obj.mask.sum())
            for seed in range(12)
            for obj in generate_image(seed, size, object_scale=scale).objects
        ]
        return float(np.median(areas))

    shrunk, native, reference = (
        median_area(256, None),
        median_area(256, 1.0),
        median_area(512, None),
    )
    assert 3.0 < native / shrunk < 5.5  # 2x the side at 256 px: ~4x the area
    assert 0.6 < native / reference < 1.6
    with pytest.raises(InputError, match="object_scale"):
        generate_image(0, 256, object_scale=0.0)


def test_colours_and_textures_separate_the_categories():
    for seed in range(6):
        image = generate_image(seed, 256)
        for o in image.objects:
            r, g, b = (float(v) for v in image.image[o.mask].mean(axis=0))
            if o.colour is Colour.RED:
                assert r > g + 40 and r > b + 40
            elif o.colour is Colour.BLUE:
                assert b > r + 40
            elif o.category in (Category.POND, Category.RIVER):
                assert b > r + 30 and g > r
            elif o.category is Category.TREE:
                assert g > r and g + r + b < 330
            elif o.category is Category.ROAD:
                assert max(r, g, b) - min(r, g, b) < 25


def _box(category, colour, x1, y1, x2, y2, size=100):
    mask = np.zeros((size, size), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return SceneObject.from_masks(category, colour, mask, mask.copy())


def test_matcher_refuses_ambiguous_expressions():
    shape = (100, 100)
    ponds = [_box(Category.POND, None, 5, 5, 25, 25), _box(Category.POND, None, 60, 60, 82, 82)]
    assert resolve(Expression(Category.POND), ponds, shape) == ()
    assert resolve(Expression(Category.POND, plural=True), ponds, shape) == (0, 1)
    # 484 px vs 400 px is not "clearly larger"; 900 px vs 400 px is.
    assert resolve(Expression(Category.POND, size=Size.LARGEST), ponds, shape) == ()
    ponds[1] = _box(Category.POND, None, 60, 60, 90, 90)
    assert resolve(Expression(Category.POND, size=Size.LARGEST), ponds, shape) == (1,)
    assert resolve(Expression(Category.POND, position=Position.TOP_LEFT), ponds, shape) == (0,)
    assert resolve(Expression(Category.POND, position=Position.LEFT), ponds, shape) == (0,)
    assert resolve(Expression(Category.POND, position=Position.TOP_RIGHT), ponds, shape) == ()
    # Two roofs side by side: "at the top" needs a clear lead over the runner-up.
    roofs = [
        _box(Category.BUILDING, Colour.RED, 10, 40, 30, 60),
        _box(Category.BUILDING, Colour.RED, 60, 42, 80, 62),
        _box(Category.BUILDING, Colour.BLUE, 40, 5, 50, 15),
    ]
    assert (
        resolve(Expression(Category.BUILDING, Colour.RED, position=Position.TOP), roofs, shape)
        == ()
    )
    assert resolve(Expression(Category.BUILDING, Colour.BLUE), roofs, shape) == (2,)
    assert resolve(Expression(Category.BUILDING, position=Position.TOP), roofs, shape) == (2,)


def test_matcher_relations_to_a_road():
    shape = (100, 100)
    road = _box(Category.ROAD, None, 45, 0, 55, 100)
    objects = [
        road,
        _box(Category.BUILDING, Colour.RED, 10, 10, 30, 30),
        _box(Category.BUILDING, Colour.RED, 70, 10, 90, 30),
        _box(Category.VEHICLE, Colour.BLUE, 47, 60, 53, 70),
        _box(Category.VEHICLE, Colour.BLUE, 10, 60, 16, 70),
    ]
    left = Expression(
        Category.BUILDING, Colour.RED, relation=Relation.LEFT_OF, anchor=Category.ROAD
    )
    right = Expression(Category.BUILDING, relation=Relation.RIGHT_OF, anchor=Category.ROAD)
    on = Expression(Category.VEHICLE, relation=Relation.ON, anchor=Category.ROAD)
    assert resolve(left, objects, shape) == (1,)
    assert resolve(right, objects, shape) == (2,)
    assert resolve(on, objects, shape) == (3,)
    # With a second road the anchor is ambiguous, so nothing resolves.
    two_roads = [*objects, _box(Category.ROAD, None, 0, 90, 100, 95)]
    assert resolve(left, two_roads, shape) == ()


def test_parse_round_trips_and_rejects_foreign_sentences():
    assert parse("all the red roofs") == Expression(Category.BUILDING, Colour.RED, plural=True)
    assert parse("the larger pond") == Expression(Category.POND, size=Size.LARGEST)
    assert parse("the blue car left of the river") == Expression(
        Category.VEHICLE, Colour.BLUE, relation=Relation.LEFT_OF, anchor=Category.RIVER
    )
    assert parse("the group of trees in the lower right") == Expression(
        Category.TREE, position=Position.BOTTOM_RIGHT
    )
    with pytest.raises(InputError, match="purple"):
        parse("the purple elephant")
    with pytest.raises(InputError, match="unknown phrase"):
        parse("the pond near the road")
    with pytest.raises(InputError, match="no green building"):
        Expression(Category.BUILDING, Colour.GREEN)


def test_bad_arguments_raise_input_errors():
    with pytest.raises(InputError, match="too small"):
        generate_image(0, 32)
    with pytest.raises(InputError, match="seed"):
        generate_image(-1, 128)
    with pytest.raises(InputError, match="add up"):
        split_counts(10, (0.5, 0.2, 0.2))
    with pytest.raises(InputError, match="add up"):
        split_counts(10, (5, 2, 2))
    assert split_counts(10, (0.7, 0.15, 0.15)) == {"train": 7, "val": 2, "test": 1}
    assert split_counts(10, (6, 2, 2)) == {"train": 6, "val": 2, "test": 2}


# --- the three layouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(Layout))
def test_write_dataset_is_byte_identical_per_seed(tmp_path, layout):
    _write(tmp_path / "a", layout)
    _write(tmp_path / "b", layout)
    _write(tmp_path / "c", layout, seed=1)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b and len(a) >= 3
    assert a != c


def test_write_dataset_refuses_a_non_empty_root(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="overwrite"):
        _write(tmp_path, Layout.RISBENCH)
    with pytest.raises(InputError, match="choose one of"):
        write_dataset(tmp_path / "new", layout="coco", samples=3)


def test_risbench_layout(tmp_path):
    summary = _write(tmp_path, Layout.RISBENCH)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "img_rgb",
        "mask",
        "output_phrase_test.txt",
        "output_phrase_train.txt",
        "output_phrase_val.txt",
    ]
    expected = _samples()
    lines = []
    for split in ("train", "val", "test"):
        text = (tmp_path / f"output_phrase_{split}.txt").read_text(encoding="utf-8")
        split_lines = text.splitlines()
        assert len(split_lines) == summary.samples[split]
        lines += [(split, line) for line in split_lines]
    assert len(lines) == len(expected) == SAMPLES
    val_names = [line.split(" ", 1)[0] for split, line in lines if split == "val"]
    assert any(name.startswith("train_") for name in val_names)
    for (split, line), (want_split, _, referral) in zip(lines, expected, strict=True):
        match = re.fullmatch(r"((?:train|val|test)_\d+_\d+\.png) (.+)", line)
        assert match and split == want_split
        name, sentence = match.groups()
        assert sentence == referral.sentence
        rgb = Image.open(tmp_path / "img_rgb" / name)
        mask = np.asarray(Image.open(tmp_path / "mask" / name))
        assert rgb.mode == "RGB" and rgb.size == (SIZE, SIZE)
        assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask > 50, referral.mask)
    assert summary.categories == category_names()


def test_refsegrs_layout(tmp_path):
    summary = _write(tmp_path, Layout.REFSEGRS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "images",
        "masks",
        "output_phrase_test.txt",
        "output_phrase_train.txt",
        "output_phrase_val.txt",
    ]
    lines = [
        line
        for split in ("train", "val", "test")
        for line in (tmp_path / f"output_phrase_{split}.txt").read_text().splitlines()
    ]
    ids = [line.split(" ", 1)[0] for line in lines]
    assert len(ids) == len(set(ids)) == SAMPLES == sum(summary.samples.values())
    grey_seen = False
    for line, (_, _, referral) in zip(lines, _samples(), strict=True):
        match = re.fullmatch(r"(\d+) (.+)", line)
        assert match and match.group(2) == referral.sentence
        sample_id = match.group(1)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", NotGeoreferencedWarning
            )  # plain TIFFs, as the real ones
            with rasterio.open(tmp_path / "images" / f"{sample_id}.tif") as src:
                assert (src.count, src.height, src.width, src.dtypes[0]) == (3, SIZE, SIZE, "uint8")
            with rasterio.open(tmp_path / "masks" / f"{sample_id}.tif") as src:
                assert src.count == 1
                mask = src.read(1)
        assert set(np.unique(mask)) <= {0, 30, 255}
        grey_seen |= bool((mask == 30).any())
        assert np.array_equal(mask > 50, referral.mask)
    assert grey_seen, "some mask edges are grey, to exercise the > 50 rule"


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def test_rrsisd_layout(tmp_path):
    summary = _write(tmp_path, Layout.RRSISD)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())[
        -2:
    ] == ["rrsisd/instances.json", "rrsisd/refs(unc).p"]
    refs = _PlainUnpickler(io.BytesIO((tmp_path / "rrsisd" / "refs(unc).p").read_bytes())).load()
    instances = json.loads((tmp_path / "rrsisd" / "instances.json").read_text())
    assert set(instances) == {"images", "annotations", "categories"}
    assert [(c["id"], c["name"]) for c in instances["categories"]] == list(
        enumerate(category_names())
    )
    annotations = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    assert len(refs) == SAMPLES
    splits = {split: 0 for split in ("train", "val", "test")}
    for ref, (split, _, referral) in zip(refs, _samples(), strict=True):
        assert set(ref) == {
            "image_id", "split", "sentences", "file_name", "category_id", "ann_id", "sent_ids",
            "ref_id",
        }  # fmt: skip
        assert ref["split"] == split
        splits[split] += 1
        (sentence,) = ref["sentences"]
        assert set(sentence) == {"tokens", "raw", "sent_id", "sent"}
        assert sentence["sent"] == referral.sentence and ref["sent_ids"] == [sentence["sent_id"]]
        annotation = annotations[ref["ann_id"]]
        assert "category_id" not in annotation
        assert annotation["categories_id"] == ref["category_id"] == referral.category.id
        assert annotation["image_id"] == ref["image_id"]
        (rle,) = annotation["segmentation"]
        assert isinstance(rle["counts"], str) and rle["size"] == [SIZE, SIZE]
        decoded = coco_mask.decode(annotation["segmentation"]).sum(axis=-1)
        assert np.array_equal(decoded > 0, referral.mask)
        x1, y1, x2, y2 = annotation["bbox"]
        rows, cols = np.nonzero(referral.mask)
        assert (x1, y1, x2, y2) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        image = images[ref["image_id"]]
        assert (
            re.fullmatch(r"\d{5}\.jpg", image["file_name"])
            and ref["file_name"] == image["file_name"]
        )
        jpeg = Image.open(tmp_path / "images" / "rrsisd" / "JPEGImages" / image["file_name"])
        assert jpeg.format == "JPEG" and jpeg.size == (image["width"], image["height"]) == (
            SIZE,
            SIZE,
        )
    assert splits == summary.samples


@pytest.mark.parametrize("layout", list(Layout))
def test_benchmark_loaders_read_the_written_layouts(tmp_path, layout):
    from diffris.data.refsegrs import RefSegRS
    from diffris.data.risbench import RISBench
    from diffris.data.rrsisd import RRSISD

    loader = {Layout.RISBENCH: RISBench, Layout.REFSEGRS: RefSegRS, Layout.RRSISD: RRSISD}[layout]
    _write(tmp_path, layout)
    expected = _samples()
    for split in ("train", "val", "test"):
        wanted = [referral for s, _, referral in expected if s == split]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # RefSegRS TIFFs are plain
            dataset = loader(tmp_path, split=split)
            samples = [dataset[i] for i in range(len(dataset))]
        assert [s.sentence for s in samples] == [r.sentence for r in wanted]
        for sample, referral in zip(samples, wanted, strict=True):
            assert sample.image.shape == (SIZE, SIZE, 3)
            assert np.array_equal(sample.mask, referral.mask)


# --- georeferenced scenes --------------------------------------------------------------------------


def test_windows_render_seamlessly():
    bands = plan_scene_bands(np.random.default_rng(3), 256, 256)
    whole = render(bands, x0=0, y0=0, width=256, height=256, seed=5, scale=1.0)
    part = render(bands, x0=100, y0=60, width=96, height=80, seed=5, scale=1.0)
    assert np.array_equal(part.rgb, whole.rgb[60:140, 100:196])
    assert np.array_equal(part.top, whole.top[60:140, 100:196])


def test_write_scene_grid_nodata_and_prompt_masks(tmp_path):
    border = 24
    summary = write_scene(
        tmp_path / "scene.tif",
        size=(512, 640),
        seed=1,
        crs="EPSG:32633",
        pixel_size=0.5,
        origin=(400_000.0, 5_100_000.0),
        nodata_border=border,
        prompts_out=tmp_path / "prompts.yaml",
        masks_out=tmp_path / "masks",
    )
    transform = Affine(0.5, 0.0, 400_000.0, 0.0, -0.5, 5_100_000.0)
    with rasterio.open(tmp_path / "scene.tif") as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (3, 512, 640, "uint8")
        assert src.crs.to_epsg() == 32633 and src.transform == transform
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        valid = src.dataset_mask()
        image = src.read()
    assert not valid[:border].any() and not valid[-border:].any()
    assert not valid[:, :border].any() and not valid[:, -border:].any()
    assert valid[border:-border, border:-border].all()
    assert not image[:, :border].any()

    entries = yaml.safe_load((tmp_path / "prompts.yaml").read_text())
    loaded = load_prompts(tmp_path / "prompts.yaml")
    assert [(p.id, p.text) for p in loaded] == [(p.id, p.text) for p in summary.prompts]
    assert isinstance(entries, list) and entries
    assert all(set(e) == {"id", "text"} for e in entries)
    assert [e["id"] for e in entries] == [p.id for p in summary.prompts]
    for entry, prompt in zip(entries, summary.prompts, strict=True):
        with rasterio.open(tmp_path / "masks" / f"{entry['id']}.tif") as src:
            assert (src.height, src.width, src.count) == (512, 640, 1)
            assert src.crs.to_epsg() == 32633 and src.transform == transform
            assert src.descriptions[0] == entry["text"]
            mask = src.read(1)
        assert set(np.unique(mask)) <= {0, 1}
        assert mask.sum() == prompt.pixels > 0
        assert not mask[:border].any() and not mask[:, -border:].any()
        if prompt.expression.category is Category.ROAD:
            r, g, b = image[:, mask == 1].mean(axis=1)
            assert max(r, g, b) - min(r, g, b) < 25  # grey asphalt under the road mask


def test_write_scene_uint16_user_prompts_and_errors(tmp_path):
    summary = write_scene(
        tmp_path / "scene16.tif",
        size=256,
        seed=2,
        nodata_border=8,
        dtype="uint16",
        prompts=["the roads", "all the blue cars"],
        masks_out=tmp_path / "m",
        overviews=False,
    )
    assert [p.id for p in summary.prompts] == ["roads", "blue_cars"]
    with rasterio.open(tmp_path / "scene16.tif") as src:
        data = src.read(window=((8, 248), (8, 248)))
        assert src.dtypes[0] == "uint16" and data.max() > 255 and data.min() > 0
    plain = write_scene(tmp_path / "plain.tif", size=128, nodata_border=0, overviews=False)
    assert plain.prompts and all(p.mask is None and p.pixels > 0 for p in plain.prompts)
    with pytest.raises(OutputExistsError):
        write_scene(tmp_path / "scene16.tif", size=256)
    with pytest.raises(InputError, match="category"):
        write_scene(tmp_path / "x.tif", size=256, prompts=["the road on the left"])
    with pytest.raises(InputError, match="nodata_border"):
        write_scene(tmp_path / "y.tif", size=256, nodata_border=128)
    with pytest.raises(InputError, match="CRS"):
        write_scene(tmp_path / "z.tif", size=256, crs="EPSG:0")


def test_write_scene_is_deterministic(tmp_path):
    for name in ("a", "b"):
        write_scene(tmp_path / name / "s.tif", size=192, seed=4, nodata_border=8,
                    masks_out=tmp_path / name / "m", prompts_out=tmp_path / name / "p.yaml")  # fmt: skip
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
