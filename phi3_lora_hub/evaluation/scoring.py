"""The generation metrics as plain functions: the ``evaluate`` modules and the pairwise judge both call these.

Every function takes generations (raw or clean, see :mod:`phi3_lora_hub.evaluation.text`) and, where needed,
one reference answer per generation. Scales follow the libraries they come from: ROUGE-L, exact match and the
stop rate are fractions in [0, 1]; chrF and BLEU are sacreBLEU scores in [0, 100].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from phi3_lora_hub import phi3_format
from phi3_lora_hub.evaluation.text import answer_text, ended_turn, normalize

# Keyword arguments any shipped metric accepts and ignores when they are meant for another one, so that
# `evaluate.combine([...]).compute(...)` (which passes every keyword to every module) works. Anything else is a typo.
SHARED_KWARGS: frozenset[str] = frozenset(
    {
        "model",
        "tokenizer",
        "conversations",
        "batch_size",
        "max_length",
        "assistant_only",
        "progress",
        "use_stemmer",
        "ignore_case",
        "ignore_punctuation",
        "stop_tokens",
    }
)


def check_kwargs(metric: str, extra: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` for keyword arguments no shipped metric understands (they would be silently ignored)."""
    unknown = sorted(set(extra) - SHARED_KWARGS)
    if unknown:
        raise TypeError(
            f"{metric}: unknown keyword argument(s) {unknown}; "
            f"the phi3-lora-hub metrics accept {sorted(SHARED_KWARGS)}."
        )


def stop_tokens_or_default(stop_tokens: Sequence[str] | None) -> tuple[str, ...]:
    """``stop_tokens`` as a tuple, or Phi-3's three stop tokens when ``None``."""
    if isinstance(stop_tokens, str):
        raise TypeError("stop_tokens must be a list of strings, not one string")
    return phi3_format.STOP_TOKENS if stop_tokens is None else tuple(stop_tokens)


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; give one reference each.")
    if not predictions:
        raise ValueError("no predictions to score")


def _answers(predictions: Sequence[str], stop_tokens: Sequence[str]) -> list[str]:
    return [answer_text(text, stop_tokens) for text in predictions]


@lru_cache(maxsize=2)
def _rouge_scorer(use_stemmer: bool):
    from rouge_score import rouge_scorer

    # rouge_score logs "Using default tokenizer." through absl, which calls logging.basicConfig() when the root
    # logger has no handler: that would configure logging for the whole application (and print every INFO line of
    # phi3_lora_hub as "INFO:name:message" from then on). A placeholder handler while the scorer is built stops it.
    logging.getLogger("absl").setLevel(logging.WARNING)
    root, placeholder = logging.getLogger(), logging.NullHandler()
    root.addHandler(placeholder)
    try:
        # split_summaries=False: splitting would call nltk.sent_tokenize, which needs the punkt data (a download).
        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer, split_summaries=False)
    finally:
        root.removeHandler(placeholder)


def rouge_l_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    use_stemmer: bool = False,
    stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS,
) -> list[float]:
    """ROUGE-L F1 of each answer against its reference (``rouge_score``'s tokenizer: lowercase ASCII words)."""
    _check_pairs(predictions, references)
    scorer = _rouge_scorer(use_stemmer)
    answers = _answers(predictions, stop_tokens)
    return [scorer.score(ref, answer)["rougeL"].fmeasure for answer, ref in zip(answers, references, strict=True)]


def rouge_l(predictions: Sequence[str], references: Sequence[str], **options: Any) -> float:
    """Mean ROUGE-L F1 over the pairs."""
    scores = rouge_l_scores(predictions, references, **options)
    return sum(scores) / len(scores)


def chrf(
    predictions: Sequence[str], references: Sequence[str], *, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS
) -> float:
    """Corpus chrF (sacreBLEU defaults: character 6-grams, beta 2, whitespace ignored), 0-100."""
    from sacrebleu.metrics import CHRF

    _check_pairs(predictions, references)
    return CHRF().corpus_score(_answers(predictions, stop_tokens), [list(references)]).score


def chrf_scores(
    predictions: Sequence[str], references: Sequence[str], *, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS
) -> list[float]:
    """Sentence chrF of each answer against its reference, 0-100."""
    from sacrebleu.metrics import CHRF

    _check_pairs(predictions, references)
    metric = CHRF()
    answers = _answers(predictions, stop_tokens)
    return [metric.sentence_score(a, [r]).score for a, r in zip(answers, references, strict=True)]


def bleu(
    predictions: Sequence[str], references: Sequence[str], *, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS
) -> float:
    """Corpus BLEU (sacreBLEU defaults: 13a tokenizer, 4-grams, exponential smoothing), 0-100."""
    from sacrebleu.metrics import BLEU

    _check_pairs(predictions, references)
    return BLEU().corpus_score(_answers(predictions, stop_tokens), [list(references)]).score


def bleu_scores(
    predictions: Sequence[str], references: Sequence[str], *, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS
) -> list[float]:
    """Sentence BLEU of each answer (sacreBLEU's ``effective_order`` for short sentences), 0-100."""
    from sacrebleu.metrics import BLEU

    _check_pairs(predictions, references)
    metric = BLEU(effective_order=True)
    answers = _answers(predictions, stop_tokens)
    return [metric.sentence_score(a, [r]).score for a, r in zip(answers, references, strict=True)]


def exact_match_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS,
) -> list[float]:
    """1.0 where the answer equals its reference after whitespace normalization (and the chosen options), else 0."""
    _check_pairs(predictions, references)
    options = {"ignore_case": ignore_case, "ignore_punctuation": ignore_punctuation}
    answers = _answers(predictions, stop_tokens)
    return [float(normalize(a, **options) == normalize(r, **options)) for a, r in zip(answers, references, strict=True)]


def exact_match(predictions: Sequence[str], references: Sequence[str], **options: Any) -> float:
    """Fraction of answers equal to their reference (see :func:`exact_match_scores`)."""
    scores = exact_match_scores(predictions, references, **options)
    return sum(scores) / len(scores)


def answer_length(
    predictions: Sequence[str], *, tokenizer=None, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS
) -> dict[str, float]:
    """Mean answer length in words (whitespace-separated) and characters, and in tokens when given a tokenizer."""
    if not predictions:
        raise ValueError("no predictions to measure")
    answers = _answers(predictions, stop_tokens)
    lengths = {
        "mean_answer_words": sum(len(a.split()) for a in answers) / len(answers),
        "mean_answer_chars": sum(len(a) for a in answers) / len(answers),
    }
    if tokenizer is not None:
        encoded = tokenizer(answers, add_special_tokens=False)["input_ids"]
        lengths["mean_answer_tokens"] = sum(map(len, encoded)) / len(answers)
    return lengths


def stop_rate(generations: Sequence[str], *, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS) -> float:
    """Fraction of raw generations in which the model ended its turn (wrote a stop token) by itself.

    A generation cut by ``max_new_tokens`` has no stop token. Generations must be decoded with special tokens
    kept (``skip_special_tokens=False``): a cleaned answer never contains one and would count as not stopped.
    """
    if not generations:
        raise ValueError("no generations to check")
    return sum(ended_turn(text, stop_tokens) for text in generations) / len(generations)


# Per-answer scores used to pick a winner between two answers to the same prompt (higher is better).
SENTENCE_SCORERS: dict[str, Callable[..., list[float]]] = {
    "chrf": chrf_scores,
    "rougeL": rouge_l_scores,
    "bleu": bleu_scores,
    "exact_match": exact_match_scores,
}
