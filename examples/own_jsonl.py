"""Fine-tune on your own chat file: any supported format (OpenAI messages, ShareGPT, Alpaca, prompt/response,
prompt/completion, or text already in the Phi-3 format) is detected and validated before training starts.

    python examples/own_jsonl.py my_chats.jsonl --hub-model-id you/my-phi3-lora
    python examples/own_jsonl.py my_chats.jsonl --skip-bad-rows     # train on the good rows, report the rest
    python examples/own_jsonl.py --tiny                             # offline on the tiny Phi-3
"""

from __future__ import annotations

import argparse

from _offline import TINY_TRAINING, add_tiny_flag, output_dir, tiny_model_and_data

from phi3_lora_hub import DataError, Phi3LoraRecipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", help="your .jsonl/.json/.csv/.parquet file")
    add_tiny_flag(parser)
    parser.add_argument("--hub-model-id", default=None)
    parser.add_argument("--skip-bad-rows", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        model, dataset = tiny_model_and_data()
        training = TINY_TRAINING
    elif args.dataset:
        model, dataset, training = "microsoft/Phi-3-mini-4k-instruct", args.dataset, {}
    else:
        parser.error("pass a dataset file (or --tiny)")

    recipe = Phi3LoraRecipe(
        model,
        dataset,
        eval_size=0.05,
        on_bad_rows="skip" if args.skip_bad_rows else "raise",
        hub_model_id=args.hub_model_id,
        output_dir=output_dir(args.output_dir, "phi3-my-lora"),
        training=training,
    )
    try:
        data = recipe.prepare_data()
    except DataError as error:  # every problem, with its row number, before any GPU time is spent
        print(error)
        return 1
    print("train:", data.train_report.summary())
    print(recipe.train())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
