"""How the Space's Gradio app is queued and served: safe defaults for ``queue()`` and ``launch()``.

Gradio serves files at ``/gradio_api/file=<path>`` only from its upload/cache folder and from files the app
returned, and refuses dotfiles in the working directory; on top of that the Hugging Face home (with the token
file and the model cache), the token file wherever it is, and ``.env`` in the working directory are blocked
outright. Uploads are capped (the app takes none), errors are not sent to browsers (except the app's own
messages), and no share link is ever opened.

Answers are generated one batch at a time (both panes of one visitor together); other requests wait in Gradio's
queue, which holds :func:`default_queue_size` requests unless ``PHI3_SPACE_QUEUE_SIZE`` says otherwise. A visitor
arriving when it is full is turned away with Gradio's "the queue is full" message and may send again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from phi3_lora_hub.space.settings import SpaceSettings

MAX_UPLOAD = "1mb"
GENERATION_CONCURRENCY_ID = "model"
QUEUE_PER_GPU = 256
QUEUE_PER_CPU_CORE = 32
MIN_QUEUE = 64


def blocked_paths() -> list[str]:
    """Paths never served, whatever else allows them."""
    from huggingface_hub import constants

    paths = [constants.HF_HOME, constants.HF_TOKEN_PATH, os.path.join(os.getcwd(), ".env")]
    return sorted({str(Path(path).expanduser().resolve()) for path in paths})


def default_queue_size(gpus: int | None = None, cpu_cores: int | None = None) -> int:
    """How many requests may wait, from the hardware: :data:`QUEUE_PER_GPU` per GPU, else
    :data:`QUEUE_PER_CPU_CORE` per CPU core, never fewer than :data:`MIN_QUEUE`. ``gpus``/``cpu_cores`` default to
    this machine's. A waiting request costs a connection and a few kilobytes; what grows is the wait (requests are
    answered one batch at a time), which Gradio shows each visitor as a queue position."""
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        return QUEUE_PER_GPU * gpus
    return max(MIN_QUEUE, QUEUE_PER_CPU_CORE * (cpu_cores or os.cpu_count() or 1))


def queue_kwargs(settings: SpaceSettings) -> dict[str, Any]:
    """For ``demo.queue(...)``: a bounded queue (``settings.queue_size``, else :func:`default_queue_size`); events
    run one at a time unless they say otherwise."""
    return {"max_size": settings.queue_size or default_queue_size(), "default_concurrency_limit": 1}


def launch_kwargs(*, server_name: str | None = None, server_port: int | None = None) -> dict[str, Any]:
    """For ``demo.launch(...)``. ``server_name``/``server_port`` default to Gradio's (``GRADIO_SERVER_NAME``,
    127.0.0.1 locally; Spaces set 0.0.0.0 themselves)."""
    kwargs: dict[str, Any] = {
        "max_file_size": MAX_UPLOAD,
        "blocked_paths": blocked_paths(),
        "show_error": False,
        "share": False,
        "footer_links": ["api", "gradio"],
    }
    if server_name is not None:
        kwargs["server_name"] = server_name
    if server_port is not None:
        kwargs["server_port"] = server_port
    return kwargs
