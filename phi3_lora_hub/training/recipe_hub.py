"""The Hub as the recipe uses it: its push callback, where a run resumes from, and publishing around ``train()``.

Kept out of ``recipe.py`` so the recipe only delegates; everything here works from the recipe's ``hub_*``
settings (:class:`~phi3_lora_hub.config.recipe_config.RecipeConfig`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phi3_lora_hub.callbacks.hub_push import HubPushCallback
from phi3_lora_hub.distributed.processes import is_main_process
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.hub.resume import checkpoint_step, newest_complete_checkpoint, resume_checkpoint_from_hub

if TYPE_CHECKING:
    from phi3_lora_hub.callbacks.hub_push import HubPushCallback
    from phi3_lora_hub.config.recipe_config import RecipeConfig
    from phi3_lora_hub.hub.report import HubPushReport

logger = logging.getLogger("phi3_lora_hub.hub")

RESUME_DOWNLOAD_DIRNAME = "_hubresume"


def hub_callback_for(config: RecipeConfig, callbacks: list[Any]) -> HubPushCallback | None:
    """The recipe's publisher: a ``HubPushCallback`` passed in ``callbacks``, else one made from the ``hub_*``
    settings when ``hub_model_id`` is set, else ``None``. Invalid settings raise ``ConfigError`` here."""
    if not config.hub_model_id and not callbacks:
        return None

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
        callback = HubPushCallback(config.hub_model_id, **config.hub_settings())
    else:
        return None
    return callback


def check_resume_request(
    callback: HubPushCallback | None, resume_from_checkpoint: bool | str | None, resume_from_hub: bool
) -> None:
    """Refuse contradicting resume settings before anything is loaded."""
    if resume_from_hub and resume_from_checkpoint not in (None, False):
        raise ConfigError("Pass either resume_from_hub=True or resume_from_checkpoint=, not both.")
    if resume_from_hub and callback is None:
        raise ConfigError("resume_from_hub=True needs hub_model_id= (the repository the run pushed to).")


def resume_point(
    output_dir: str | Path,
    callback: HubPushCallback | None,
    resume_from_checkpoint: bool | str | None,
    resume_from_hub: bool,
    args: Any = None,
) -> str | None:
    """The checkpoint folder to resume from (``None`` to start at step 0).

    ``resume_from_hub``: the newest complete checkpoint on the Hub, downloaded into ``_hubresume/`` by the main
    process while the others wait (``args.main_process_first``), or step 0 when the Hub holds none yet (a run
    killed before its first push). ``resume_from_checkpoint=True``: the newest complete local ``checkpoint-N``
    (partial ones, e.g. cut by a full disk, are skipped); ``ConfigError`` if there is none.
    """
    check_resume_request(callback, resume_from_checkpoint, resume_from_hub)
    if resume_from_hub:
        assert callback is not None
        download_dir = Path(output_dir) / RESUME_DOWNLOAD_DIRNAME
        if args is None:
            return _download_resume_point(callback, download_dir)
        with args.main_process_first(local=False, desc="downloading the checkpoint to resume from"):
            if args.process_index == 0:
                return _download_resume_point(callback, download_dir)
            return _chosen_resume_point(download_dir)
    if resume_from_checkpoint is True:
        path = newest_complete_checkpoint(output_dir)
        if path is None:
            raise ConfigError(f"Nothing to resume: {output_dir} holds no complete checkpoint-N folder.")
        _say_resuming(path, f"the newest complete checkpoint in {output_dir}")
        return str(path)
    if resume_from_checkpoint:
        _say_resuming(Path(resume_from_checkpoint), "as asked")
    return resume_from_checkpoint or None


def _say_resuming(checkpoint: Path, why: str) -> None:
    if is_main_process():
        logger.info("Resuming from %s (step %s), %s.", checkpoint, checkpoint_step(checkpoint), why)


_CHOICE_FILE = "resume.json"


def _download_resume_point(callback: HubPushCallback, download_dir: Path) -> str | None:
    settings = callback.settings
    if not settings.push_resumable_state:
        logger.warning(
            "resume_from_hub=True while hub_push_resumable_state is off: this run's own checkpoints will not be "
            "resumable from the Hub."
        )
    found = resume_checkpoint_from_hub(
        callback.publisher.repo_id,
        download_dir,
        branch_template=settings.branch_template,
        token=callback.publisher.explicit_token,
        endpoint=settings.endpoint,
        timeouts=settings.request_timeouts,
        retry=settings.retry,
    )
    path = None if found is None else str(found.path)
    download_dir.mkdir(parents=True, exist_ok=True)
    (download_dir / _CHOICE_FILE).write_text(json.dumps({"path": path}))  # for the other processes
    if path is None:
        logger.warning("No complete checkpoint on the Hub to resume from: training starts at step 0.")
    else:
        _say_resuming(Path(path), f"the newest complete checkpoint on the Hub, branch {found.branch}")
    return path


def _chosen_resume_point(download_dir: Path) -> str | None:
    """What the main process downloaded (read by the other processes after it is done)."""
    return json.loads((download_dir / _CHOICE_FILE).read_text())["path"]


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
    finished only. Only the main process pushes; the others get no report.
    """
    state = Publishing(callback)
    if callback is None or not is_main_process():
        yield state
        return
    callback.prepare()
    publisher = callback.publisher
    callback.finish_on_train_end = False  # the recipe pushes the final adapter first, then finishes
    try:
        yield state
    except KeyboardInterrupt:
        state.report = _finish(publisher, timeout=0.0)
        raise
    except BaseException:
        state.report = _finish(publisher)
        raise
    finally:
        callback.finish_on_train_end = True
    state.report = _finish(publisher, raise_on_failure=True)


def _finish(publisher: Any, *, timeout: float | None = None, raise_on_failure: bool = False) -> HubPushReport | None:
    if not publisher.started:
        return None
    return publisher.finish(timeout, raise_on_failure=raise_on_failure)
