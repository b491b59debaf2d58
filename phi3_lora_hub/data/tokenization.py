"""Tokenize Phi-3 conversations with labels that train on assistant answers only.

The labels cover each assistant answer and the ``<|end|>`` that closes it. They are found in one of two ways, both
exact:

- **From the token ids** (the fast path). In the Phi-3 format every turn is ``<|role|>\\n{content}<|end|>\\n``; with
  Phi-3's tokenizer each role header (with its newline) is a single token and so is ``<|end|>\\n``. Validation keeps
  control tokens out of message text, so the trained tokens are exactly those after an ``<|assistant|>`` header up
  to and including the next ``<|end|>``: a vectorised pass over the ids, with no character offsets needed. The
  tokenizer is probed once for this layout, and every row is checked to have one header and one ``<|end|>`` per
  message; anything else takes the second path.
- **From character offsets**: :func:`phi3_lora_hub.phi3_format.render` knows where every answer sits in the text,
  and the tokenizer's offsets say which tokens overlap it. This works with any fast tokenizer that speaks the
  format, and is the reference the fast path is tested against.

Neither depends on a chat template that carries ``{% generation %}`` markers (Phi-3's does not).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, pairwise

import numpy as np

from phi3_lora_hub import phi3_format

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedBatch:
    input_ids: list[list[int]]
    labels: list[list[int]]


@dataclass(frozen=True)
class FlatTokens:
    """Tokenized rows stored end to end: row ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` (likewise ``labels``)."""

    ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self) -> TokenizedBatch:
        """The same rows as Python lists."""
        bounds = self.offsets.tolist()
        ids, labels = self.ids.tolist(), self.labels.tolist()
        pairs = list(pairwise(bounds))
        return TokenizedBatch([ids[a:b] for a, b in pairs], [labels[a:b] for a, b in pairs])


@dataclass(frozen=True)
class _Layout:
    """Token ids of the Phi-3 turn markers in one tokenizer."""

    headers: np.ndarray
    """Ids of ``<|system|>``, ``<|user|>``, ``<|assistant|>`` (each with the newline it swallows)."""
    assistant: int
    end: int


def _token_layout(tokenizer) -> _Layout | None:
    """The marker ids when each header and ``<|end|>`` is exactly one token around any content, else ``None``."""
    cached = getattr(tokenizer, "_phi3_token_layout", False)
    if cached is not False:
        return cached
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (*phi3_format.ROLE_TOKENS.values(), "<|end|>")}
    layout = None
    if tokenizer.unk_token_id not in ids.values():
        layout = _Layout(
            np.array([ids[phi3_format.ROLE_TOKENS[role]] for role in phi3_format.ROLES], dtype=np.int64),
            ids[phi3_format.ROLE_TOKENS["assistant"]],
            ids[phi3_format.END],
        )
        backend = tokenizer.backend_tokenizer
        for role in phi3_format.ROLES:
            for content in ("Hello", "x y", "1.", "- a\n\nb", "é"):  # stripped, as converted content is
                text = phi3_format.render([{"role": role, "content": content}]).text
                expected = [ids[phi3_format.ROLE_TOKENS[role]], *_encode(backend, [content])[0], ids[phi3_format.END]]
                if _encode(backend, [text])[0][:-1] != expected:
                    layout = None
    with contextlib.suppress(AttributeError):  # a tokenizer that refuses new attributes is probed again next time
        tokenizer._phi3_token_layout = layout
    return layout


def _encode(backend, texts: list[str]) -> list[list[int]]:
    # encode_batch_fast skips the character offsets the fast path does not need
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]


def _flatten(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    ids = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(offsets[-1]))
    return ids, offsets


def _structural_labels(
    ids: np.ndarray, offsets: np.ndarray, layout: _Layout, messages: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Assistant-only labels from the token ids, and which rows have the expected layout (one marker per turn)."""
    is_header = np.isin(ids, layout.headers)
    is_end = ids == layout.end
    lengths = np.diff(offsets)
    starts = offsets[:-1]
    nonempty = lengths > 0
    headers = np.zeros(len(lengths), dtype=np.int64)
    ends = np.zeros(len(lengths), dtype=np.int64)
    first_is_header = np.zeros(len(lengths), dtype=bool)
    if ids.size:
        headers[nonempty] = np.add.reduceat(is_header, starts[nonempty])
        ends[nonempty] = np.add.reduceat(is_end, starts[nonempty])
        first_is_header[nonempty] = is_header[starts[nonempty]]
    row_ok = nonempty & first_is_header & (headers == messages) & (ends == messages)
    # Each token belongs to the turn of the latest header (every row starts with one); an answer runs from its
    # header to the first <|end|> after it, inclusive.
    header_positions = np.flatnonzero(is_header)
    turn = np.maximum(np.cumsum(is_header) - 1, 0)
    ends_before = np.cumsum(is_end) - is_end
    turn_header = header_positions[turn] if header_positions.size else np.zeros_like(turn)
    in_answer = (ids[turn_header] == layout.assistant) & ~is_header & (ends_before == ends_before[turn_header])
    return np.where(in_answer, ids, IGNORE_INDEX), row_ok


def _offset_labels(tokenizer, rendered: list[phi3_format.RenderedChat]) -> TokenizedBatch:
    """Labels from character offsets: the reference path, for any fast tokenizer."""
    encoded = tokenizer(
        [chat.text for chat in rendered],
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    labels = []
    for ids, offsets, chat in zip(encoded["input_ids"], encoded["offset_mapping"], rendered, strict=True):
        bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        keep = np.zeros(len(ids), dtype=bool)
        for span in chat.assistant_spans:
            # Tokens overlapping the answer; the role header ends exactly where the answer starts, so it is out.
            keep |= (bounds[:, 1] > span.start) & (bounds[:, 0] < span.end)
        labels.append(np.where(keep, np.asarray(ids, dtype=np.int64), IGNORE_INDEX).tolist())
    return TokenizedBatch(encoded["input_ids"], labels)


def _texts(conversations: Sequence[Sequence[dict[str, str]]]) -> list[str]:
    return [phi3_format.render(messages).text for messages in conversations]


def _layout_for(tokenizer, assistant_only_loss: bool, use_token_layout: bool) -> _Layout | None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("tokenize_conversations needs a fast tokenizer (it reads character offsets)")
    return _token_layout(tokenizer) if assistant_only_loss and use_token_layout else None


def _offset_flat(tokenizer, conversations: Sequence[Sequence[dict[str, str]]]) -> FlatTokens:
    batch = _offset_labels(tokenizer, [phi3_format.render(messages) for messages in conversations])
    ids, offsets = _flatten(batch.input_ids)
    return FlatTokens(ids, _flatten(batch.labels)[0], offsets)


def _labelled(
    tokenizer,
    conversations: Sequence[Sequence[dict[str, str]]],
    rows: list[list[int]],
    layout: _Layout | None,
    assistant_only_loss: bool,
) -> FlatTokens:
    """:class:`FlatTokens` of ``conversations`` from their token ids ``rows``, labelled from the ids."""
    ids, offsets = _flatten(rows)
    if not assistant_only_loss:
        return FlatTokens(ids, ids.copy(), offsets)
    messages = np.array([len(chat) for chat in conversations], dtype=np.int64)
    labels, row_ok = _structural_labels(ids, offsets, layout, messages)
    for row in np.flatnonzero(~row_ok).tolist():  # rows whose text holds stray markers: the reference path
        fixed = _offset_labels(tokenizer, [phi3_format.render(conversations[row])]).labels[0]
        labels[offsets[row] : offsets[row + 1]] = fixed
    return FlatTokens(ids, labels, offsets)


def tokenize_flat(
    tokenizer,
    conversations: Sequence[Sequence[dict[str, str]]],
    *,
    assistant_only_loss: bool = True,
    use_token_layout: bool = True,
) -> FlatTokens:
    """Tokenize ``conversations`` in one batch call into :class:`FlatTokens`.

    With ``assistant_only_loss`` the labels are ``-100`` everywhere except the tokens of each assistant answer
    and the ``<|end|>`` that closes it (the final ``<|endoftext|>`` is input, not a label: generation stops at
    ``<|end|>``); otherwise every token is a label. ``use_token_layout=False`` forces the character-offset path
    for every row.
    """
    layout = _layout_for(tokenizer, assistant_only_loss, use_token_layout)
    if assistant_only_loss and layout is None:
        return _offset_flat(tokenizer, conversations)
    rows = _encode(tokenizer.backend_tokenizer, _texts(conversations))
    return _labelled(tokenizer, conversations, rows, layout, assistant_only_loss)


def tokenize_batches(
    tokenizer,
    batches: Iterable[Sequence[Sequence[dict[str, str]]]],
    *,
    assistant_only_loss: bool = True,
    overlap: bool = True,
) -> Iterator[FlatTokens]:
    """:func:`tokenize_flat` of each batch in turn, pipelined: with ``overlap``, a batch is rendered and encoded on a
    background thread (the Rust tokenizer releases the GIL and runs on every core) while the caller's thread labels
    the previous one and produces the next (``batches`` may be a generator that converts rows as it goes). The
    results are the same with or without ``overlap``."""
    layout = _layout_for(tokenizer, assistant_only_loss, use_token_layout=True)
    if assistant_only_loss and layout is None:
        yield from (_offset_flat(tokenizer, batch) for batch in batches)
        return
    backend = tokenizer.backend_tokenizer

    def encode(batch: Sequence[Sequence[dict[str, str]]]) -> list[list[int]]:
        return _encode(backend, _texts(batch))

    if not overlap:
        yield from (_labelled(tokenizer, batch, encode(batch), layout, assistant_only_loss) for batch in batches)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="phi3-tokenize") as pool:
        pending: tuple[Sequence[Sequence[dict[str, str]]], Future] | None = None
        for batch in batches:
            submitted = (batch, pool.submit(encode, batch))
            if pending is not None:
                yield _labelled(tokenizer, pending[0], pending[1].result(), layout, assistant_only_loss)
            pending = submitted
        if pending is not None:
            yield _labelled(tokenizer, pending[0], pending[1].result(), layout, assistant_only_loss)


def tokenize_conversations(
    tokenizer, conversations: Sequence[Sequence[dict[str, str]]], *, assistant_only_loss: bool = True
) -> TokenizedBatch:
    """Tokenize ``conversations`` in one batch call; the rows of :func:`tokenize_flat` as Python lists."""
    return tokenize_flat(tokenizer, conversations, assistant_only_loss=assistant_only_loss).rows()
