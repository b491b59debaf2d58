"""The Phi-3 reference workflow: LoRA on HuggingFaceH4/ultrachat_200k, as Microsoft's sample_finetune.py does it,
with its bugs fixed (LoRA learning rate, fused target modules, pad != eos, assistant-only loss).

    python examples/phi3_ultrachat.py                      # the real model on a GPU (~25M trainable parameters)
    python examples/phi3_ultrachat.py --hub-model-id you/phi3-ultrachat-lora
    python examples/phi3_ultrachat.py --tiny               # offline on the tiny Phi-3 (CPU, seconds)
"""

from __future__ import annotations

import argparse

from _offline import TINY_TRAINING, add_tiny_flag, output_dir, tiny_model_and_data

from phi3_lora_hub import Phi3LoraRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tiny_flag(parser)
    parser.add_argument("--hub-model-id", default=None, help="push every checkpoint to this Hub repository")
    parser.add_argument("--max-train-samples", type=int, default=None, help="train on the first N conversations")
    args = parser.parse_args()

    if args.tiny:
        model, dataset = tiny_model_and_data()
        recipe = Phi3LoraRecipe(
            model,
            dataset,
            eval_size=0.1,
            training=TINY_TRAINING,
            output_dir=output_dir(args.output_dir, "phi3-ultrachat-tiny"),
        )
    else:
        recipe = Phi3LoraRecipe(
            "microsoft/Phi-3-mini-4k-instruct",
            "HuggingFaceH4/ultrachat_200k",
            dataset_split="train_sft",
            eval_split="test_sft",
            max_train_samples=args.max_train_samples,
            max_eval_samples=500,
            hub_model_id=args.hub_model_id,
            output_dir=output_dir(args.output_dir, "phi3-ultrachat-lora"),
            training={
                "num_train_epochs": 1,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 4,
                "save_steps": 500,
                "eval_steps": 500,
            },
        )
    result = recipe.train()
    print(result)
    question = [{"role": "user", "content": "Give me three tips for writing clear emails."}]
    print("adapter says:", recipe.chat(question, max_new_tokens=128))


if __name__ == "__main__":
    main()
