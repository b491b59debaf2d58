"""``TrainerCallback``s that work in any ``transformers.Trainer`` or ``trl.SFTTrainer`` on their own.

- :class:`~phi3_lora_hub.callbacks.hub_push.HubPushCallback`: pushes every checkpoint to the Hub while training
  runs, in the background, step-aware and resumable.
- :class:`~phi3_lora_hub.callbacks.model_card.ModelCardCallback`: renders the model card into every checkpoint.
- :class:`~phi3_lora_hub.callbacks.checkpoint_files.CheckpointFilesCallback`: writes the Phi-3 generation config,
  the recipe and the data report into every checkpoint.
- :class:`~phi3_lora_hub.callbacks.sample_generations.SampleGenerationsCallback`: answers fixed prompts at every
  evaluation and save, stored in each checkpoint.

Import them from :mod:`phi3_lora_hub`. The recipe composes them; none of them takes a recipe.
"""
