"""Readable training progress: a progress bar on a terminal, log lines elsewhere, never raw dicts.

The Trainer prints every log as a Python dict (``{'loss': '6.995', 'grad_norm': ...}``), inside a tqdm bar that
writes carriage returns and redraws even when the output is a file or a pipe. :func:`install_progress` keeps the
bar on a terminal, with each log written as one line (``step 10/300: loss 1.234, learning rate 0.0001``), and
replaces the bar by those lines, through the ``phi3_lora_hub`` logger, when the output is not a terminal. Jupyter's
own progress widget (``NotebookProgressCallback``) is left as it is.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from phi3_lora_hub.progress_bars import output_is_terminal, progress_bars_fit

logger = logging.getLogger("phi3_lora_hub.training")

# Log keys shown first, with their names for people; the others follow as they come.
_NAMES = {
    "loss": "loss",
    "eval_loss": "eval loss",
    "learning_rate": "learning rate",
    "grad_norm": "grad norm",
    "mean_token_accuracy": "token accuracy",
    "eval_mean_token_accuracy": "eval token accuracy",
    "train_loss": "mean training loss",
    "train_runtime": "seconds",
    "eval_runtime": "eval seconds",
}
_HIDDEN = {"epoch", "step", "total_flos", "num_tokens", "eval_num_tokens", "entropy", "eval_entropy"} | {
    f"{part}_{unit}_per_second" for part in ("train", "eval") for unit in ("samples", "steps")
}


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_logs(logs: dict[str, Any], step: int, max_steps: int) -> str:
    """One readable line for a Trainer log: ``step 10/300: loss 1.234, learning rate 0.0001``."""
    keys = [key for key in _NAMES if key in logs] + [k for k in logs if k not in _NAMES and k not in _HIDDEN]
    values = ", ".join(f"{_NAMES.get(key, key)} {_number(logs[key])}" for key in keys)
    return f"step {step}/{max_steps}: {values}"


class ReadableProgressCallback(ProgressCallback):
    """transformers' progress bar, writing each log as a readable line above the bar instead of a dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(describe_logs(logs, state.global_step, state.max_steps))


class LogLinesCallback(TrainerCallback):
    """Each Trainer log as one readable INFO line of the ``phi3_lora_hub.training`` logger (main process only)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.info(describe_logs(logs, state.global_step, state.max_steps))


def install_progress(trainer) -> None:
    """Swap the Trainer's dict-printing progress callbacks for readable ones (see the module docstring)."""
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback) is ProgressCallback or type(callback) is PrinterCallback:
            trainer.remove_callback(callback)
            bar = type(callback) is ProgressCallback and output_is_terminal()
            trainer.add_callback(ReadableProgressCallback() if bar else LogLinesCallback())


def close_progress_bars(trainer) -> None:
    """Close the Trainer's progress bars now (e.g. after Ctrl-C), so that they do not redraw after a message."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for bar in (callback.training_bar, callback.prediction_bar):
                if bar is not None:
                    bar.close()
            callback.training_bar = callback.prediction_bar = None


def quiet_library_progress_bars() -> None:
    """Turn off the progress bars of transformers, datasets and huggingface_hub where they do not fit.

    Their bars (loading weights, saving a prepared dataset, downloads) are redrawn with carriage returns, which a
    log file or a pipe keeps as clutter.
    """
    if progress_bars_fit():
        return
    import datasets
    import huggingface_hub
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
