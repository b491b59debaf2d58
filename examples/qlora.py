"""QLoRA on Phi-3-mini: the base model in 4-bit NF4 (double quantization, bf16 compute), LoRA on top.

Needs a CUDA GPU and bitsandbytes (`pip install 'phi3-lora-hub[qlora]'`); the base then takes ~2.3 GB of memory.

    python examples/qlora.py --dataset my_chats.jsonl
    python examples/qlora.py --tiny      # offline on the tiny Phi-3; plain LoRA when there is no GPU
"""

from __future__ import annotations

import argparse

from _offline import TINY_TRAINING, add_tiny_flag, output_dir, tiny_model_and_data

from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.hardware import detect_hardware


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tiny_flag(parser)
    parser.add_argument("--dataset", default="HuggingFaceH4/ultrachat_200k", help="Hub id or local file")
    parser.add_argument("--hub-model-id", default=None)
    args = parser.parse_args()

    quantization = "4bit"
    if args.tiny:
        model, dataset = tiny_model_and_data()
        training = TINY_TRAINING
        if not detect_hardware().cuda:
            # bitsandbytes' 4-bit kernels need CUDA; the recipe would refuse with a clear error before loading.
            print("No CUDA GPU: running the same recipe without 4-bit quantization.")
            quantization = None
    else:
        model, dataset = "microsoft/Phi-3-mini-4k-instruct", args.dataset
        training = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "learning_rate": 2e-4}
    recipe = Phi3LoraRecipe(
        model,
        dataset,
        quantization=quantization,
        dataset_split="train_sft" if dataset == "HuggingFaceH4/ultrachat_200k" else None,
        max_train_samples=None if args.tiny else 20_000,
        hub_model_id=args.hub_model_id,
        output_dir=output_dir(args.output_dir, "phi3-qlora"),
        training=training,
    )
    print(recipe.train())


if __name__ == "__main__":
    main()
