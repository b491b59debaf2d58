"""The trainer the recipe builds: speed-ups that keep results exact, and what every checkpoint holds.

- :mod:`~phi3_lora_hub.training.attention`: SDPA that runs each sequence of a padding-free batch on its own.
- :mod:`~phi3_lora_hub.training.loss`: cross-entropy through the LM head in chunks, trained positions only.
- :mod:`~phi3_lora_hub.training.trainer`: ``Phi3SFTTrainer``, TRL's ``SFTTrainer`` wired to both.
- :mod:`~phi3_lora_hub.callbacks.checkpoint_files`: ``CheckpointFilesCallback``, the recipe YAML, generation config
  and data report written into every checkpoint.
"""
