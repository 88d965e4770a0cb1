#!/usr/bin/env bash
# A shop's own catalogue end to end: its shards, a teacher for each task the catalogue supports (XMR,
# SCR and FIC from photos and copy; TGIR too when a pairs file of modification texts is given), their
# dumped outputs, one distilled student, the catalogue indexed by product with it, and (with QUERIES)
# search quality on the shop's own queries. It ends by printing the command that serves the index.
#
# Usage: scripts/shop.sh CATALOGUE IMAGES RUN_DIR [PAIRS]
#   CATALOGUE  products.csv or .jsonl: image, title, description, category, subcategory; optional
#              product_id (rows sharing one are views of a product) and split (train or val)
#   IMAGES     the folder the catalogue's image paths are relative to
#   RUN_DIR    where everything is written: shards, teacher-T, outputs-T, student, index, eval/search
#   PAIRS      optional: pairs.csv or .jsonl (reference, target, captions, group) for composed search
# Settings (environment):
#   BASE=ViT-B-16:openai            starting weights: an open_clip NAME:TAG (in open_clip's cache),
#                                   hf-hub:ORG/NAME, local-dir:DIR or a famevil base; BASE= (empty)
#                                   starts from random weights, a smoke test only
#   TEACHER_PRESET=paper            the teachers' training preset, a name or a JSON file; TEACHER_STEPS
#                                   overrides its updates
#   STUDENT_PRESET=paper-student    the student's; STUDENT_STEPS overrides its updates
#   QUERIES=queries.csv             optional: famevil evaluate-search on it (the format: docs/shop.md)
# Rerunning skips the stages that finished and resumes an interrupted training run. docs/shop.md
# explains each step.
set -euo pipefail
if [ $# -lt 3 ] || [ $# -gt 4 ]; then
    echo "usage: scripts/shop.sh CATALOGUE IMAGES RUN_DIR [PAIRS]  (settings: see the top of this script)" >&2
    exit 2
fi
# Absolute before _venv.sh changes directory to the checkout.
catalogue="$(realpath "$1")"
images="$(realpath "$2")"
run="$(realpath -m "$3")"
pairs="${4:+$(realpath "$4")}"
queries="${QUERIES:+$(realpath "$QUERIES")}"
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/_stage.sh"
source "$here/_venv.sh" ""

base="${BASE-ViT-B-16:openai}"
base_option=()
if [ -n "$base" ]; then base_option=(--base "$base"); fi
teacher_options=(--preset "${TEACHER_PRESET:-paper}")
if [ -n "${TEACHER_STEPS:-}" ]; then teacher_options+=(--max-steps "$TEACHER_STEPS"); fi
student_options=(--preset "${STUDENT_PRESET:-paper-student}")
if [ -n "${STUDENT_STEPS:-}" ]; then student_options+=(--max-steps "$STUDENT_STEPS"); fi
# Composed retrieval (TGIR) learns from modification texts between two products: only with PAIRS.
tasks=(xmr scr fic)
pairs_option=()
if [ -n "$pairs" ]; then
    tasks=(xmr tgir scr fic)
    pairs_option=(--pairs "$pairs")
fi

stage "$run/shards" famevil prepare --catalogue "$catalogue" --images "$images" "${pairs_option[@]}" --out "$run/shards"
outputs=()
for task in "${tasks[@]}"; do
    stage "$run/teacher-$task" famevil teach --task "$task" --shards "$run/shards" "${base_option[@]}" "${teacher_options[@]}" \
        --out "$run/teacher-$task" --resume auto
    stage "$run/outputs-$task" famevil dump --teacher "$run/teacher-$task" --shards "$run/shards" --out "$run/outputs-$task"
    outputs+=(--teacher-outputs "$run/outputs-$task")
done
stage "$run/student" famevil distill --shards "$run/shards" "${base_option[@]}" --tasks "$(IFS=,; echo "${tasks[*]}")" "${outputs[@]}" \
    "${student_options[@]}" --out "$run/student" --resume auto
stage "$run/index" famevil index --model "$run/student" --images "$images" --catalogue "$catalogue" --out "$run/index"
if [ -n "$queries" ]; then
    stage "$run/eval/search" famevil evaluate-search "$run/index" --queries "$queries" --out "$run/eval/search"
fi
echo "done: serve the catalogue with"
echo "  famevil serve $run/index"
