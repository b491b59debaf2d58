"""Load a Phi-3 base model and tokenizer with the settings LoRA training on Phi-3 needs.

- ``trust_remote_code=False`` always: transformers has a native Phi-3, and the legacy remote code breaks on
  current transformers (and would execute code from the Hub).
- Only ``model_type == "phi3"`` is accepted, checked from the config before any weights are read.
- The embedding matrix is never resized: Phi-3's tokenizer has 32011 entries but the embeddings 32064 rows, and
  resizing to ``len(tokenizer)`` would cut them.
- Training pads with ``<unk>`` on the right, so padding is never confused with ``<|endoftext|>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from phi3_lora_hub import phi3_format
from phi3_lora_hub.errors import ModelError
from phi3_lora_hub.hardware import Hardware, detect_hardware
from phi3_lora_hub.local_paths import looks_local, missing_directory_message
from phi3_lora_hub.model.quantization import bnb_4bit_config, check_quantization

DTYPES = {"bfloat16", "float16", "float32"}


def model_reference(model: Any) -> str:
    """The id or path a model was loaded from (for configs and cards)."""
    if isinstance(model, (str, Path)):
        return str(model)
    return str(getattr(model, "name_or_path", "") or getattr(model.config, "name_or_path", "") or "<in-memory model>")


def check_phi3_config(config, source: str) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type != "phi3":
        raise ModelError(
            f"{source} is a {model_type!r} model; phi3-lora-hub trains Phi-3 models (model_type 'phi3', e.g. "
            "microsoft/Phi-3-mini-4k-instruct). Phi-3-small and Phi-3-vision use other architectures."
        )


MODEL_PATH_HINT = (
    "Pass a directory holding a Phi-3 checkpoint (config.json, tokenizer files, weights), a Hub id such as "
    "microsoft/Phi-3-mini-4k-instruct, or model='tiny' for the offline tiny Phi-3."
)
ADAPTER_PATH_HINT = (
    "Pass the adapter directory a run saved (<output_dir>/adapter, holding adapter_config.json) or a Hub repo id "
    "namespace/name."
)


def check_local_directory(what: str, reference: str, marker: str, hint: str) -> None:
    """Raise ``ModelError`` when ``reference`` is a local path (not a Hub id) that is not a usable directory.

    Without this, transformers and peft report a missing local directory as an invalid or missing Hub repo.
    """
    if looks_local(reference):
        message = missing_directory_message(what, reference, marker, hint)
        if message is not None:
            raise ModelError(message)


def load_phi3_config(model: str, revision: str | None):
    check_local_directory("Model", model, "config.json", MODEL_PATH_HINT)
    try:
        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=False)
    except OSError as error:
        raise ModelError(f"Cannot load the config of {model!r}: {error}") from error
    check_phi3_config(config, repr(model))
    return config


def load_tokenizer(model: str, revision: str | None = None, *, for_training: bool = True):
    """Load the model's fast tokenizer; for training pad with ``<unk>`` on the right, else left-pad for generation."""
    check_local_directory("Model", model, "tokenizer_config.json", MODEL_PATH_HINT)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=False)
    except OSError as error:
        raise ModelError(f"Cannot load the tokenizer of {model!r}: {error}") from error
    if not tokenizer.is_fast:
        raise ModelError(f"The tokenizer of {model!r} is not a fast tokenizer; install `tokenizers`.")
    missing = [
        token for token in phi3_format.STOP_TOKENS if tokenizer.convert_tokens_to_ids(token) == tokenizer.unk_token_id
    ]
    if missing:
        raise ModelError(f"The tokenizer of {model!r} lacks the Phi-3 special tokens {missing}.")
    prepare_tokenizer(tokenizer, for_training=for_training)
    return tokenizer


def prepare_tokenizer(tokenizer, *, for_training: bool) -> None:
    """Set padding for training (``<unk>`` on the right) or for batched generation (left)."""
    if for_training:
        tokenizer.pad_token = tokenizer.unk_token or phi3_format.UNK
        tokenizer.padding_side = "right"
    else:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token
        tokenizer.padding_side = "left"


def stop_token_ids(tokenizer) -> list[int]:
    """Ids of ``<|endoftext|>``, ``<|assistant|>`` and ``<|end|>`` in this tokenizer."""
    return [tokenizer.convert_tokens_to_ids(token) for token in phi3_format.STOP_TOKENS]


def load_base_model(
    model: Any,
    *,
    revision: str | None = None,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    quantization: str | None = None,
    hardware: Hardware | None = None,
    training: bool = True,
    token: str | bool | None = None,
):
    """Load (or check) a Phi-3 base model: the project's one loader, for training, evaluation and the Space.

    ``model`` may be a Hub id, a local directory or an already loaded ``PreTrainedModel``. The config is checked
    before any weights are read; QLoRA support (``quantization='4bit'``, training only) is checked before
    anything is downloaded. ``training=True`` turns the KV cache off (useless while training, and it costs
    memory); ``training=False`` returns the model frozen, in eval mode, on the GPU when there is one.
    """
    hardware = hardware or detect_hardware()
    check_quantization(quantization, hardware)
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    if not isinstance(model, (str, Path)):
        check_phi3_config(model.config, type(model).__name__)
        return model
    load_phi3_config(str(model), revision)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "token": token,
        "trust_remote_code": False,
        "dtype": getattr(torch, dtype),
        "attn_implementation": attn_implementation,
    }
    if quantization == "4bit":
        kwargs["quantization_config"] = bnb_4bit_config(hardware)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    loaded = AutoModelForCausalLM.from_pretrained(str(model), **kwargs, **hub_kernels_arguments())
    if training:
        loaded.config.use_cache = False  # the KV cache is useless while training and costs memory
        return loaded
    if hardware.cuda:
        loaded = loaded.to("cuda")
    loaded.eval()
    loaded.requires_grad_(False)
    return loaded


def load_for_inference(base_model: str, adapter: str | Path | None = None, *, revision: str | None = None):
    """Load ``base_model`` (and the local ``adapter`` directory on top, when given) for generation, in bfloat16
    where the hardware supports it (else float32); returns ``(model, tokenizer)``.

    The tokenizer saved with the adapter is preferred, so the chat format matches what was trained.
    """
    hardware = detect_hardware()
    if adapter is not None:
        check_local_directory("Adapter", str(adapter), "adapter_config.json", ADAPTER_PATH_HINT)
    model = load_base_model(
        base_model,
        revision=revision,
        dtype="bfloat16" if hardware.bf16 else "float32",
        hardware=hardware,
        training=False,
    )
    with_tokenizer = adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
    tokenizer = (
        load_tokenizer(str(adapter), for_training=False)
        if with_tokenizer
        else load_tokenizer(base_model, revision, for_training=False)
    )
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
        model.eval()
    return model, tokenizer


def hub_kernels_arguments() -> dict[str, bool]:
    """``from_pretrained`` keywords that keep a load working without the ``kernels`` package.

    transformers 5 turns ``use_kernels`` on by default (unless ``USE_HUB_KERNELS`` says no) and then raises
    "Kernels are not available" where ``kernels`` is not installed; the recipe never needs Hub kernels, so it
    asks for them only where the package is there to honour the default.
    """
    from transformers.utils import is_kernels_available

    return {} if is_kernels_available() else {"use_kernels": False}
