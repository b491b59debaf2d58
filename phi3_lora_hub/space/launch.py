"""How the Space's Gradio app is queued and served: safe defaults for ``queue()`` and ``launch()``.

Gradio serves files at ``/gradio_api/file=<path>`` only from its upload/cache folder and from files the app
returned, and refuses dotfiles in the working directory; on top of that the Hugging Face home (with the token
file and the model cache), the token file wherever it is, and ``.env`` in the working directory are blocked
outright. Uploads are capped (the app takes none), errors are not sent to browsers (except the app's own
messages), and no share link is ever opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from phi3_lora_hub.space.settings import SpaceSettings

MAX_UPLOAD = "1mb"
GENERATION_CONCURRENCY_ID = "model"


def blocked_paths() -> list[str]:
    """Paths never served, whatever else allows them."""
    from huggingface_hub import constants

    paths = [constants.HF_HOME, constants.HF_TOKEN_PATH, os.path.join(os.getcwd(), ".env")]
    return sorted({str(Path(path).expanduser().resolve()) for path in paths})


def queue_kwargs(settings: SpaceSettings) -> dict[str, Any]:
    """For ``demo.queue(...)``: a bounded queue; events run one at a time unless they say otherwise."""
    return {"max_size": settings.queue_size, "default_concurrency_limit": 1}


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
