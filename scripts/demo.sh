#!/usr/bin/env bash
# The main job on the embedded default: the whole FAME-ViL pipeline on the procedural demo data set,
# from data generation to one table of the four teachers, the distilled student and the multi-task
# baseline, also as a page with the training curves and examples (RUN_DIR/report.html). About 19
# minutes per seed on 2 CPU cores, where independent runs go side by side, a core each (LANES=1: one
# at a time; 27 minutes a seed).
#
# Usage: [SEEDS="0 1 2"] scripts/demo.sh [RUN_DIR]   (default runs/demo; everything it writes lives there)
# The data set, its shards and the pretrained base are made once (seed 0, as a real run starts from
# one data release and one CLIP); each seed then trains its own teachers, student and baseline in
# RUN_DIR/seed-N, and the table gives mean +- sd over the seeds.
# Rerunning skips the stages that finished and resumes an interrupted training run where it stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"  # _venv.sh changes directory
source "$here/_stage.sh"
source "$here/_venv.sh" ""
run="${1:-runs/demo}"
read -r -a seeds <<<"${SEEDS:-0}"
source "$here/_demo_options.sh"

stage "$run/raw" famevil synth --preset demo --seed 0 --out "$run/raw" --contact-sheet "$run/raw-contact-sheet.png"
stage "$run/shards" famevil prepare --fashiongen "$run/raw/fashiongen" --fashioniq "$run/raw/fashioniq" --out "$run/shards"
stage "$run/base" famevil pretrain --shards "$run/shards" --out "$run/base" --set seed=0 --resume auto

# One teacher: trained, its outputs dumped, evaluated.
teacher() {
    local task="$1"
    # shellcheck disable=SC2086  # the task's options are words
    stage "$dir/teacher-$task" famevil teach --task "$task" --shards "$run/shards" --base "$run/base" --out "$dir/teacher-$task" \
        --set "seed=$seed" "${no_validation[@]}" ${task_options[$task]} --resume auto
    stage "$dir/outputs-$task" famevil dump --teacher "$dir/teacher-$task" --shards "$run/shards" --out "$dir/outputs-$task"
    stage "$dir/eval/teacher-$task" famevil evaluate --model "$dir/teacher-$task" --shards "$run/shards" --out "$dir/eval/teacher-$task"
}
# The multi-task models: the student on the teachers' outputs, the baseline without (--kd-weight 0).
# The student trains on the clean images the teachers' outputs were dumped from: over 3 seeds that
# scored higher than augmented images on every seed (benchmarks/distillation_inputs.sh; docs/fidelity.md, row 17).
multitask() {
    local model="$1" options=()
    if [ "$model" = student ]; then options=("${outputs[@]}"); else options=(--kd-weight 0); fi
    stage "$dir/$model" famevil distill --shards "$run/shards" --base "$run/base" --out "$dir/$model" "${options[@]}" "${student_options[@]}" --set "seed=$seed"
    stage "$dir/eval/$model" famevil evaluate --model "$dir/$model" --shards "$run/shards" --out "$dir/eval/$model"
}

report=()
for seed in "${seeds[@]}"; do
    dir="$run/seed-$seed"
    # Side by side, a core each on 2 cores: in this order the pairs take about as long (XMR and TGIR, SCR and FIC).
    # shellcheck disable=SC2086  # the tasks are words
    lanes teacher $tasks
    outputs=()
    for task in $tasks; do
        outputs+=(--teacher-outputs "$dir/outputs-$task")
        report+=(--teacher "$dir/eval/teacher-$task")
    done
    lanes multitask student baseline
    report+=(--student "$dir/eval/student" --baseline "$dir/eval/baseline")
done

famevil report "${report[@]}" --html "$run/report.html"
