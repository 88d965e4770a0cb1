#!/usr/bin/env bash
# What the stored teacher outputs cost the student (issue: the authors' training details, item g).
# famevil dumps teachers' outputs once, from clean images, keeping FIC's top 8 tokens per position;
# the authors run their teachers online on the student's augmented batch, over the whole vocabulary.
# On a finished demo run (scripts/demo.sh RUN; its seed-0 teachers), this trains the demo student three ways, once per seed:
#   augmented    augmented student images (random crops and flips), FIC top-8 outputs
#   clean        the student trains on the evaluation transform, the view the outputs were dumped from
#                (what scripts/demo.sh does since this was measured)
#   top64        augmented images, FIC outputs dumped with --top-k 64
# and prints each report row as mean ± sd over the seeds (benchmarks/caption_loss.py adds FIC's
# validation loss, which still moves where the captions score 0).
#
# Usage: benchmarks/distillation_inputs.sh RUN [SEEDS]   (SEEDS default "0 1 2"; 2 cores: ~6 min a student)
set -euo pipefail
source "$(dirname "$0")/../scripts/_stage.sh"
run="$1"
seeds="${2:-0 1 2}"
teachers="$run/seed-0"
out="$run/distillation-inputs"
student_options=(--max-steps 300 --set checkpoint_every=150 --set eval_every=0 --resume auto)

stage "$out/outputs-fic-top64" famevil dump --teacher "$teachers/teacher-fic" --shards "$run/shards" --out "$out/outputs-fic-top64" --top-k 64
declare -A fic_outputs=([augmented]="$teachers/outputs-fic" [clean]="$teachers/outputs-fic" [top64]="$out/outputs-fic-top64")
declare -A variant_options=([augmented]="--set augment=true" [clean]="--set augment=false" [top64]="--set augment=true")
for seed in $seeds; do
    for variant in augmented clean top64; do
        student="$out/$variant-seed$seed"
        # shellcheck disable=SC2086  # the variant's options are words
        stage "$student" famevil distill --shards "$run/shards" --base "$run/base" --out "$student" \
            --teacher-outputs "$teachers/outputs-xmr" --teacher-outputs "$teachers/outputs-tgir" --teacher-outputs "$teachers/outputs-scr" \
            --teacher-outputs "${fic_outputs[$variant]}" "${student_options[@]}" --set "seed=$seed" ${variant_options[$variant]}
        stage "$out/eval/$variant-seed$seed" famevil evaluate --model "$student" --shards "$run/shards" --out "$out/eval/$variant-seed$seed"
    done
done
python "$(dirname "$0")/summarise_runs.py" "$out/eval"
