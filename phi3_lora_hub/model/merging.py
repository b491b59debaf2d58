"""Merge a LoRA adapter into its base model and save a checkpoint that plain ``transformers`` loads."""

from __future__ import annotations

from pathlib import Path

from phi3_lora_hub.generation import phi3_generation_config
from phi3_lora_hub.model.loading import load_for_inference


def merge_adapter(base_model: str, adapter: str | Path, output_dir: str | Path, *, revision: str | None = None) -> Path:
    """Load ``base_model`` unquantized, apply ``adapter``, fold the LoRA weights in, and save to ``output_dir``.

    The result has no PEFT dependency: ``AutoModelForCausalLM.from_pretrained(output_dir)`` loads it, with the
    adapter's tokenizer and a generation config that stops on Phi-3's end-of-turn tokens.
    """

    model, tokenizer = load_for_inference(base_model, adapter, revision=revision)
    merged = model.merge_and_unload()
    merged.config.use_cache = True
    output_dir = Path(output_dir)
    merged.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    phi3_generation_config(tokenizer).save_pretrained(output_dir)
    return output_dir
