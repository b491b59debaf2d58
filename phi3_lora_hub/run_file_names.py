"""The names of the files a run writes into an adapter or checkpoint directory, and nothing else.

Every layer that writes or reads one of them (training, evaluation, cards, the Hub publisher, the Space) names it
from here, so no layer imports another only to spell a file name.
"""

from __future__ import annotations

# The two files a PEFT LoRA adapter is made of (safetensors only: a pickled ``adapter_model.bin`` is never used).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
GENERATION_CONFIG = "generation_config.json"

TRAINER_STATE = "trainer_state.json"
"""Written last by ``transformers.Trainer`` into each checkpoint."""
TRAINER_LOG = "trainer_log.json"
TRAINING_ARGS_JSON = "training_args.json"
"""Written by the push callback when a checkpoint has no recipe YAML: the hyperparameters, as JSON."""

RECIPE_FILE = "phi3_lora_recipe.yaml"
"""The resolved recipe, written by the recipe into every adapter and checkpoint."""
DATA_REPORT_FILE = "data_report.json"
EVAL_REPORT_FILE = "eval_results.json"
"""The evaluation report (``phi3_lora_hub.evaluation.report``)."""
SAMPLES_FILE = "sample_generations.json"
"""The sample generations of an evaluation (``phi3_lora_hub.evaluation.samples``)."""

LORALIB_STATE_DICT = "loralib_state_dict.safetensors"
LORALIB_CONFIG = "loralib_config.json"
"""Written by a loralib run next to its ``lora_state_dict`` (``phi3_lora_hub.loralib_backend``)."""

CARD_NAME = "README.md"
LOSS_CURVE_NAME = "loss_curve.png"
