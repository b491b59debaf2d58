"""``phi3-lora-hub chat --adapter DIR``: talk to a trained adapter in the terminal."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with a base model plus adapter",
        description="Interactive chat (or one --prompt) with a Phi-3 base model and a LoRA adapter.",
    )
    parser.add_argument("--adapter", help="adapter directory (omit to chat with the base model)")
    parser.add_argument("--base-model", help="base model id or directory (default: from the adapter's config)")
    parser.add_argument("--system", default=None, help="system prompt")
    parser.add_argument("--prompt", default=None, help="answer this one message and exit")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def base_model_of(adapter: str) -> str:
    """The base model an adapter was trained on, from its ``adapter_config.json``."""
    from phi3_lora_hub.errors import ConfigError

    config_path = Path(adapter) / "adapter_config.json"
    if not config_path.is_file():
        raise ConfigError(f"{adapter} is not an adapter directory (no adapter_config.json).")
    base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{config_path} does not name its base model; pass --base-model.")
    return base


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.errors import ConfigError
    from phi3_lora_hub.generation import generate_replies
    from phi3_lora_hub.model.loading import load_for_inference

    if args.adapter is None and args.base_model is None:
        raise ConfigError("Pass --adapter DIR (or --base-model to chat with a base model).")
    base = args.base_model or base_model_of(args.adapter)
    model, tokenizer = load_for_inference(base, args.adapter)
    history = [{"role": "system", "content": args.system}] if args.system else []
    settings = chat_generation_config(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )

    def answer(text: str) -> str:
        history.append({"role": "user", "content": text})
        reply = generate_replies(model, tokenizer, [history], settings)[0]
        history.append({"role": "assistant", "content": reply.text})
        return reply.text if reply.stopped else reply.text + " [cut at --max-new-tokens]"

    if args.prompt is not None:
        print(answer(args.prompt))
        return 0
    print("Chatting with", args.adapter or base, "(empty line or Ctrl-D to quit)")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        print("assistant>", answer(text))
    return 0
