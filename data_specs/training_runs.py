"""The layout of a training run's directory (kinds base, teacher and student), written by pretrain,
teach and distill and read by dump, evaluate, export and report.

    RUN/
      model.safetensors, config.json   the best weights by validation (the last, without validation)
      train_config.json                the resolved training options
      metrics.jsonl                    one line per update (losses, learning rates) and per validation
      timings.jsonl                    one line per update (seconds, samples/s): outside the content id (data_specs.manifest)
      checkpoints/step-NNNNNN/         Accelerate states to resume from (the newest few, the last included)
        run_state.json                 famevil's counters, task sampler and data positions
        famevil-state.json             written last: the state's files and their SHA-256
      manifest.json
"""

from __future__ import annotations

METRICS_LOG, TRAIN_CONFIG_FILE, CHECKPOINTS = "metrics.jsonl", "train_config.json", "checkpoints"
STATE_PREFIX = "step-"
STATE_MARKER = "famevil-state.json"  # written last into each saved state: famevil's own proof that the state is whole
RUN_STATE_FILE = "run_state.json"  # famevil's counters, task sampler and data positions (as JSON, never a pickle)

SCORE = "score"  # metrics.jsonl's validation value that picks the best weights (higher is better)
LOSSES = ("loss_", "kd_")  # metrics.jsonl's per-task losses, by name prefix: the task's own, and distillation's


def samples_trained(details: dict, options: dict) -> int:
    """The training samples a finished run consumed, from its manifest's details and its train_config.json:
    the budget its comparisons are fair by."""
    per_update = options["batch_size"] * options["gradient_accumulation"] * details["processes"]
    if details.get("balancing") == "imtl-g":  # one batch of every task per micro-step (GradientBalancing)
        per_update *= len(details["tasks"])
    return details["steps"] * per_update
