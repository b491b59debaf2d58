"""Child process of the kill-and-resume test (C12): one training run of the tiny Phi-3, in one of three modes.

    python kill_resume_child.py MODE BASE_MODEL DATA OUTPUT_DIR REPO_ID

``slow``: push resumable checkpoints to REPO_ID, one second per step, until the parent kills the process.
``resume``: the same run restarted with ``resume_from_hub=True``. ``reference``: the same run, uninterrupted,
without any Hub. Prints the final ``global_step`` as JSON.
"""

from __future__ import annotations

import json
import sys
import time

from transformers import TrainerCallback

from phi3_lora_hub import Phi3LoraRecipe

TRAINING = {"max_steps": 6, "save_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1, "disable_tqdm": True}


class OneSecondPerStep(TrainerCallback):
    """Slows training down (sleeping changes no number) so the parent can kill it mid-run."""

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(1.0)
        return control


def main() -> int:
    mode, base, data, output, repo_id = sys.argv[1:6]
    recipe = Phi3LoraRecipe(
        base,
        data,
        output_dir=output,
        hub_model_id=None if mode == "reference" else repo_id,
        hub_push_resumable_state=True,
        training=TRAINING,
        callbacks=[OneSecondPerStep()] if mode == "slow" else [],
    )
    result = recipe.train(resume_from_hub=mode == "resume")
    print(json.dumps({"global_step": result.global_step}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
