"""An offline tiny Phi-3: the real architecture at toy sizes, with a tokenizer that speaks the Phi-3 chat format.

The quickstart, the tests and the benchmarks train this model, because real weights cannot be downloaded here.
It is a genuine ``Phi3ForCausalLM`` (fused ``qkv_proj`` and ``gate_up_proj``, sliding window, untied embeddings,
``vocab_size`` padded above the tokenizer length like the real 32064 > 32011), so everything the recipe does to
it is what it would do to Phi-3-mini.

The tokenizer is built like the real one (SentencePiece-style BPE with byte fallback, Phi-3's added tokens with
``rstrip``, left padding, pad = eos, the real chat template) but trained in a fraction of a second on this
project's sample data. Given the path of a real Phi-3 tokenizer, the tiny model is built around that tokenizer
instead (``vocab_size`` 32064).

Public ways to get it: ``Phi3LoraRecipe(model="tiny")`` (or ``model: tiny`` in a recipe YAML), which builds it on
first use (about 30 s on 2 CPU cores, with a progress bar) and reuses the cached copy afterwards;
``phi3-lora-hub tiny``, which prints the directory (for ``--base-model`` options); and :func:`tiny_phi3_cache_dir`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from phi3_lora_hub import phi3_format
from phi3_lora_hub.atomic_write import build_directory_once
from phi3_lora_hub.data.prepare import cache_root
from phi3_lora_hub.data.sample import COUNTRIES, plain_conversations, sample_conversations
from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_conversations

TINY_ALIAS = "tiny"
"""The model name that stands for the default tiny Phi-3 (a folder named ``tiny`` is ``./tiny``)."""
_BUILD_VERSION = 2  # bump when the builder changes what it writes, to invalidate cached tiny models
BYTE_TOKENS = tuple(f"<0x{value:02X}>" for value in range(256))
_GENERAL_TEXT = (
    "Hello! How can I help you today? Thank you, that is a good question. I am not sure, please tell me more. "
    "Yes. No. Maybe. The answer is simple: it depends on what you need. Here is a short summary of the main points. "
    "What would you like to know about travel, food, weather, history, science, music, sport or art? "
    "One, two, three, four, five, six, seven, eight, nine, ten. Monday Tuesday Wednesday Thursday Friday. "
    "Please write a poem about the sea. Explain why the sky is blue. Translate this sentence into French. "
)


@dataclass(frozen=True)
class TinyPhi3Config:
    """Sizes of the tiny model. The defaults train visibly on a 2-core CPU in about a minute."""

    hidden_size: int = 96
    intermediate_size: int = 288
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 4096
    sliding_window: int = 2047
    tokenizer_vocab_size: int = 1024
    """Number of BPE pieces (special and byte tokens included) when the tokenizer is built here."""
    pad_vocab_to_multiple_of: int = 64
    """The embedding matrix is padded above ``len(tokenizer)`` to a multiple of this, as in Phi-3 (32064)."""
    seed: int = 0
    pretrain_steps: int = 300
    """Full-parameter steps on terse geography chats, so the base is a small language model, not noise."""


def _tokenizer_corpus() -> list[str]:
    texts = [_GENERAL_TEXT]
    for row in sample_conversations(200, seed=12345):
        texts.extend(message["content"] for message in row["messages"])
    texts.extend(" ".join(country) for country in COUNTRIES)
    return texts


def build_tiny_tokenizer(vocab_size: int = TinyPhi3Config.tokenizer_vocab_size):
    """Build a Phi-3-style fast tokenizer trained on this project's own text, with no network access."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def blank(model) -> Tokenizer:
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        return tokenizer

    # Learn merges, then lay the vocabulary out like Llama/Phi-3: <unk> <s> </s>, the 256 byte tokens, pieces.
    leading = [phi3_format.UNK, phi3_format.BOS, "</s>", *BYTE_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=leading, show_progress=False)
    learner = blank(models.BPE(unk_token=phi3_format.UNK))
    # Learn pieces within words only, as SentencePiece does; the final tokenizer has no pre-tokenizer, like Phi-3's.
    learner.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    learner.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    learned = json.loads(learner.to_str())["model"]
    vocab = {token: index for index, token in enumerate(leading)}
    for token, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in learned["merges"]]
    tokenizer = blank(
        models.BPE(vocab=vocab, merges=merges, unk_token=phi3_format.UNK, byte_fallback=True, fuse_unk=True)
    )
    tokenizer.add_special_tokens(
        [AddedToken(phi3_format.UNK, normalized=False), AddedToken(phi3_format.BOS, normalized=False)]
    )
    tokenizer.add_tokens([AddedToken("</s>", rstrip=True, normalized=False)])
    tokenizer.add_special_tokens(
        [AddedToken(token, rstrip=token != phi3_format.EOS, normalized=False) for token in phi3_format.ADDED_TOKENS]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=phi3_format.BOS,
        eos_token=phi3_format.EOS,
        unk_token=phi3_format.UNK,
        pad_token=phi3_format.EOS,
        padding_side="left",
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        chat_template=phi3_format.CHAT_TEMPLATE,
    )


