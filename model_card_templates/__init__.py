"""The Jinja templates of the model card and of the Space README.

This top-level folder is their source; it ships inside the wheel as the package
``phi3_lora_hub.model_card_templates`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml).
"""
