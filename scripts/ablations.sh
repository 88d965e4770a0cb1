#!/usr/bin/env bash
# The paper's ablations on the demo: the distilled student retrained with one switch turned at a time,
# per seed, then one table of mean +- sd over the seeds beside the paper's figures (for the direction
# of each effect, not its size). About 55 minutes per seed on 2 CPU cores, after scripts/demo.sh.
#
# Usage: [SEEDS="0 1 2"] scripts/ablations.sh [RUN_DIR]   (default runs/demo: a finished demo.sh run
# with the same SEEDS, whose teachers, their outputs, student and baseline it reuses)
#
# Variants (the student: size-proportional sampling, distillation annealed from weight 1 to 0, XAA, one
# TSA per task, bottleneck 64, as many samples as the four teachers together; the baseline: no distillation):
#   the student and the baseline with twice and half the teachers' samples (how does the comparison
#   change with the budget?); sampling uniform, round-robin; IAS (gradient scales from validation against the teachers' scores);
#   IMTL-G (one batch of every task per update: a quarter of the updates for the same samples);
#   no XAA in fusion; one TSA for all tasks; bottlenecks 128 and 512.
# IAS validates every 200 updates and so keeps its best weights; the others keep their last.
# The table, with the demo's curves and examples, is also written to RUN_DIR/ablations.html.
# Rerunning skips the models that finished.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"  # _venv.sh changes directory
source "$here/_stage.sh"
source "$here/_venv.sh" ""
run="${1:-runs/demo}"
read -r -a seeds <<<"${SEEDS:-0}"
source "$here/_demo_options.sh"

order=(budget-2x no-distillation-2x budget-half no-distillation-half uniform round-robin ias imtl-g no-xaa shared-tsa bottleneck-128 bottleneck-512)
declare -A variants=(
    [budget-2x]="--max-steps $((student_steps * 2))"
    [no-distillation-2x]="--kd-weight 0 --max-steps $((student_steps * 2))"
    [budget-half]="--max-steps $((student_steps / 2))"
    [no-distillation-half]="--kd-weight 0 --max-steps $((student_steps / 2))"
    [uniform]="--sampling uniform"
    [round-robin]="--sampling round-robin"
    [ias]="--balancing ias --set eval_every=200"
    [imtl-g]="--balancing imtl-g --sampling round-robin --max-steps $((student_steps / 4))"
    [no-xaa]="--set fusion=late"
    [shared-tsa]="--set task_adapters=shared"
    [bottleneck-128]="--set tsa_bottleneck=128 --set xaa_bottleneck=128"
    [bottleneck-512]="--set tsa_bottleneck=512 --set xaa_bottleneck=512"
)

report=()
for seed in "${seeds[@]}"; do
    dir="$run/seed-$seed"
    if [ ! -f "$dir/eval/student/manifest.json" ] || [ ! -f "$dir/eval/baseline/manifest.json" ]; then
        echo "ablations.sh: $dir has no evaluated student and baseline; run SEEDS=\"${seeds[*]}\" scripts/demo.sh $run first" >&2
        exit 2
    fi
    outputs=() targets=()
    for task in $tasks; do
        outputs+=(--teacher-outputs "$dir/outputs-$task")
        targets+=(--ias-targets-from "$dir/eval/teacher-$task")
        report+=(--teacher "$dir/eval/teacher-$task")
    done
    for variant in "${order[@]}"; do
        out="$dir/ablations/$variant"
        extra=("${targets[@]}")
        [ "$variant" = ias ] || extra=()
        # shellcheck disable=SC2086  # the variant's options are words
        stage "$out" famevil distill --shards "$run/shards" --base "$run/base" --out "$out" "${outputs[@]}" "${student_options[@]}" \
            --set "seed=$seed" ${variants[$variant]} "${extra[@]}"
        stage "$dir/eval/ablations/$variant" famevil evaluate --model "$out" --shards "$run/shards" --out "$dir/eval/ablations/$variant"
        report+=(--ablation "$dir/eval/ablations/$variant")
    done
    report+=(--student "$dir/eval/student" --baseline "$dir/eval/baseline")
done

famevil report "${report[@]}" --html "$run/ablations.html"
