"""A plain TRL ``SFTTrainer`` and a plain ``transformers.Trainer`` on the tiny Phi-3, with no recipe anywhere.

``sft_run(tmp_path, callbacks)`` and ``trainer_run(tmp_path, callbacks)`` train a LoRA adapter for
``MAX_STEPS`` steps, saving a checkpoint every ``SAVE_STEPS``, and return the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MAX_STEPS = 4
SAVE_STEPS = 2
TRAINING: dict[str, Any] = {
    "max_steps": MAX_STEPS,
    "save_steps": SAVE_STEPS,
    "logging_steps": 1,
    "per_device_train_batch_size": 4,
    "learning_rate": 1e-3,
    "use_cpu": True,
    "report_to": "none",
    "disable_tqdm": True,
}


@pytest.fixture(scope="session")
def plain_parts(small_base):
    """What a user brings to their own trainer: a model directory, its tokenizer, chat rows and a LoRA config."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer

    from phi3_lora_hub.data.sample import sample_conversations

    tokenizer = AutoTokenizer.from_pretrained(small_base)
    tokenizer.pad_token = tokenizer.unk_token  # never pad with <|endoftext|>
    rows = Dataset.from_list(sample_conversations(16))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj"], task_type="CAUSAL_LM")
    return str(small_base), tokenizer, rows, lora


@pytest.fixture
def sft_args():
    """``sft_args(output_dir)``: the ``trl.SFTConfig`` of these short runs."""
    from trl import SFTConfig

    return lambda output_dir: SFTConfig(output_dir=str(output_dir), **TRAINING)


@pytest.fixture
def sft_run(plain_parts, sft_args):
    """``sft_run(output_dir, callbacks)``: a trained plain ``trl.SFTTrainer``."""
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    model_dir, tokenizer, rows, lora = plain_parts

    def run(output_dir: Path, callbacks: list[Any]) -> SFTTrainer:
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=sft_args(output_dir),
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=callbacks,
        )
        trainer.train()
        return trainer

    return run


@pytest.fixture
def trainer_run(plain_parts):
    """``trainer_run(output_dir, callbacks)``: a trained plain ``transformers.Trainer`` (PEFT model, causal LM)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    model_dir, tokenizer, rows, lora = plain_parts
    tokenized = rows.map(
        lambda row: tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True),
        remove_columns=rows.column_names,
    )

    def run(output_dir: Path, callbacks: list[Any]) -> Trainer:
        trainer = Trainer(
            model=get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora),
            args=TrainingArguments(output_dir=str(output_dir), **TRAINING),
            train_dataset=tokenized,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        trainer.train()
        return trainer

    return run
