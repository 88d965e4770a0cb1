# Sourced by demo.sh and ablations.sh: the demo's training options, so that the ablations train exactly
# as the demo's student does but for the switch each one turns.
tasks="xmr tgir scr fic"
# The paper's two budget relations (30k updates per teacher against the student's 90k x 0.3 on each task;
# the teachers together about the student): each teacher trains on as many samples as the student's
# size-proportional sampling gives its task out of the student's 800 updates of 32. The demo's sizes
# (1,600 products for XMR, SCR and FIC, 1,169 FashionIQ triplets for TGIR) give 26.8 % of the updates to
# each of the first three (214) and 19.6 % to TGIR (157); the teachers together train on 25,568 samples,
# the student on 25,600 (tests/test_demo_budgets.py checks both against the demo's data).
# Captioning's teacher has a preset of its own, demo-captioner (demo-cpu's options are the contrastive
# tasks'): 428 updates of 16 at higher learning rates, its head restricted to the training text's tokens
# (3x cheaper a step on famevil-small); it learns the copy's language first and reads the image later
# (docs/captioning.md).
declare -A task_options=(
    [xmr]="--max-steps 214"
    [tgir]="--max-steps 157"
    [scr]="--max-steps 214"
    [fic]="--preset demo-captioner --max-steps 428"
)
# The demo validates nothing while training (evaluate runs right after each model; on 2 cores each
# validation would cost seconds to a minute), so every model keeps its last weights.
no_validation=(--set eval_every=0)
# The student anneals the distillation weight from 1 to 0 (teacher annealing): measured when the XMR,
# TGIR and SCR teachers had 100 updates each, weaker than what multi-task training reaches, a constant
# weight held the student back toward them (over 3 seeds: -2.9 % against the teachers and -1.4 % against
# the baseline with a constant weight, about level with annealing; docs/distillation.md).
# (DEMO_PRESET and STUDENT_STEPS exist for the scripts' own tests, which run them at tiny scale.)
student_steps="${STUDENT_STEPS:-800}"
student_options=(--preset "${DEMO_PRESET:-demo-cpu}" --max-steps "$student_steps" --kd-schedule anneal --set checkpoint_every=400 --set augment=false --set head_vocabulary=training "${no_validation[@]}" --resume auto)

