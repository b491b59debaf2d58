"""The Space's Gradio app (``app.py``) and its ``requirements.txt``.

This top-level folder is their source; it ships inside the wheel as the package ``phi3_lora_hub.space_app``
(see ``[tool.setuptools.package-dir]`` in pyproject.toml), so ``space run`` and ``space deploy`` work from a wheel.
"""
