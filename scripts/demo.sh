#!/usr/bin/env bash
# The main job on the embedded default: the whole FAME-ViL pipeline on the procedural demo data set,
# from data generation to one table of the four teachers, the distilled student and the multi-task
# baseline. About 20 minutes on 2 CPU cores.
#
# Usage: scripts/demo.sh [RUN_DIR]   (default runs/demo; everything it writes lives there)
# Rerunning skips the stages that finished and resumes an interrupted training run where it stopped.
set -euo pipefail
source "$(dirname "$0")/_stage.sh"
source "$(dirname "$0")/_venv.sh" ""
run="${1:-runs/demo}"
seed="${FAMEVIL_SEED:-0}"
tasks="xmr tgir scr fic"
# The demo-cpu preset, with captioning's own batch and learning rates: its 49,408-way head is most
# of a small model's work, and it learns in more, smaller steps than the other tasks.
declare -A task_options=([xmr]="" [tgir]="" [scr]="" [fic]="--set batch_size=16 --set lr_backbone=3e-4 --set lr_adapters=5e-3 --max-steps 200")
# The demo validates nothing while training (evaluate runs right after each model; on 2 cores each
# validation would cost seconds to a minute), so every model keeps its last weights.
no_validation=(--set eval_every=0)

stage "$run/raw" famevil synth --preset demo --seed "$seed" --out "$run/raw" --contact-sheet "$run/raw-contact-sheet.png"
stage "$run/shards" famevil prepare --fashiongen "$run/raw/fashiongen" --fashioniq "$run/raw/fashioniq" --out "$run/shards"
stage "$run/base" famevil pretrain --shards "$run/shards" --out "$run/base" --set "seed=$seed" --resume auto

outputs=()
teacher_evals=()
for task in $tasks; do
    # shellcheck disable=SC2086  # the task's options are words
    stage "$run/teacher-$task" famevil teach --task "$task" --shards "$run/shards" --base "$run/base" --out "$run/teacher-$task" \
        --set "seed=$seed" "${no_validation[@]}" ${task_options[$task]} --resume auto
    stage "$run/outputs-$task" famevil dump --teacher "$run/teacher-$task" --shards "$run/shards" --out "$run/outputs-$task"
    stage "$run/eval/teacher-$task" famevil evaluate --model "$run/teacher-$task" --shards "$run/shards" --out "$run/eval/teacher-$task"
    outputs+=(--teacher-outputs "$run/outputs-$task")
    teacher_evals+=(--teacher "$run/eval/teacher-$task")
done

# The student sees 9.6k samples against the four teachers' 12.8k together (in the paper, 90k updates
# against 3 x 30k + 6k), to keep the demo near 20 minutes. It trains on the clean images the teachers'
# outputs were dumped from: over 3 seeds that scored higher than augmented images on every seed
# (benchmarks/distillation_inputs.sh; docs/fidelity.md, row 17).
student_options=(--max-steps 300 --set checkpoint_every=150 --set augment=false "${no_validation[@]}" --set "seed=$seed" --resume auto)
stage "$run/student" famevil distill --shards "$run/shards" --base "$run/base" --out "$run/student" "${outputs[@]}" "${student_options[@]}"
stage "$run/baseline" famevil distill --shards "$run/shards" --base "$run/base" --out "$run/baseline" --kd-weight 0 "${student_options[@]}"
for model in student baseline; do
    stage "$run/eval/$model" famevil evaluate --model "$run/$model" --shards "$run/shards" --out "$run/eval/$model"
done

famevil report "${teacher_evals[@]}" --student "$run/eval/student" --baseline "$run/eval/baseline"
