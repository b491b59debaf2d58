"""Where progress bars belong: on a terminal or in a notebook, never in files and pipes (no carriage-return clutter).

Every long job of the package (generation, perplexity, training) asks here before drawing a bar.
"""

from __future__ import annotations

import sys

from transformers.utils import is_in_notebook


def output_is_terminal() -> bool:
    """Whether progress goes to a terminal (where a progress bar can redraw itself)."""
    return sys.stderr.isatty()


def progress_bars_fit() -> bool:
    """Whether progress bars display well here: on a terminal or in a Jupyter notebook (as widgets)."""
    return output_is_terminal() or is_in_notebook()


def progress_bars(wanted: bool) -> bool:
    """Whether to draw a progress bar the caller ``wanted``: only where bars fit (no clutter in files and pipes)."""
    return wanted and progress_bars_fit()
