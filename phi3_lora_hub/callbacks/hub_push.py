"""``HubPushCallback``: push every checkpoint, with a generated model card, to the Hub while training runs.

Works with any ``transformers.Trainer`` (TRL's ``SFTTrainer`` included); the recipe adds it by itself when
``hub_model_id`` is set::

    from phi3_lora_hub import HubPushCallback

    trainer = SFTTrainer(..., callbacks=[HubPushCallback("me/phi3-chat-lora")])
    trainer.train()                      # step-N branches and main fill up while training runs
    print(trainer.callback_handler.callbacks[-1].report)

At every save the adapter files of ``checkpoint-N`` are staged and pushed in the background to ``main`` and to
branch ``step-N``; a training step never waits for the Hub. At the end of training the queue is flushed within
``flush_timeout`` and a :class:`~phi3_lora_hub.hub.report.HubPushReport` says which checkpoints reached the Hub.
Only the main process of a multi-process run pushes.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.hub.publisher import HubPublisher
from phi3_lora_hub.hub.report import HubPushReport
from phi3_lora_hub.hub.settings import HubPushSettings
from phi3_lora_hub.hub.timeouts import HttpTimeouts

logger = logging.getLogger("phi3_lora_hub.hub")

CALLBACK_SETTINGS = frozenset(field.name for field in dataclasses.fields(HubPushSettings)) - {"repo_id", "timeouts"}
"""The :class:`HubPushSettings` fields ``HubPushCallback`` takes as keyword arguments, under the same names."""


class HubPushCallback(TrainerCallback):
    """Publishes each checkpoint (adapter files + model card + loss curve) to the Hub in the background.

    Args:
        repo_id: ``namespace/name`` of the model repository; created if missing.
        token: a Hub token with write access. Default: ``HF_TOKEN``, else the login of ``hf auth login``. It is
            kept in the callback's own ``HfApi`` only, never in the training arguments, files or messages.
        request_timeout, connect_timeout: per-request HTTP timeouts in seconds (default: :class:`HttpTimeouts`).
        **options: any other field of :class:`~phi3_lora_hub.hub.settings.HubPushSettings`, which documents
            each one and its default: ``endpoint``, ``private``, ``branch_template``, ``push_resumable_state``,
            ``flush_timeout``, ``on_failure``, ``card_template``, ``card_license``, ``retry``.

    Raises ``ConfigError`` for invalid settings here, and ``HubAuthError`` when the Trainer is created (or at
    ``prepare()``) if the token is missing, rejected or read-only.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        request_timeout: float | None = None,
        connect_timeout: float | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - CALLBACK_SETTINGS)
        if unknown:
            raise ConfigError(
                f"HubPushCallback got unknown settings {unknown}; the settings are "
                f"{sorted(CALLBACK_SETTINGS | {'token', 'request_timeout', 'connect_timeout'})}."
            )
        given = {"connect": connect_timeout, "read": request_timeout}
        try:
            timeouts = HttpTimeouts(**{name: value for name, value in given.items() if value is not None})
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if options.get("retry") is None:
            options.pop("retry", None)  # None: the default policy
        if options.get("card_template") is not None:
            options["card_template"] = str(options["card_template"])
        settings = HubPushSettings(repo_id=repo_id, timeouts=timeouts, **options)
        self.publisher = HubPublisher(settings, token=token)
        self.finish_on_train_end = True
        """Flush and report in ``on_train_end``. The recipe turns it off: it pushes the final adapter first."""

    def __repr__(self) -> str:
        return f"HubPushCallback(repo_id={self.publisher.repo_id!r})"

    @property
    def settings(self) -> HubPushSettings:
        return self.publisher.settings

    @property
    def report(self) -> HubPushReport:
        """What has been pushed so far (final after ``finish()``)."""
        return self.publisher.report

    def prepare(self) -> None:
        """Check the token and create the repository now (otherwise done when the Trainer is created)."""
        self.publisher.prepare()

    def finish(self, timeout: float | None = None) -> HubPushReport:
        """Flush queued pushes (at most ``timeout`` s, default ``flush_timeout``), stop the worker, report."""
        return self.publisher.finish(timeout)

    # -- Trainer events ----------------------------------------------------------------------------------------

    def on_init_end(self, args, state, control, **kwargs):
        self._check_training_args(args)
        if state.is_world_process_zero:
            self.publisher.prepare()
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.publisher.start(args.output_dir)
        return control

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        self.publisher.start(args.output_dir)  # no-op when running (on_save without on_train_begin otherwise)
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.publisher.submit_checkpoint(checkpoint, state.global_step, training_args=args)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.finish_on_train_end:
            self.publisher.finish()
        return control

    def _check_training_args(self, args: Any) -> None:
        if self.settings.push_resumable_state and getattr(args, "save_only_model", False):
            raise ConfigError(
                "push_resumable_state=True needs the optimizer and scheduler state in each checkpoint, but the "
                "training arguments set save_only_model=True; remove one of the two."
            )
        if getattr(args, "hub_token", None):
            warnings.warn(
                "TrainingArguments.hub_token is pickled into training_args.bin in every checkpoint. HubPushCallback "
                "never uploads that file, but anything that does (Trainer's push_to_hub) publishes the token: "
                "remove hub_token and set HF_TOKEN instead.",
                stacklevel=2,
            )
        if getattr(args, "push_to_hub", False):
            logger.warning(
                "Both Trainer (push_to_hub=True) and HubPushCallback push to the Hub; set push_to_hub=False so "
                "that only the callback does."
            )
