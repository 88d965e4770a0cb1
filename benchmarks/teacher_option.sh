#!/usr/bin/env bash
# One training option, each of its values, on the demo's teachers: on a finished demo run (scripts/demo.sh
# RUN: its shards and base), this trains each named task's teacher with the demo's options plus
# --set OPTION=VALUE, once per seed and value, evaluates it on its task, and prints each report row as
# mean ± sd over the seeds (benchmarks/summarise_runs.py).
#
# Usage: benchmarks/teacher_option.sh RUN OPTION "VALUES" "TASKS" [SEEDS]   (SEEDS default "0 1 2")
#   benchmarks/teacher_option.sh runs/demo retrieval_scale "log squared" "xmr tgir"
#   benchmarks/teacher_option.sh runs/demo head_init "backbone default" fic
# Writes RUN/option-OPTION/; rerunning skips the teachers and evaluations that finished.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../scripts/_stage.sh"
source "$here/../scripts/_demo_options.sh"
run="$1"
option="$2"
values="$3"
chosen="$4"
seeds="${5:-0 1 2}"
out="$run/option-$option"
for seed in $seeds; do
    for task in $chosen; do
        for value in $values; do
            name="$task-$value-seed$seed"
            # shellcheck disable=SC2086  # the task's options are words
            stage "$out/$name" famevil teach --task "$task" --shards "$run/shards" --base "$run/base" --out "$out/$name" \
                --set "seed=$seed" "${no_validation[@]}" ${task_options[$task]} --set "$option=$value" --resume auto
            stage "$out/eval/$name" famevil evaluate --model "$out/$name" --shards "$run/shards" --out "$out/eval/$name" --tasks "$task"
        done
    done
done
python "$here/summarise_runs.py" "$out/eval"
