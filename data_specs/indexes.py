"""The layout of an `index` artifact, written by `famevil index` and read by search and serve.

INDEX/
  items.jsonl           one line per indexed image (a view of a product): its path relative to the
                        images root, its SHA-256, its product_id, title, description, category,
                        subcategory and the catalogue's other columns (payload)
  vectors.safetensors   per item, in items.jsonl's order: the vectors the model can make (L2-normalised,
                        fp16): IMAGE_VECTORS (cross-modal retrieval's image embedding: text and
                        similar-item search) and, from a model with composed retrieval, COMPOSED_VECTORS
                        (its gallery embedding); PRODUCT_VECTORS per product (in order of first
                        appearance), when built with a text weight; ITEM_PRODUCT, ITEM_SHA256 and
                        PRODUCT_GROUP (the "groups" metadata names them); and the thumbnails (small
                        JPEGs) end to end with their offsets
  approximate-NAME.faiss  with --approximate: FAISS's index of the NAME vectors (famevil.approximate)
  skipped.jsonl         the rows and images that could not be used: file, row (a listing's line), path, reason
  manifest.json         kind "index" (schema 3); its input is the model that built it (absolute path);
                        details: images (the absolute root every item path is relative to), catalogue,
                        searches (of SEARCHES, those the index answers), text_weight, items, products
"""

from __future__ import annotations

ITEMS_FILE = "items.jsonl"
VECTORS_FILE = "vectors.safetensors"
SKIPPED_FILE = "skipped.jsonl"
THUMBNAIL_BYTES, THUMBNAIL_OFFSETS = "thumbnail_bytes", "thumbnail_offsets"
IMAGE_VECTORS, COMPOSED_VECTORS, PRODUCT_VECTORS = "image", "composed", "product"
TEXT_SEARCH, SIMILAR_SEARCH, COMPOSED_SEARCH = "text", "similar", "composed"
SEARCHES = (TEXT_SEARCH, SIMILAR_SEARCH, COMPOSED_SEARCH)
# What an item records of its catalogue row besides its payload: the columns read_catalogue names.
PRODUCT_FIELDS = ("product_id", "title", "description", "category", "subcategory")
# Per item and per product, so that a million-item index is searched without reading items.jsonl whole:
# each item's product number (products in order of first appearance), its image's SHA-256 (32 bytes),
# and each product's group, a position in the vectors file's "groups" metadata: [[category, subcategory], ...].
ITEM_PRODUCT, ITEM_SHA256, PRODUCT_GROUP = "item_product", "item_sha256", "product_group"
GROUPS_METADATA = "groups"
# `famevil index --approximate`: per vectors name, a FAISS index built once (famevil.approximate), read memory-mapped.
APPROXIMATE_FILE = "approximate-{}.faiss"
# What ranks a search of an index (--backend): famevil's own two, else a Qdrant collection (famevil.qdrant_backend).
EXACT_BACKEND, APPROXIMATE_BACKEND = "exact", "approximate"
