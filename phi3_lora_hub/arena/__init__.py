"""Pairwise comparison records and the maths that turns them into a leaderboard.

Shared by the Gradio Space (human votes) and ``phi3-lora-hub compare`` (automatic votes):

- :mod:`phi3_lora_hub.arena.votes`: the vote record (one JSON line per vote), reading, appending and exporting
  it in FastChat's battle format.
- :mod:`phi3_lora_hub.arena.ratings`: wins/losses/ties per pair and per model, win rate with a Wilson interval,
  Bradley-Terry ratings with bootstrap confidence intervals.

Neither module imports torch or transformers, so the Space can score votes without loading a model.
"""
