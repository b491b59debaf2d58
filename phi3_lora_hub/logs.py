"""The ``phi3_lora_hub`` logger: progress at INFO, shown by default in scripts and notebooks, never twice.

The recipe reports its progress through :mod:`logging` (the data summary, the global batch, each training log,
checkpoint pushes, sample answers, the evaluation table). Like transformers, the package gives its logger a
handler of its own so that this shows without any setup; unlike a plain handler, it stands aside as soon as the
application configures logging (any handler on the root logger, e.g. ``logging.basicConfig`` or the command
line), so every line is printed once, by whoever owns the output.

``logging.getLogger("phi3_lora_hub").setLevel(logging.WARNING)`` keeps only warnings and errors.
"""

from __future__ import annotations

import logging
import sys
import warnings

PACKAGE_LOGGER = "phi3_lora_hub"


class DefaultHandler(logging.StreamHandler):
    """Writes the package's records to the current ``sys.stderr`` while the root logger has no handler."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:  # logging is configured: the record propagates to the root's handlers
            return
        self.stream = sys.stderr  # the current one (a notebook, pytest and others replace it)
        super().emit(record)


def install_default_handler() -> None:
    """Give the package logger its :class:`DefaultHandler` and level INFO (unless a level was set); idempotent."""
    package = logging.getLogger(PACKAGE_LOGGER)
    if not any(isinstance(handler, DefaultHandler) for handler in package.handlers):
        package.addHandler(DefaultHandler())
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)


def silence_known_dependency_warnings() -> None:
    """Silence warnings that dependencies raise about each other, which no user of this package can act on.

    - PEFT (0.21) builds every ``PeftModel`` by reading ``model.is_gradient_checkpointing``, which transformers
      (5.x) deprecated in favour of ``is_activation_checkpointing``: a ``FutureWarning`` at each adapter creation
      or load. Only that message is silenced.
    """
    warnings.filterwarnings(
        "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning, append=False
    )
