#!/usr/bin/env bash
# How the captioning head should start (issue: the paper's protocols, item 7). The authors' head starts
# from PyTorch's default initialisation; famevil's demo starts it from the token embedding the text
# tower was trained with (--set head_init=backbone). On a finished demo run (scripts/demo.sh RUN: its
# shards and base), this trains the demo's FIC teacher both ways, once per seed, and prints each report
# row as mean ± sd over the seeds.
#
# Usage: benchmarks/caption_head_init.sh RUN [SEEDS]   (SEEDS default "0 1 2"; 2 cores: ~5 min a teacher)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../scripts/_stage.sh"
source "$here/../scripts/_demo_options.sh"
run="$1"
seeds="${2:-0 1 2}"
out="$run/caption-head-init"
for seed in $seeds; do
    for init in backbone default; do
        teacher="$out/$init-seed$seed"
        # shellcheck disable=SC2086  # the task's options are words
        stage "$teacher" famevil teach --task fic --shards "$run/shards" --base "$run/base" --out "$teacher" \
            --set "seed=$seed" "${no_validation[@]}" ${task_options[fic]} --set "head_init=$init" --resume auto
        stage "$out/eval/$init-seed$seed" famevil evaluate --model "$teacher" --shards "$run/shards" --out "$out/eval/$init-seed$seed" --tasks fic
    done
done
python "$here/summarise_runs.py" "$out/eval"
