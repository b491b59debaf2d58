"""The loss curve pushed beside the card (``loss_curve.png``): training and evaluation loss against the step.

Drawn with Pillow rather than matplotlib, on purpose: the curve is redrawn for every push, in the background
thread, while training runs. matplotlib needs about 0.8 s to import and 40-90 ms of interpreter time per figure,
all of it holding the GIL that the training loop needs; this chart takes about 5 ms. The image is a deterministic
function of the history (no timestamps), so pushing the same history again changes nothing on the Hub.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50
TRAIN_COLOR, EVAL_COLOR = (31, 119, 180), (214, 39, 40)
GRID_COLOR, AXIS_COLOR, TEXT_COLOR = (228, 228, 228), (90, 90, 90), (30, 30, 30)


def loss_points(history: Sequence[dict[str, Any]], key: str, up_to: int | None = None) -> list[tuple[int, float]]:
    """``(step, value)`` of every log entry that has a finite ``key``, up to step ``up_to``."""
    return [
        (entry["step"], float(entry[key]))
        for entry in history
        if isinstance(entry.get(key), (int, float))
        and math.isfinite(entry[key])
        and isinstance(entry.get("step"), int)
        and (up_to is None or entry["step"] <= up_to)
    ]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering ``[low, high]``."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    first = math.ceil(low / step - 1e-9)
    return [(first + i) * step for i in range(int((high - low) / step + 1e-9) + 2) if (first + i) * step <= high + 1e-9]


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the spacing of ``ticks`` needs (0.25 apart: two decimals)."""
    spacing = ticks[1] - ticks[0] if len(ticks) > 1 else abs(value) or 1.0
    exponent = math.floor(math.log10(spacing) + 1e-9)
    quarter = round(spacing / 10**exponent, 6) == 2.5
    return f"{value:.{max(0, -exponent + quarter)}f}"


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


def _padded(low: float, high: float) -> tuple[float, float]:
    if high > low:
        margin = (high - low) * 0.05
        return low - margin, high + margin
    margin = abs(low) * 0.05 or 1.0  # a flat curve (or a single point) still gets a visible range
    return low - margin, high + margin


def draw_loss_curve(history: Sequence[dict[str, Any]], path: str | Path, *, up_to: int | None = None) -> bool:
    """Write the loss curve of ``history`` (up to step ``up_to``) as a PNG; ``False`` when nothing was logged."""
    train = loss_points(history, "loss", up_to)
    evaluation = loss_points(history, "eval_loss", up_to)
    if not train and not evaluation:
        return False
    from PIL import Image, ImageDraw

    points = train + evaluation
    x_low, x_high = min(step for step, _ in points), max(step for step, _ in points)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = _padded(min(value for _, value in points), max(value for _, value in points))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(step: float, value: float) -> tuple[float, float]:
        return (
            LEFT + (step - x_low) / (x_high - x_low) * plot_width,
            TOP + (y_high - value) / (y_high - y_low) * plot_height,
        )

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    small, large = _font(12), _font(15)
    x_ticks = [t for t in nice_ticks(x_low, x_high) if x_low <= t <= x_high]
    y_ticks = [t for t in nice_ticks(y_low, y_high) if y_low <= t <= y_high]
    for tick in x_ticks:
        x, _ = at(tick, y_low)
        draw.line([(x, TOP), (x, TOP + plot_height)], fill=GRID_COLOR)
        draw.text((x, TOP + plot_height + 6), tick_label(tick, x_ticks), fill=TEXT_COLOR, font=small, anchor="mt")
    for tick in y_ticks:
        _, y = at(x_low, tick)
        draw.line([(LEFT, y), (LEFT + plot_width, y)], fill=GRID_COLOR)
        draw.text((LEFT - 6, y), tick_label(tick, y_ticks), fill=TEXT_COLOR, font=small, anchor="rm")
    draw.rectangle([LEFT, TOP, LEFT + plot_width, TOP + plot_height], outline=AXIS_COLOR)
    for series, color, dots in ((train, TRAIN_COLOR, len(train) < 30), (evaluation, EVAL_COLOR, True)):
        pixels = [at(step, value) for step, value in series]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2, joint="curve")
        for x, y in pixels if dots or len(pixels) == 1 else ():
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
    last = max(step for step, _ in points)
    draw.text((WIDTH / 2, 12), f"Loss up to step {last}", fill=TEXT_COLOR, font=large, anchor="mt")
    draw.text((LEFT + plot_width / 2, HEIGHT - 8), "step", fill=TEXT_COLOR, font=small, anchor="mb")
    draw.text((8, TOP - 8), "loss", fill=TEXT_COLOR, font=small, anchor="lb")
    legend = [
        (name, color)
        for name, color, series in (("training", TRAIN_COLOR, train), ("evaluation", EVAL_COLOR, evaluation))
        if series
    ]
    for index, (name, color) in enumerate(legend):
        y = TOP + 12 + index * 18
        x = LEFT + plot_width - 140
        draw.line([(x, y), (x + 22, y)], fill=color, width=3)
        draw.text((x + 28, y), f"{name} loss", fill=TEXT_COLOR, font=small, anchor="lm")
    image.save(path, format="PNG")
    return True
