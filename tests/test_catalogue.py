"""`famevil prepare --catalogue`: a shop's own products (CSV or JSON Lines) and pairs to the shards
every later stage reads, bad rows listed, bad files refused in one line."""

from __future__ import annotations

import csv
import json
import posixpath
from pathlib import Path

import pytest
from PIL import Image

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from data_specs.shards import Shards, read_sizes, read_vocab
from famevil.data.catalogue import HASHED_SPLIT, PAIR_COLUMNS, SPLIT_COLUMN, hashed_split
from famevil.data.loading import records, samples
from stages.evaluate import evaluate
from stages.prepare import prepare
from stages.teach import teach
from tests.test_images import sideways_jpeg

COLUMNS = ("image", "title", "description", "category", "subcategory", "product_id", "split")
# Five products, seven views; DRESSES and GOWNS occur only in val.
GOOD = [
    ("tops/a1.jpg", "Oxford shirt", "A white &amp; blue shirt.<br>Cotton.", "TOPS", "SHIRTS", "A", "train"),
    ("tops/a2.png", "Oxford shirt", "A white &amp; blue shirt.<br>Cotton.", "TOPS", "SHIRTS", "A", "train"),
    ("tops/b.jpg", "Plain tee", "", "TOPS", "T-SHIRTS", "B", "Train"),
    ("pants/c1.jpg", "Slim jeans", "Dark denim.", "PANTS", "JEANS", "C", "train"),
    ("pants/c2.jpg", "Slim jeans", "Dark denim.", "PANTS", "JEANS", "C", "train"),
    ("./pants/c3.jpg", "Slim jeans", "Dark denim.", "PANTS", "JEANS", "C", "train"),
    ("pants/d.jpg", "", "Wide-leg jeans.", "PANTS", "JEANS", "D", "val"),
    ("dresses/e.jpg", "Silk gown", "Long.", "DRESSES", "GOWNS", "E", "val"),
]
BAD = [  # (row, reason)
    (("tops/gone.jpg", "Lost", "Its file is missing.", "TOPS", "SHIRTS", "F", "train"), "missing image"),
    (("tops/torn.jpg", "Torn", "A truncated file.", "TOPS", "SHIRTS", "G", "train"), "unreadable image"),
    (("tops/b.jpg", "Again", "The same image twice.", "TOPS", "SHIRTS", "H", "train"), "duplicate image"),
    (("tops/h.jpg", " ", "", "TOPS", "SHIRTS", "H", "train"), "empty title and description"),
    (("tops/h.jpg", "Held out", "A third split.", "TOPS", "SHIRTS", "H", "test"), "unknown split"),
]
PAIRS = [  # reference, target, captions, group
    ("tops/a1.jpg", "tops/b.jpg", "has short sleeves | has no collar", "tops"),
    ("pants/c3.jpg", "tops/a1.jpg", "is a shirt", "tops"),
    ("pants/d.jpg", "dresses/e.jpg", "is a dress|is silk", "dresses"),
]
BAD_PAIRS = [
    (("nowhere.jpg", "tops/b.jpg", "is red", "tops"), "unknown reference"),
    (("tops/b.jpg", "tops/gone.jpg", "is red", "tops"), "unknown target"),
    (("tops/b.jpg", "tops/a1.jpg", " | ", "tops"), "no caption"),
]


