"""The layout of a `shards` artifact, written by `famevil prepare` and read by every later stage.

    SHARDS/
      manifest.json                      kind "shards"
      vocab.json                         label vocabularies, shared by every later stage
      sizes.json                         samples, products and shard files per subset
      skipped.jsonl                      a catalogue's unusable rows: file, line, reason, detail (if any)
      fashiongen/{train,val}/*.tar       one sample per FashionGen image view (XMR, SCR, FIC), or catalogue row
      fashioniq/{train,val,test}/*.tar   one sample per FashionIQ triplet (TGIR), or catalogue pair; test has no target
      fashioniq/gallery-{split}/*.tar    one sample per FashionIQ image of that split (TGIR galleries)

Samples (webdataset: files sharing a key form one sample):
    FashionGen:  KEY.jpg, KEY.json = FASHIONGEN_FIELDS
    triplet:     KEY.reference.jpg, KEY.target.jpg (absent in test), KEY.json = TRIPLET_FIELDS
    gallery:     KEY.jpg, KEY.json = GALLERY_FIELDS
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError
from data_specs.integrity import ListedFile
from data_specs.manifest import InputRef, Manifest, require_artifact

VOCAB_FILE = "vocab.json"
SIZES_FILE = "sizes.json"
SKIPPED_FILE = "skipped.jsonl"
SIZES_SCHEMA_VERSION = 1

FASHIONGEN_SPLITS = ("train", "val")  # the release's validation file serves as the test split
FASHIONIQ_SPLITS = ("train", "val", "test")
FASHIONIQ_GROUPS = ("dress", "shirt", "toptee")

FASHIONGEN_FIELDS = (
    "product_id",  # int: groups the views of one product (XMR positives)
    "view",  # the release's input_pose, e.g. "id_gridfs_1"
    "title",  # input_name
    "description",  # input_description: the caption for FIC and the text for XMR
    "category",
    "subcategory",
    "category_id",  # index into vocab.json "category"
    "subcategory_id",  # index into vocab.json "subcategory"; ids past num_train were never seen in training
    "gender",
    "composition",
    "season",
)
TRIPLET_FIELDS = ("group", "candidate", "target", "captions")  # target is null in the test split
GALLERY_FIELDS = ("group", "asin")

IMAGE_EXTENSION = "jpg"
REFERENCE_IMAGE = "reference.jpg"
TARGET_IMAGE = "target.jpg"


def fashiongen_subset(split: str) -> str:
    return f"fashiongen/{split}"


def triplet_subset(split: str) -> str:
    return f"fashioniq/{split}"


def gallery_subset(split: str) -> str:
    return f"fashioniq/gallery-{split}"


def shard_name(subset: str, index: int) -> str:
    """Relative path of a shard: fashiongen/train/train-000003.tar."""
    return f"{subset}/{subset.rsplit('/', 1)[-1]}-{index:06d}.tar"


@dataclass(frozen=True)
class Vocabulary:
    """Label names in id order. Names seen in training come first (sorted), then names seen only in
    validation, so a classifier over the first num_train ids never needs resizing and a
    validation-only label is a wrong answer, not a crash."""

    names: tuple[str, ...]
    num_train: int

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_splits(cls, train: set[str], other: set[str]) -> Vocabulary:
        unseen = sorted(other - train)
        return cls(names=tuple(sorted(train)) + tuple(unseen), num_train=len(train))


def write_vocab(root: Path, vocabularies: dict[str, Vocabulary]) -> None:
    payload = {name: {"names": list(v.names), "num_train": v.num_train} for name, v in vocabularies.items()}
    (root / VOCAB_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_vocab(root: Path | str) -> dict[str, Vocabulary]:
    path = Path(root) / VOCAB_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return {name: Vocabulary(tuple(v["names"]), int(v["num_train"])) for name, v in payload.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise FamevilError(f"{path}: unreadable vocabulary ({error}); rebuild the shards with famevil prepare") from None


def read_sizes(root: Path | str) -> dict[str, Any]:
    path = Path(root) / SIZES_FILE
    try:
        sizes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise FamevilError(f"{path}: unreadable ({error}); rebuild the shards with famevil prepare") from None
    if sizes.get("schema_version") != SIZES_SCHEMA_VERSION:
        raise FamevilError(f"{path}: unknown schema_version {sizes.get('schema_version')!r}; rebuild the shards with famevil prepare")
    return sizes


def sample_key(member: str) -> str:
    """The sample a shard member belongs to: its name up to the first dot (keys hold none), as webdataset
    groups members ("train-00000042.json" and "train-00000042.jpg" form one sample)."""
    return member.partition(".")[0]


@dataclass(frozen=True)
class Shards:
    """A shards artifact opened once: its manifest checked (kind, files, sizes), sizes.json and vocab.json
    read. Stages open it and pass it down; nothing below reads those files again."""

    root: Path
    manifest: Manifest
    sizes: dict[str, Any]
    vocabularies: dict[str, Vocabulary]

    @classmethod
    def open(cls, root: Path | str) -> Shards:
        root = Path(root)
        manifest = require_artifact(root, "shards")
        return cls(root, manifest, read_sizes(root), read_vocab(root))

    def __str__(self) -> str:  # messages name the folder the user gave
        return str(self.root)

    @property
    def ref(self) -> InputRef:
        """The shards as a stage's input, for its manifest."""
        return InputRef("shards", "shards", self.manifest.content_id, str(self.root))

    @property
    def subsets(self) -> dict[str, dict[str, Any]]:
        return self.sizes["subsets"]

    def samples_in(self, subset: str) -> int:
        """How many samples a subset holds (0 for a subset these shards lack)."""
        return self.subsets.get(subset, {}).get("samples", 0)

    def listed(self, subset: str) -> list[tuple[Path, int]]:
        """The shard files of one subset, in order, with the samples each holds, as sizes.json lists them."""
        if subset not in self.subsets:
            present = ", ".join(sorted(self.subsets)) or "none"
            raise FamevilError(f"{self.root}: has no {subset!r} subset (present: {present}); prepare the missing source")
        return [(self.root / shard["path"], shard["samples"]) for shard in self.subsets[subset]["shards"]]

    def listed_file(self, shard: Path) -> ListedFile:
        """A shard file with its manifest's sha256, for a reader that hashes it as it streams it."""
        return self.manifest.listed_file(self.root, shard.relative_to(self.root).as_posix())

    def listed_files(self, subset: str) -> list[ListedFile]:
        """The shard files of one subset, in order, each with its manifest's sha256."""
        return [self.listed_file(path) for path in self.paths(subset)]

    def paths(self, subset: str) -> list[Path]:
        """The shard files of one subset, in order."""
        return [path for path, _ in self.listed(subset)]

    def training_vocabularies(self) -> dict[str, list[str]]:
        """The label names seen in training, by vocabulary: what a model's heads classify into."""
        return {name: list(vocabulary.names[: vocabulary.num_train]) for name, vocabulary in self.vocabularies.items()}

    def sample_keys(self, shard: Path) -> list[str]:
        """The keys of a shard's samples, in order, from its tar headers (no member is read)."""
        with tarfile.open(shard) as archive:
            return list(dict.fromkeys(sample_key(name) for name in archive.getnames()))
