"""The loss curve pushed beside the card (``loss_curve.png``): training and evaluation loss against the step.

Drawn with a bare matplotlib ``Figure`` on the Agg canvas, never through ``pyplot``: no global figure state and
no GUI backend, so it is safe in the background push thread while training runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def loss_points(history: Sequence[dict[str, Any]], key: str, up_to: int | None = None) -> list[tuple[int, float]]:
    """``(step, value)`` of every log entry that has ``key``, up to step ``up_to``."""
    return [
        (entry["step"], float(entry[key]))
        for entry in history
        if isinstance(entry.get(key), (int, float))
        and isinstance(entry.get("step"), int)
        and (up_to is None or entry["step"] <= up_to)
    ]


def draw_loss_curve(history: Sequence[dict[str, Any]], path: str | Path, *, up_to: int | None = None) -> bool:
    """Write the loss curve of ``history`` (up to step ``up_to``) as a PNG; ``False`` when nothing was logged."""
    train = loss_points(history, "loss", up_to)
    evaluation = loss_points(history, "eval_loss", up_to)
    if not train and not evaluation:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 3.6), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(
            *zip(*train, strict=True), label="training loss", color="#1f77b4", marker="." if len(train) < 30 else None
        )
    if evaluation:
        axes.plot(*zip(*evaluation, strict=True), label="evaluation loss", color="#d62728", marker="o")
    last = max(step for step, _ in train + evaluation)
    axes.set_title(f"Loss up to step {last}")
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    # No creation time in the PNG: the same history gives the same bytes, so re-pushing it changes nothing.
    figure.savefig(path, format="png", metadata={"Software": None})
    return True