def _write_images(root: Path) -> Path:
    images = root / "images"
    for index, row in enumerate(GOOD + [row for row, _ in BAD]):
        path = images / row[0]
        if row[0] != "tops/gone.jpg" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 16), (index * 30, 90, 150)).save(path)
    torn = (images / "tops/torn.jpg").read_bytes()
    (images / "tops/torn.jpg").write_bytes(torn[: len(torn) // 2])
    return images


def _write_table(path: Path, columns: tuple[str, ...], rows: list[tuple]) -> Path:
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(dict(zip(columns, row, strict=True))) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_shop(root: Path, suffix: str) -> tuple[Path, Path, Path]:
    """(catalogue, images, pairs), the bad rows after the good ones."""
    root.mkdir(parents=True, exist_ok=True)
    catalogue = _write_table(root / f"products{suffix}", COLUMNS, GOOD + [row for row, _ in BAD])
    pairs = _write_table(root / f"pairs{suffix}", ("reference", "target", "captions", "group"), PAIRS + [row for row, _ in BAD_PAIRS])
    return catalogue, _write_images(root), pairs


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Path]:
    """The shop prepared from CSV and from JSON Lines: the shards of each."""
    root = tmp_path_factory.mktemp("shop")
    made = {}
    for suffix in (".csv", ".jsonl"):
        catalogue, images, pairs = _write_shop(root / suffix.lstrip("."), suffix)
        made[suffix] = prepare(root / f"shards{suffix}", catalogue=catalogue, images=images, pairs=pairs, shard_size=4, workers=1)
    return made


CATALOGUE_ORDER = ["tops/a1.jpg", "tops/a2.png", "tops/b.jpg", "pants/c1.jpg", "pants/c2.jpg", "pants/c3.jpg"]  # the training views, in the file's order


def test_csv_and_jsonl_give_the_same_shards(shop):
    csv_files, jsonl_files = (require_artifact(result.out, "shards").files for result in shop.values())
    same = [name for name in csv_files if name != "skipped.jsonl"]  # its line numbers count the CSV's header
    assert {name: csv_files[name] for name in same} == {name: jsonl_files[name] for name in same}
    assert set(csv_files) == set(jsonl_files) and any(name.endswith(".tar") for name in same)


def test_views_are_written_by_split_with_their_labels(shop):
    shards = shop[".csv"].out
    vocab = read_vocab(shards)
    assert vocab["category"].names == ("PANTS", "TOPS", "DRESSES") and vocab["category"].num_train == 2
    assert vocab["subcategory"].names == ("JEANS", "SHIRTS", "T-SHIRTS", "GOWNS") and vocab["subcategory"].num_train == 3
    # Training views are written in a seeded random order (batches draw from the whole split); sorted
    # by view name here.
    train = sorted(samples(Shards.open(shards), "fashiongen/train"), key=lambda s: CATALOGUE_ORDER.index(s["json"]["view"]))
    assert [s["json"]["view"] for s in train] == CATALOGUE_ORDER
    assert [s["json"]["product_id"] for s in train] == [0, 0, 1, 2, 2, 2]
    assert train[0]["json"]["description"] == "A white & blue shirt. Cotton." and train[0]["jpg"].size == (12, 16)
    val = list(records(Shards.open(shards), "fashiongen/val"))
    assert [(r["view"], r["title"], r["product_id"]) for r in val] == [("pants/d.jpg", "", 3), ("dresses/e.jpg", "Silk gown", 4)]
    for record in [s["json"] for s in train] + val:
        assert vocab["category"].names[record["category_id"]] == record["category"]
        assert vocab["subcategory"].names[record["subcategory_id"]] == record["subcategory"]
    sizes = read_sizes(shards)["subsets"]
    assert (sizes["fashiongen/train"]["products"], sizes["fashiongen/val"]["products"]) == (3, 2)


def test_pairs_become_triplets_and_galleries(shop):
    shards = shop[".csv"].out
    train = list(samples(Shards.open(shards), "fashioniq/train"))  # in a seeded random order, as training views are
    assert sorted((s["json"]["candidate"], s["json"]["target"], s["json"]["captions"]) for s in train) == [
        ("pants/c3.jpg", "tops/a1.jpg", ["is a shirt"]),
        ("tops/a1.jpg", "tops/b.jpg", ["has short sleeves", "has no collar"]),
    ]
    assert all(s["reference.jpg"].size == s["target.jpg"].size == (12, 16) for s in train)
    assert [(r["group"], r["target"]) for r in records(Shards.open(shards), "fashioniq/val")] == [("dresses", "dresses/e.jpg")]
    assert [r["asin"] for r in records(Shards.open(shards), "fashioniq/gallery-train")] == ["tops/a1.jpg", "tops/b.jpg", "pants/c3.jpg"]
    assert [(r["group"], r["asin"]) for r in records(Shards.open(shards), "fashioniq/gallery-val")] == [
        ("dresses", "pants/d.jpg"),
        ("dresses", "dresses/e.jpg"),
    ]


def test_bad_rows_are_listed_with_their_line_and_reason(shop):
    result = shop[".csv"]
    listed = [json.loads(line) for line in (result.out / "skipped.jsonl").read_text().splitlines()]
    first_bad = len(GOOD) + 2  # the header is line 1
    assert [(row["file"], row["line"], row["reason"]) for row in listed] == [
        ("catalogue", first_bad + index, reason) for index, (_, reason) in enumerate(BAD)
    ] + [("pairs", len(PAIRS) + 2 + index, reason) for index, (_, reason) in enumerate(BAD_PAIRS)]
    assert listed[0]["detail"] == "tops/gone.jpg" and listed[-3]["detail"] == "nowhere.jpg"
    manifest = require_artifact(result.out, "shards")
    assert "skipped.jsonl" in manifest.files
    assert manifest.details["catalogue"]["skipped"]["catalogue"] == {reason: 1 for _, reason in BAD}
    assert manifest.details["catalogue"]["split"] == SPLIT_COLUMN
    assert [ref.role for ref in manifest.inputs] == ["catalogue", "images", "pairs"]
    assert all(ref.id.startswith("sha256:") for ref in manifest.inputs)
    assert any(note.startswith("skipped 5 catalogue rows") and "3 pairs" in note for note in result.notes)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_column_names_match_whatever_their_case(shop, tmp_path, suffix):
    """A spreadsheet's own header: Product_ID once went unread, and the views of a product were split apart."""
    columns = ("Image", "TITLE", "Description", "Category", "SubCategory", "Product_ID", " Split ")
    catalogue = _write_table(tmp_path / f"products{suffix}", columns, GOOD + [row for row, _ in BAD])
    pairs = _write_table(tmp_path / f"pairs{suffix}", ("Reference", "Target", "Captions", "GROUP"), PAIRS + [row for row, _ in BAD_PAIRS])
    result = prepare(tmp_path / "shards", catalogue=catalogue, images=_write_images(tmp_path), pairs=pairs, shard_size=4, workers=1)
    assert require_artifact(result.out, "shards").files == require_artifact(shop[suffix].out, "shards").files


def test_image_paths_outside_the_images_folder_are_skipped_and_never_read(tmp_path):
    images = _write_images(tmp_path)
    outside = tmp_path / "outside.jpg"  # a readable image: only the rule keeps it out
    Image.new("RGB", (12, 16), (1, 2, 3)).save(outside)
    leaving = [("../outside.jpg", "Up", "", "TOPS", "SHIRTS", "X", "train"), (str(outside), "Absolute", "", "TOPS", "SHIRTS", "Y", "train")]
    catalogue = _write_table(tmp_path / "products.csv", COLUMNS, GOOD + leaving)
    result = prepare(tmp_path / "shards", catalogue=catalogue, images=images, shard_size=4, workers=1)
    listed = [json.loads(line) for line in (result.out / "skipped.jsonl").read_text().splitlines()]
    assert [(row["line"], row["reason"], row["detail"]) for row in listed] == [
        (len(GOOD) + 2, "image outside --images", "../outside.jpg"),
        (len(GOOD) + 3, "image outside --images", str(outside)),
    ]
    views = {r["view"] for split in ("train", "val") for r in records(Shards.open(result.out), f"fashiongen/{split}")}
    assert views == {posixpath.normpath(row[0]) for row in GOOD}


def test_a_sideways_photo_goes_into_the_shards_upright(tmp_path):
    """A phone's portrait photo: landscape pixels and an EXIF orientation, which no shard reader applies."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "side.jpg").write_bytes(sideways_jpeg()[0])
    Image.new("RGB", (16, 24), (200, 10, 10)).save(images / "up.jpg")
    rows = [(name, "Shirt", "", "TOPS", "SHIRTS", name, "train") for name in ("side.jpg", "up.jpg")]
    catalogue = _write_table(tmp_path / "products.csv", COLUMNS, rows)
    pairs = _write_table(tmp_path / "pairs.csv", PAIR_COLUMNS, [("side.jpg", "up.jpg", "is red", "tops")])
    shards = prepare(tmp_path / "shards", catalogue=catalogue, images=images, pairs=pairs, workers=1).out
    assert {s["json"]["view"]: s["jpg"].size for s in samples(Shards.open(shards), "fashiongen/train")} == {"side.jpg": (16, 24), "up.jpg": (16, 24)}
    (triplet,) = samples(Shards.open(shards), "fashioniq/train")
    assert triplet["reference.jpg"].size == triplet["target.jpg"].size == (16, 24)


def test_without_a_split_column_a_seeded_hash_splits_by_product(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for product in range(30):
        for view in range(2):
            Image.new("RGB", (8, 8), (product * 8, view * 99, 0)).save(images / f"{product}-{view}.png")
            rows.append((f"{product}-{view}.png", f"item {product}", "", "TOPS", "SHIRTS", f"sku{product}"))
    catalogue = _write_table(tmp_path / "products.csv", COLUMNS[:-1], rows)
    result = prepare(tmp_path / "shards", catalogue=catalogue, images=images, workers=1)
    split_of = {r["view"]: split for split in ("train", "val") for r in records(Shards.open(result.out), f"fashiongen/{split}")}
    assert split_of == {f"{p}-{v}.png": hashed_split(f"sku{p}") for p in range(30) for v in range(2)}
    assert 0 < list(split_of.values()).count("val") < 20
    assert require_artifact(result.out, "shards").details["catalogue"]["split"] == HASHED_SPLIT
    assert not any(name.startswith("fashioniq/") for name in read_sizes(result.out)["subsets"])
    assert any(note.startswith("no --pairs") for note in result.notes) and not (result.out / "skipped.jsonl").exists()
    with pytest.raises(FamevilError, match=r"has no 'fashioniq/train' samples.*--catalogue FILE with --pairs FILE"):
        teach("tgir", result.out, tmp_path / "teacher", overrides={"model": "famevil-tiny"})


def test_downstream_stages_read_catalogue_shards_unchanged(shop, tmp_path):
    shards = shop[".jsonl"].out
    result = evaluate(tmp_path / "eval", shards, base="famevil-tiny", tasks=["xmr", "scr", "tgir"], batch_size=8, random100_runs=1)
    assert set(result.metrics) == {"xmr", "scr", "tgir"}
    assert {"dresses_r10", "avg_r10"} <= set(result.metrics["tgir"]) and 0 <= result.metrics["scr"]["accuracy"] <= 100
    tiny = {"model": "famevil-tiny", "batch_size": 4, "warmup_steps": 1, "workers": 0, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2}
    trained = teach("tgir", shards, tmp_path / "teacher", overrides=tiny)
    assert "tgir.dresses_r10" in trained.validation


def _catalogue_args(tmp_path: Path, catalogue_rows: list[tuple], columns: tuple[str, ...] = COLUMNS, suffix: str = ".csv") -> list:
    catalogue = _write_table(tmp_path / f"products{suffix}", columns, catalogue_rows)
    return ["--catalogue", catalogue, "--images", _write_images(tmp_path)]


def _every_row_bad(tmp_path):
    return _catalogue_args(tmp_path, [row for row, _ in BAD[:2]]), "no usable row; all 2 rows were skipped (1 missing image, 1 unreadable image)"


def _wrong_header(tmp_path):
    columns = ("image", "name", "description", "category", "subcategory")
    return _catalogue_args(tmp_path, [row[:5] for row in GOOD], columns), (
        "products.csv: no column title (found: category, description, image, name, subcategory); "
        "a catalogue needs columns image, title, description, category, subcategory (optional: product_id, split)"
    )


def _jsonl_without_a_column(tmp_path):
    columns = ("image", "title", "description", "category")
    return _catalogue_args(tmp_path, [row[:4] for row in GOOD], columns, ".jsonl"), "products.jsonl: no column subcategory"


def _caption_columns(tmp_path):
    pairs = _write_table(tmp_path / "pairs.csv", ("reference", "target", "caption", "group"), PAIRS)
    return [*_catalogue_args(tmp_path, GOOD), "--pairs", pairs], "pairs.csv: column 'caption': a pairs file needs columns reference, target, captions, group"


def _every_pair_bad(tmp_path):
    pairs = _write_table(tmp_path / "pairs.csv", ("reference", "target", "captions", "group"), [("1", "2", "x", "tops")])
    return [
        *_catalogue_args(tmp_path, GOOD),
        "--pairs",
        pairs,
    ], "pairs.csv: no usable pair; its one row was skipped (1 unknown reference), e.g. line 2: unknown reference 1"


def _columns_told_apart_by_case(tmp_path):
    columns = (*COLUMNS, "Title")
    return _catalogue_args(tmp_path, [(*row, "again") for row in GOOD], columns), (
        "products.csv: columns 'title' and 'Title' are one column to famevil, which ignores case; rename or drop one"
    )


def _not_a_table(tmp_path):
    (tmp_path / "products.xlsx").write_bytes(b"PK")
    return ["--catalogue", tmp_path / "products.xlsx", "--images", _write_images(tmp_path)], "products.xlsx: expected a .csv or .jsonl file"


def _mixed_with_a_release(tmp_path):
    return [*_catalogue_args(tmp_path, GOOD), "--fashioniq", tmp_path], "--catalogue replaces --fashiongen and --fashioniq"


def _no_images_folder(tmp_path):
    return _catalogue_args(tmp_path, GOOD)[:2], "--catalogue needs --images DIR"


@pytest.mark.parametrize(
    "make_bad_input",
    [
        _every_row_bad,
        _wrong_header,
        _jsonl_without_a_column,
        _caption_columns,
        _every_pair_bad,
        _columns_told_apart_by_case,
        _not_a_table,
        _mixed_with_a_release,
        _no_images_folder,
    ],
)
def test_a_bad_catalogue_is_one_line_and_nothing_is_written(cli, tmp_path, make_bad_input):
    arguments, message = make_bad_input(tmp_path)
    out = tmp_path / "shards"
    result = cli("prepare", *arguments, "--out", out, "--workers", 1)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]  # a progress bar may precede it
    assert last.startswith("error:") and message in last and result.stderr.count("error:") == 1, result.stderr
    assert not out.exists()


def test_the_command_prints_the_split_and_what_it_skipped(cli, tmp_path):
    catalogue, images, pairs = _write_shop(tmp_path, ".jsonl")
    result = cli("prepare", "--catalogue", catalogue, "--images", images, "--out", tmp_path / "shards", "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "split by the catalogue's split column: 3 products train, 2 products val" in result.stdout
    assert "no --pairs" in result.stdout and "skipped 5 catalogue rows" in result.stdout
