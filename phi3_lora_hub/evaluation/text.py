"""What part of a generation is the answer, and whether the model ended its turn.

Generations may be given raw (decoded with special tokens kept, as the model wrote them) or already cleaned.
The answer is everything before the first Phi-3 stop token, without control tokens, stripped; cleaning a clean
answer changes nothing. Only raw generations can tell whether the model stopped.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from phi3_lora_hub import phi3_format

_CONTROL = re.compile("|".join(re.escape(t) for t in sorted(phi3_format.CONTROL_TOKENS, key=len, reverse=True)))
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def first_stop(generation: str, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS) -> int | None:
    """Character index of the first stop token in ``generation``, or ``None`` when there is none."""
    found = [index for index in (generation.find(token) for token in stop_tokens) if index >= 0]
    return min(found) if found else None


def answer_text(generation: str, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS) -> str:
    """The answer in ``generation``: the text before the first stop token, control tokens removed, stripped."""
    stop = first_stop(generation, stop_tokens)
    kept = generation if stop is None else generation[:stop]
    return _CONTROL.sub("", kept).strip()


def ended_turn(generation: str, stop_tokens: Sequence[str] = phi3_format.STOP_TOKENS) -> bool:
    """True when the raw ``generation`` contains a stop token, i.e. the model ended its turn by itself."""
    return first_stop(generation, stop_tokens) is not None


def normalize(text: str, *, ignore_case: bool = False, ignore_punctuation: bool = False) -> str:
    """Whitespace collapsed to single spaces; optionally case-folded and without ASCII punctuation."""
    if ignore_punctuation:
        text = text.translate(_PUNCTUATION)
    if ignore_case:
        text = text.casefold()
    return " ".join(text.split())
