"""The layout of an `index` artifact, written by `famevil index` and read by search and serve.

INDEX/
  items.jsonl           one line per catalogue image: its path and SHA-256
  vectors.safetensors   per item, in items.jsonl's order: its vectors for text search and for
                        composed search (L2-normalised, fp16), and the thumbnails (small JPEGs)
                        end to end with their offsets
  skipped.jsonl         the images that could not be read, with the reason
  manifest.json         kind "index"; its input is the model that built it
"""

from __future__ import annotations

ITEMS_FILE = "items.jsonl"
VECTORS_FILE = "vectors.safetensors"
SKIPPED_FILE = "skipped.jsonl"
THUMBNAIL_BYTES, THUMBNAIL_OFFSETS = "thumbnail_bytes", "thumbnail_offsets"