def _pretrain(model, tokenizer, steps: int, seed: int, batch_size: int = 32, progress: bool = False) -> None:
    """A short, deterministic full-parameter run (whole-sequence loss) on terse chats and on plain prose.

    The prose (the sample data's sentences, outside any chat) gives every word of the vocabulary a trained
    output embedding, as a real pretrained model has; the chats teach the terse answering style.
    """
    import torch

    chats = [row["messages"] for row in plain_conversations(768, seed=seed)]
    sequences = tokenize_conversations(tokenizer, chats, assistant_only_loss=False).input_ids
    prose = [" ".join(m["content"] for m in row["messages"][1:]) for row in sample_conversations(256, seed=seed + 2)]
    sequences += tokenizer(prose, add_special_tokens=False)["input_ids"]
    width = max(map(len, sequences))
    pad = tokenizer.convert_tokens_to_ids(phi3_format.UNK)
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in sequences])
    labels = torch.tensor([row + [IGNORE_INDEX] * (width - len(row)) for row in sequences])
    mask = (labels != IGNORE_INDEX).long()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal only, so logs and notebooks' captured output get no control characters
    for _ in tqdm(range(steps), desc="Building the tiny Phi-3", unit="step", disable=None if progress else True):
        pick = torch.randint(0, len(ids), (batch_size,), generator=generator)
        loss = model(input_ids=ids[pick], attention_mask=mask[pick], labels=labels[pick]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def build_tiny_phi3(
    output_dir: str | Path,
    *,
    config: TinyPhi3Config | None = None,
    tokenizer_path: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write a tiny Phi-3 model, its tokenizer and generation config to ``output_dir`` and return the path.

    ``output_dir`` then loads with ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``
    like a real checkpoint. With ``tokenizer_path`` (a directory holding a real Phi-3 tokenizer) the model is
    built around that tokenizer and its ``vocab_size`` is the real 32064. Building is deterministic for a given
    config. ``progress`` shows a progress bar on a terminal while the model is pretrained.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Phi3Config, Phi3ForCausalLM

    config = config or TinyPhi3Config()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer_path is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
        vocab_size = 32064 if len(tokenizer) <= 32064 else len(tokenizer)
    else:
        tokenizer = build_tiny_tokenizer(config.tokenizer_vocab_size)
        multiple = config.pad_vocab_to_multiple_of
        vocab_size = -(-(len(tokenizer) + 1) // multiple) * multiple
    ids = tokenizer.convert_tokens_to_ids
    model_config = Phi3Config(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_attention_heads,
        max_position_embeddings=config.max_position_embeddings,
        original_max_position_embeddings=config.max_position_embeddings,
        sliding_window=config.sliding_window,
        tie_word_embeddings=False,
        bos_token_id=ids(phi3_format.BOS),
        eos_token_id=ids(phi3_format.EOS),
        pad_token_id=ids(phi3_format.EOS),
    )
    torch.manual_seed(config.seed)
    model = Phi3ForCausalLM(model_config)
    if config.pretrain_steps:
        _pretrain(model, tokenizer, config.pretrain_steps, config.seed, progress=progress)
    model.generation_config = GenerationConfig(
        bos_token_id=ids(phi3_format.BOS),
        eos_token_id=[ids(token) for token in phi3_format.STOP_TOKENS],
        pad_token_id=ids(phi3_format.EOS),
    )
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "tiny_phi3.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return output_dir


def tiny_phi3_cache_dir(
    config: TinyPhi3Config | None = None, tokenizer_path: str | Path | None = None, *, progress: bool = False
) -> Path:
    """Build the tiny model once per config and reuse it: returns the cached directory (built if missing, with a
    progress bar on a terminal when ``progress``)."""
    import hashlib

    config = config or TinyPhi3Config()
    key = json.dumps([asdict(config), str(tokenizer_path) if tokenizer_path else None, _BUILD_VERSION], sort_keys=True)
    directory = cache_root().parent / "tiny" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not (directory / "tiny_phi3.json").is_file():
        build_directory_once(  # built concurrently by another process: theirs is kept
            directory,
            lambda staging: build_tiny_phi3(staging, config=config, tokenizer_path=tokenizer_path, progress=progress),
        )
    return directory


def resolve_model_alias(model: str) -> str:
    """``model`` itself, or for :data:`TINY_ALIAS` the directory of the default tiny Phi-3 (built on first use)."""
    if model != TINY_ALIAS:
        return model
    return str(tiny_phi3_cache_dir(progress=True))
