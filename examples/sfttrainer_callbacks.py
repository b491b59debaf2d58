"""A plain TRL ``SFTTrainer`` run with all of phi3-lora-hub's callbacks, and no recipe: every checkpoint holds
sample answers, Phi-3's generation config and a model card, and is published to the Hub.

    python examples/sfttrainer_callbacks.py --hub-model-id you/phi3-sft-lora     # Phi-3-mini on UltraChat (GPU)
    python examples/sfttrainer_callbacks.py --tiny                              # offline tiny Phi-3, local Hub

At each save ``SampleGenerationsCallback`` answers two fixed prompts (``sample_generations.json``),
``CheckpointFilesCallback`` writes ``generation_config.json`` (it stops on Phi-3's end of turn), ``ModelCardCallback``
writes ``README.md`` and ``loss_curve.png``, and ``HubPushCallback`` stages the checkpoint's adapter files and pushes
them, with a card of its own for the repository, to branch ``step-N`` and to ``main`` in the background.
``trainer.train()`` returns after a flush bounded by ``flush_timeout``, and ``callback.report`` says which
checkpoints reached the Hub. The token comes from ``HF_TOKEN`` or ``hf auth login``; it is never put into the
training arguments.

With ``--tiny`` and no ``HF_ENDPOINT`` set, a local Hub is served on 127.0.0.1 for the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _offline import TINY_TRAINING, add_tiny_flag, output_dir, tiny_model_and_data


def start_local_hub():
    """A local Hub on 127.0.0.1 for this process, started before huggingface_hub is imported (it reads HF_ENDPOINT)."""
    from phi3_lora_hub.local_hub import LocalHub

    assert "huggingface_hub" not in sys.modules, "start the local Hub before importing Hugging Face libraries"
    hub = LocalHub(tempfile.mkdtemp(prefix="phi3-example-hub-"), port=0).start()
    os.environ.update(hub.env())  # HF_TOKEN: the hub root's random write token
    return hub


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tiny_flag(parser)
    parser.add_argument("--hub-model-id", default=None, help="namespace/name of the Hub repository to push to")
    parser.add_argument("--resumable", action="store_true", help="also push optimizer/scheduler/RNG state")
    args = parser.parse_args()
    if not args.tiny and not args.hub_model_id:
        parser.error("pass --hub-model-id (or --tiny)")
    hub = start_local_hub() if args.tiny and "HF_ENDPOINT" not in os.environ else None
    try:
        return train(args)
    finally:
        if hub is not None:
            hub.stop()


def train(args: argparse.Namespace) -> int:
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from trl import SFTConfig, SFTTrainer

    from phi3_lora_hub import CheckpointFilesCallback, HubPushCallback, ModelCardCallback, SampleGenerationsCallback

    if args.tiny:
        from phi3_lora_hub.model.tiny import resolve_model_alias

        alias, data_file = tiny_model_and_data()
        model_name = resolve_model_alias(alias)  # the tiny Phi-3's directory, as `phi3-lora-hub tiny` prints it
        train_data = load_dataset("json", data_files=data_file, split="train")
        training = {**TINY_TRAINING, "use_cpu": True}
        repo_id = args.hub_model_id or "tester/phi3-sft-example"
        dataset = "the bundled sample conversations"
    else:
        model_name = "microsoft/Phi-3-mini-4k-instruct"
        train_data = load_dataset("HuggingFaceH4/ultrachat_200k", split="train_sft[:2000]")
        training = {"max_steps": 200, "per_device_train_batch_size": 4, "learning_rate": 1e-4, "save_steps": 50}
        repo_id = args.hub_model_id
        dataset = "HuggingFaceH4/ultrachat_200k"

    tokenizer = AutoTokenizer.from_pretrained(model_name)
    tokenizer.pad_token = tokenizer.unk_token  # never pad with <|endoftext|>: the model would learn to ignore it
    model = AutoModelForCausalLM.from_pretrained(model_name, dtype="auto")
    lora = LoraConfig(
        r=16, lora_alpha=32, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], task_type="CAUSAL_LM"
    )
    prompts = [
        [{"role": "user", "content": "What is the capital of Peru?"}],
        [{"role": "user", "content": "Which way does a compass needle point?"}],
    ]
    callback = HubPushCallback(repo_id, push_resumable_state=args.resumable)
    callbacks = [
        SampleGenerationsCallback(prompts, GenerationConfig(do_sample=False, max_new_tokens=32)),
        CheckpointFilesCallback(),  # generation_config.json with Phi-3's stop ids, from the tokenizer
        ModelCardCallback(repo_id, dataset=dataset),  # the base model: as the adapter config records it
        callback,  # last: it pushes what the others wrote; checks the token when the trainer is created
    ]
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=output_dir(args.output_dir, "phi3-sft-lora"), report_to="none", **training),
        train_dataset=train_data.select_columns(["messages"]),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
    )
    trainer.train()
    print(callback.report.summary())
    return 0 if callback.report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
