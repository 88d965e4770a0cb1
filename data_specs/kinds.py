"""The registry of artifact kinds: what each is, which schema versions this famevil reads, and how to rebuild it.

Each stage's kind is declared here; a new stage adds its own and nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_specs.errors import FamevilError


@dataclass(frozen=True)
class ArtifactKind:
    name: str
    schema_version: int  # the version this famevil writes
    readable_versions: tuple[int, ...]  # versions this famevil can still read
    made_by: str  # an example command that (re)builds it, quoted in every refusal
    description: str


KINDS: dict[str, ArtifactKind] = {
    kind.name: kind
    for kind in (
        ArtifactKind(
            name="raw-dataset",
            schema_version=1,
            readable_versions=(1,),
            made_by="famevil synth --out RAW --preset demo",
            description="a procedural fashion data set in the public FashionGen and FashionIQ layouts",
        ),
        ArtifactKind(
            name="shards",
            schema_version=1,
            readable_versions=(1,),
            made_by="famevil prepare --fashiongen RAW/fashiongen --fashioniq RAW/fashioniq --out SHARDS",
            description="webdataset shards per task and split, label vocabularies and sizes",
        ),
        ArtifactKind(
            name="model",
            schema_version=2,  # 2: no output projection in the cross-attention adapters, learnt retrieval temperatures, "title. description"
            readable_versions=(2,),
            made_by="famevil.checkpoint.save_checkpoint (teach and distill write their own kinds)",
            description="a FAME-ViL checkpoint: model.safetensors, config.json",
        ),
        ArtifactKind(
            name="base",
            schema_version=2,  # 2: no output projection in the cross-attention adapters, learnt retrieval temperatures, "title. description"
            readable_versions=(2,),
            made_by="famevil pretrain --shards SHARDS --out BASE",
            description="a CLIP backbone trained contrastively from scratch on the shards' captions: the synthetic demo's stand-in for open_clip weights",
        ),
        ArtifactKind(
            name="teacher",
            schema_version=2,  # 2: no output projection in the cross-attention adapters, learnt retrieval temperatures, "title. description"
            readable_versions=(2,),
            made_by="famevil teach --task TASK --shards SHARDS --base BASE --out TEACHER",
            description="a single-task FAME-ViL model with its training record: weights, configs, metrics.jsonl, resumable checkpoints",
        ),
        ArtifactKind(
            name="teacher-outputs",
            schema_version=2,  # 2: no output projection in the cross-attention adapters, learnt retrieval temperatures, "title. description"
            readable_versions=(2,),
            made_by="famevil dump --teacher TEACHER --shards SHARDS --out OUTPUTS",
            description="a teacher's outputs on its task's training shards, by sample key (outputs/*.safetensors)",
        ),
        ArtifactKind(
            name="student",
            schema_version=2,  # 2: no output projection in the cross-attention adapters, learnt retrieval temperatures, "title. description"
            readable_versions=(2,),
            made_by="famevil distill --teacher-outputs OUTPUTS ... --shards SHARDS --base BASE --out STUDENT",
            description="the multi-task FAME-ViL model (four tasks, one backbone) with its training record",
        ),
        ArtifactKind(
            name="index",
            # 2: items are products' views (product_id, title, ...), paths relative to an absolute images root, per-search vectors;
            # 3: item products, hashes and product groups as tensors (a million items searched without items.jsonl in memory)
            schema_version=3,
            readable_versions=(3,),
            made_by="famevil index --model MODEL --images FOLDER [--catalogue products.csv] --out INDEX",
            description="a catalogue's images embedded by product for text, similar-item and composed search: vectors, thumbnails, paths and hashes",
        ),
        ArtifactKind(
            name="annotations",
            schema_version=1,
            readable_versions=(1,),
            made_by="famevil annotate --model STUDENT --catalogue products.csv --images FOLDER --out ANNOTATIONS",
            description="a catalogue's products with a caption, their top subcategories and attribute labels: annotations.jsonl and annotations.csv",
        ),
        ArtifactKind(
            name="export",
            schema_version=1,
            readable_versions=(1,),
            made_by="famevil export --model DIR --format open_clip --out EXPORT",
            description="a model's backbone as an open_clip folder (open_clip_config.json, open_clip_model.safetensors) with its model card",
        ),
        ArtifactKind(
            name="metrics",
            schema_version=1,
            readable_versions=(1,),
            made_by="famevil evaluate --model DIR --shards SHARDS --out EVAL",
            description="metrics.json with the predictions behind it (captions.jsonl, retrieval.jsonl)",
        ),
        ArtifactKind(
            name="search-metrics",
            schema_version=1,
            readable_versions=(1,),
            made_by="famevil evaluate-search INDEX --queries QUERIES --out EVAL",
            description="search quality on a shop's own queries: metrics.json (R@1/5/10, MRR, nDCG@10 per kind of search) and rankings.jsonl",
        ),
    )
}


def artifact_kind(name: str) -> ArtifactKind:
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise FamevilError(f"unknown artifact kind {name!r}; this famevil knows: {known}") from None
