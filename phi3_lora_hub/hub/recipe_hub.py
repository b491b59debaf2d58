"""The Hub as the recipe uses it: its push callback, where a run resumes from, and publishing around ``train()``.

Kept out of ``recipe.py`` so the recipe only delegates; everything here works from the recipe's ``hub_*``
settings (:class:`~phi3_lora_hub.config.recipe_config.RecipeConfig`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phi3_lora_hub.errors import ConfigError

if TYPE_CHECKING:
    from phi3_lora_hub.config.recipe_config import RecipeConfig
    from phi3_lora_hub.hub.push_callback import HubPushCallback
    from phi3_lora_hub.hub.report import HubPushReport

logger = logging.getLogger("phi3_lora_hub.hub")

RESUME_DOWNLOAD_DIRNAME = "_hubresume"


def hub_callback_for(config: RecipeConfig, callbacks: list[Any]) -> HubPushCallback | None:
    """The recipe's publisher: a ``HubPushCallback`` passed in ``callbacks``, else one made from the ``hub_*``
    settings when ``hub_model_id`` is set, else ``None``. Invalid settings raise ``ConfigError`` here."""
    if not config.hub_model_id and not callbacks:
        return None
    from phi3_lora_hub.hub.push_callback import HubPushCallback

    given = [callback for callback in callbacks if isinstance(callback, HubPushCallback)]
    if len(given) > 1:
        raise ConfigError("Pass at most one HubPushCallback in callbacks=.")
    if given:
        callback = given[0]
        if config.hub_model_id and config.hub_model_id != callback.settings.repo_id:
            raise ConfigError(
                f"hub_model_id={config.hub_model_id!r} differs from the HubPushCallback's repo_id "
                f"{callback.settings.repo_id!r}: set one of them."
            )
    elif config.hub_model_id:
        callback = HubPushCallback(
            config.hub_model_id,
            private=config.hub_private,
            branch_template=config.hub_branch_template,
            push_resumable_state=config.hub_push_resumable_state,
            flush_timeout=config.hub_flush_timeout,
            on_failure=config.hub_on_push_failure,  # type: ignore[arg-type]
            card_template=config.hub_card_template,
            card_license=config.hub_card_license,
        )
    else:
        return None
    callback.finish_on_train_end = False  # the recipe pushes the final adapter before it finishes
    return callback


def resume_point(
    output_dir: str | Path,
    callback: HubPushCallback | None,
    resume_from_checkpoint: bool | str | None,
    resume_from_hub: bool,
) -> str | None:
    """The checkpoint folder to resume from (``None`` to start at step 0).

    ``resume_from_hub``: the newest complete checkpoint on the Hub (downloaded into ``_hubresume/``), or step 0
    when the Hub holds none yet (a run killed before its first push). ``resume_from_checkpoint=True``: the newest
    complete local ``checkpoint-N`` (partial ones, e.g. cut by a full disk, are skipped); ``ConfigError`` if none.
    """
    from phi3_lora_hub.hub.resume import newest_complete_checkpoint, resume_checkpoint_from_hub

    if resume_from_hub:
        if resume_from_checkpoint not in (None, False):
            raise ConfigError("Pass either resume_from_hub=True or resume_from_checkpoint=, not both.")
        if callback is None:
            raise ConfigError("resume_from_hub=True needs hub_model_id= (the repository the run pushed to).")
        settings = callback.settings
        if not settings.push_resumable_state:
            logger.warning(
                "resume_from_hub=True while hub_push_resumable_state is off: this run's own checkpoints will not "
                "be resumable from the Hub."
            )
        found = resume_checkpoint_from_hub(
            callback.publisher.repo_id,
            Path(output_dir) / RESUME_DOWNLOAD_DIRNAME,
            branch_template=settings.branch_template,
            token=callback.publisher.explicit_token,
            endpoint=settings.endpoint,
            timeouts=settings.request_timeouts,
            retry=settings.retry,
        )
        if found is None:
            logger.warning("No complete checkpoint on the Hub to resume from: training starts at step 0.")
            return None
        return str(found.path)
    if resume_from_checkpoint is True:
        path = newest_complete_checkpoint(output_dir)
        if path is None:
            raise ConfigError(f"Nothing to resume: {output_dir} holds no complete checkpoint-N folder.")
        return str(path)
    return resume_from_checkpoint or None


class Publishing:
    """What ``train()`` does with the Hub around training; a no-op without a push callback."""

    def __init__(self, callback: HubPushCallback | None) -> None:
        self.callback = callback
        self.report: HubPushReport | None = None

    def push_final(self, adapter_dir: str | Path, step: int) -> None:
        """Queue the saved final adapter (with its trainer log and evaluation) for ``main``."""
        if self.callback is not None and self.callback.publisher.running:
            self.callback.publisher.submit_final(adapter_dir, step)


@contextlib.contextmanager
def publishing(callback: HubPushCallback | None) -> Iterator[Publishing]:
    """Check the token first (fail fast, before data and model are loaded); flush and report at the end.

    If training fails, what was saved before still reaches the Hub (within ``hub_flush_timeout``) and the
    original error propagates; Ctrl+C stops at once. ``hub_on_push_failure="raise"`` applies to runs that
    finished only.
    """
    state = Publishing(callback)
    if callback is None:
        yield state
        return
    callback.prepare()
    publisher = callback.publisher
    try:
        yield state
    except KeyboardInterrupt:
        state.report = publisher.finish(0.0, raise_on_failure=False)
        raise
    except BaseException:
        state.report = publisher.finish(raise_on_failure=False)
        raise
    state.report = publisher.finish()
