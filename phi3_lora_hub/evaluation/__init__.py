"""Evaluation of Phi-3 LoRA adapters: offline metrics, the evaluation report, sample generations, comparisons.

- :mod:`~phi3_lora_hub.evaluation.metrics`: the shipped ``evaluate`` modules (perplexity on answer tokens,
  ROUGE-L, chrF, BLEU, exact match, answer length, stop rate) and ``load_metric``/``combine_metrics``.
- :mod:`~phi3_lora_hub.evaluation.report`: ``EvaluationReport``, written as ``eval_results.json``, the source of
  every number in the model card.
- :mod:`~phi3_lora_hub.training.recipe_evaluation`: what ``Phi3LoraRecipe.evaluate()`` runs.
- :mod:`~phi3_lora_hub.evaluation.samples`: the callback storing sample answers in every checkpoint.
- :mod:`~phi3_lora_hub.arena.compare`: automatic pairwise comparison of two models (``phi3-lora-hub compare``).

Importing this package is cheap: torch, transformers and ``evaluate`` load on first use.
"""
