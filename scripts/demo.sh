#!/usr/bin/env bash
# The main job on the embedded default: generate the procedural demo data set, shard it, summarise.
# Usage: scripts/demo.sh [RUN_DIR]   (default runs/demo; everything it writes lives there)
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""
run="${1:-runs/demo}"
seed="${FAMEVIL_SEED:-0}"

famevil synth --preset demo --seed "$seed" --out "$run/raw" --contact-sheet "$run/raw-contact-sheet.png" --overwrite
famevil prepare --fashiongen "$run/raw/fashiongen" --fashioniq "$run/raw/fashioniq" --out "$run/shards" --overwrite
famevil inspect "$run/shards"
