"""Model cards for adapters and checkpoints: built from a run's files, rendered from Jinja templates.

    from phi3_lora_hub.cards import CardOptions, write_card

    write_card("phi3-lora-output/adapter", CardOptions(repo_id="me/phi3-chat-lora"))  # README.md + loss_curve.png

:mod:`.run_files` reads the files, :mod:`.context` turns them into template variables, :mod:`.loss_curve` draws the
image, :mod:`.render` renders through ``huggingface_hub.ModelCard``; :mod:`.card_callback` (``ModelCardCallback``,
not imported here: it needs transformers) writes the card into each checkpoint of any Trainer.
"""

from __future__ import annotations

from phi3_lora_hub.cards.context import TEMPLATE_VARIABLES, CardOptions, build_context
from phi3_lora_hub.cards.render import card_data, render_card, template_path, templates_dir, write_card
from phi3_lora_hub.cards.run_files import RunFiles

__all__ = [
    "TEMPLATE_VARIABLES",
    "CardOptions",
    "RunFiles",
    "build_context",
    "card_data",
    "render_card",
    "template_path",
    "templates_dir",
    "write_card",
]
