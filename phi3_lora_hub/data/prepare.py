"""The data pipeline: read rows, convert them to Phi-3 messages, validate, tokenize with assistant-only labels.

Everything that is wrong with the data is found before training starts and reported with the row number.
``on_bad_rows="raise"`` stops with one :class:`~phi3_lora_hub.errors.DataError` listing every problem;
``"skip"`` drops those rows and the report says how many and which. Rows longer than ``max_length`` are truncated
here, keeping the start (as TRL would), and counted; a row left with no trained token by truncation is dropped
(as TRL would) and counted too. Nothing is dropped silently.

The prepared dataset has the columns ``input_ids`` and ``labels`` (what the trainer reads), ``length`` (tokens per
row, for length-grouped sampling without reading every row) and ``truncated``.

Prepared datasets are cached on disk, keyed by the content of the source, the tokenizer and every setting that
changes the result, so a second run of the same config skips all of this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from phi3_lora_hub.atomic_write import build_directory_once
from phi3_lora_hub.data.formats import DEFAULT_TEXT_PART_TYPES, RowConverter, detect_format, unused_columns
from phi3_lora_hub.data.sources import RawRows
from phi3_lora_hub.data.tokenization import IGNORE_INDEX, FlatTokens, tokenize_batches
from phi3_lora_hub.data.validation import validate_messages
from phi3_lora_hub.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

OnBadRows = Literal["raise", "skip"]
_CACHE_VERSION = "3"  # 3: tool definitions in the system turn, unused columns in the report
_TOKENIZE_BATCH = 8192


@dataclass(frozen=True)
class DataOptions:
    """How rows are converted and what happens to bad ones."""

    format: str | None = None
    """One of the names in ``phi3_lora_hub.data.formats.FORMATS``; ``None`` detects it from the columns."""
    on_bad_rows: OnBadRows = "raise"
    role_map: Mapping[str, str] | None = None
    """Extra role names mapped to system/user/assistant, e.g. ``{"function_call": "assistant"}``."""
    text_part_types: tuple[str, ...] = DEFAULT_TEXT_PART_TYPES
    """Content-part types flattened into text; other parts are reported as non-text content."""
    assistant_only_loss: bool = True
    max_length: int | None = 2048


@dataclass
class DataReport:
    """What the pipeline did to one dataset; shown in logs, in the result and in the model card."""

    source: str
    format: str
    rows_read: int
    rows_used: int
    skipped_rows: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    too_long_rows: int = 0
    max_length: int | None = None
    dropped_after_truncation: int = 0
    """Rows whose trained tokens all lay beyond ``max_length``: dropped, since they would contribute no loss."""
    tokens: int = 0
    trained_tokens: int = 0
    cached: bool = False
    unused_columns: list[str] = field(default_factory=list)
    """Columns of the data that its format does not read: their content is not trained on."""

    def summary(self) -> str:
        parts = [f"{self.source}: {self.format} format, {self.rows_used}/{self.rows_read} rows used"]
        if self.skipped_rows:
            shown = ", ".join(map(str, self.skipped_rows[:10])) + (" ..." if len(self.skipped_rows) > 10 else "")
            parts.append(f"{len(self.skipped_rows)} bad rows skipped (rows {shown})")
        if self.too_long_rows:
            parts.append(f"{self.too_long_rows} rows longer than max_length={self.max_length} will be truncated")
        if self.dropped_after_truncation:
            parts.append(f"{self.dropped_after_truncation} of them dropped: no trained token left within max_length")
        parts.append(f"{self.tokens:,} tokens, {self.trained_tokens:,} trained")
        if self.unused_columns:
            parts.append(f"columns not used by the {self.format} format (ignored): {', '.join(self.unused_columns)}")
        return "; ".join(parts)


@dataclass
class ConvertedRows:
    conversations: list[list[dict[str, str]]]
    report: DataReport


class _Conversion:
    """Converts and validates the rows of ``raw`` one at a time (:meth:`batches`), then reports (:meth:`finish`)."""

    def __init__(self, raw: RawRows, options: DataOptions) -> None:
        if options.on_bad_rows not in ("raise", "skip"):
            raise ConfigError(f"on_bad_rows must be 'raise' or 'skip', got {options.on_bad_rows!r}.")
        if not raw.rows:
            raise DataError(f"{raw.source}: the dataset has no rows.")
        self.raw, self.options = raw, options
        columns = set().union(*(row.keys() for row in raw.rows[:100]))
        self.format = options.format or detect_format(columns)
        self.used = 0
        self.problems: list = []
        self.skipped: list[int] = []

    def batches(self, size: int) -> Iterator[list[list[dict[str, str]]]]:
        """The good conversations in order, ``size`` at a time (the last batch may be shorter). Once a row is bad
        under ``on_bad_rows="raise"``, the rest are still checked (to report every problem) but no longer yielded."""
        options, locations = self.options, self.raw.locations
        convert = RowConverter(self.format, role_map=options.role_map, text_part_types=options.text_part_types)
        batch: list[list[dict[str, str]]] = []
        for index, row in enumerate(self.raw.rows):
            messages, row_problems = convert(index, row)
            if not row_problems:
                row_problems = validate_messages(index, messages)
            if row_problems and locations is not None:
                row_problems = [replace(problem, location=locations[index]) for problem in row_problems]
            if row_problems:
                self.problems.extend(row_problems)
                self.skipped.append(index)
                continue
            batch.append(messages)
            if len(batch) == size:
                yield from self._emit(batch)
                batch = []
        if batch:
            yield from self._emit(batch)

    def _emit(self, batch: list[list[dict[str, str]]]) -> Iterator[list[list[dict[str, str]]]]:
        self.used += len(batch)
        if not (self.problems and self.options.on_bad_rows == "raise"):
            yield batch

    def finish(self) -> DataReport:
        """The report of the rows converted so far; raises or warns about bad rows as ``on_bad_rows`` says."""
        raw, problems, skipped = self.raw, self.problems, self.skipped
        report = DataReport(raw.source, self.format, len(raw.rows), self.used, skipped, [str(p) for p in problems])
        report.unused_columns = unused_columns(self.format, set().union(*(row.keys() for row in raw.rows)))
        if problems and self.options.on_bad_rows == "raise":
            raise DataError(
                f"{raw.source}: {len(skipped)} of {len(raw.rows)} rows cannot be used ({self.format} format). "
                "Fix them, or pass on_bad_rows='skip' to train on the others:",
                problems,
            )
        if skipped:
            logger.warning("%s: skipped %d bad rows: %s", raw.source, len(skipped), "; ".join(report.problems[:5]))
        if not self.used:
            raise DataError(f"{raw.source}: no usable rows left after skipping bad ones.", problems)
        return report


def convert_rows(raw: RawRows, options: DataOptions) -> ConvertedRows:
    """Convert and validate every row; raise or skip bad ones according to ``options.on_bad_rows``."""
    conversion = _Conversion(raw, options)
    conversations = [messages for batch in conversion.batches(len(raw.rows)) for messages in batch]
    return ConvertedRows(conversations, conversion.finish())


def _truncate(flat: FlatTokens, max_length: int | None) -> tuple[FlatTokens, np.ndarray]:
    """Keep the first ``max_length`` tokens of every row; also returns which rows were longer."""
    lengths = flat.lengths()
    if max_length is None or not (lengths > max_length).any():
        return flat, np.zeros(len(lengths), dtype=bool)
    position = np.arange(flat.ids.size) - np.repeat(flat.offsets[:-1], lengths)
    keep = position < max_length
    offsets = np.zeros_like(flat.offsets)
    np.cumsum(np.minimum(lengths, max_length), out=offsets[1:])
    return FlatTokens(flat.ids[keep], flat.labels[keep], offsets), lengths > max_length


def _select_rows(flat: FlatTokens, rows: np.ndarray) -> FlatTokens:
    """The rows where the boolean ``rows`` is true."""
    lengths = flat.lengths()
    offsets = np.zeros(int(rows.sum()) + 1, dtype=flat.offsets.dtype)
    np.cumsum(lengths[rows], out=offsets[1:])
    tokens = np.repeat(rows, lengths)
    return FlatTokens(flat.ids[tokens], flat.labels[tokens], offsets)


def _trained_per_row(flat: FlatTokens) -> np.ndarray:
    trained = np.zeros(len(flat), dtype=np.int64)
    nonempty = flat.lengths() > 0
    if flat.ids.size:
        trained[nonempty] = np.add.reduceat(flat.labels != IGNORE_INDEX, flat.offsets[:-1][nonempty])
    return trained


def _to_dataset(flat: FlatTokens, truncated: np.ndarray, fingerprint: str | None = None):
    """A ``datasets.Dataset`` built straight from the flat arrays (no per-row Python lists). ``fingerprint``, when
    given, names its content (the cache key), so datasets does not hash the whole table to make one up."""
    import datasets
    import pyarrow as pa

    offsets = pa.array(flat.offsets.astype(np.int32))
    table = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(flat.ids.astype(np.int32))),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(flat.labels.astype(np.int32))),
            "length": pa.array(flat.lengths().astype(np.int32)),
            "truncated": pa.array(truncated),
        }
    )
    return datasets.Dataset(table, fingerprint=fingerprint)


def _concatenate(parts: list[FlatTokens]) -> FlatTokens:
    offsets = [parts[0].offsets] + [part.offsets[1:] for part in parts[1:]]
    shift = np.cumsum([0] + [part.offsets[-1] for part in parts[:-1]])
    return FlatTokens(
        np.concatenate([part.ids for part in parts]),
        np.concatenate([part.labels for part in parts]),
        np.concatenate([part_offsets + base for part_offsets, base in zip(offsets, shift, strict=True)]),
    )


def _tokenized_parts(
    tokenizer, batches: Iterable[list[list[dict[str, str]]]], rows: int, options: DataOptions, overlap: bool
) -> list[FlatTokens]:
    from tqdm.auto import tqdm

    parts = tokenize_batches(tokenizer, batches, assistant_only_loss=options.assistant_only_loss, overlap=overlap)
    total = -(-rows // _TOKENIZE_BATCH)
    return list(tqdm(parts, desc="Tokenizing", unit="batch", total=total, disable=rows < 20 * _TOKENIZE_BATCH))


def _finish_tokens(flat: FlatTokens, report: DataReport, options: DataOptions, fingerprint: str | None = None):
    """Truncate, drop rows left with no trained token, count into ``report``; the prepared ``datasets.Dataset``."""
    flat, truncated = _truncate(flat, options.max_length)
    report.max_length = options.max_length
    report.too_long_rows = int(truncated.sum())
    trained = _trained_per_row(flat)
    if (trained == 0).any():
        flat, truncated = _select_rows(flat, trained > 0), truncated[trained > 0]
        report.dropped_after_truncation = int((trained == 0).sum())
        report.rows_used -= report.dropped_after_truncation
    report.tokens = int(flat.ids.size)
    report.trained_tokens = int(trained.sum())
    if report.too_long_rows:
        logger.warning(
            "%s: %d rows are longer than max_length=%d tokens and were truncated (keeping the start)%s.",
            report.source,
            report.too_long_rows,
            options.max_length,
            f"; {report.dropped_after_truncation} had no trained token left and were dropped"
            if report.dropped_after_truncation
            else "",
        )
    if not len(flat):
        raise DataError(f"{report.source}: no rows left with a trained token within max_length={options.max_length}.")
    return _to_dataset(flat, truncated, fingerprint)


def tokenize_rows(tokenizer, converted: ConvertedRows, options: DataOptions, *, overlap: bool = True):
    """Tokenize converted conversations into a ``datasets.Dataset`` (see the module docstring for its columns)."""
    conversations = converted.conversations
    starts = range(0, len(conversations), _TOKENIZE_BATCH)
    batches = (conversations[start : start + _TOKENIZE_BATCH] for start in starts)
    parts = _tokenized_parts(tokenizer, batches, len(conversations), options, overlap)
    return _finish_tokens(_concatenate(parts), converted.report, options)


def convert_and_tokenize(raw: RawRows, tokenizer, options: DataOptions, *, overlap: bool = True, fingerprint=None):
    """``tokenize_rows(tokenizer, convert_rows(raw, options), options)`` with the tokenizer working on one batch of
    conversations while the next is converted (see :func:`tokenize_batches`); returns ``(dataset, report)``, the
    same with or without ``overlap``. Bad rows raise or are skipped as in :func:`convert_rows`."""
    conversion = _Conversion(raw, options)
    parts = _tokenized_parts(tokenizer, conversion.batches(_TOKENIZE_BATCH), len(raw.rows), options, overlap)
    report = conversion.finish()
    return _finish_tokens(_concatenate(parts), report, options, fingerprint), report


def cache_root() -> Path:
    """Where prepared datasets are cached: ``$PHI3_LORA_HUB_CACHE``, else ``$HF_HOME/phi3_lora_hub/prepared``."""
    explicit = os.environ.get("PHI3_LORA_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return Path(hf_home) / "phi3_lora_hub" / "prepared"


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(tokenizer)
    return hashlib.sha256(text.encode()).hexdigest()


def _rows_fingerprint(rows: list[dict]) -> str:
    """A hash of in-memory rows: their JSON with sorted keys, or their repr when the keys cannot be sorted (mixed
    types, e.g. ``{1: ..., "prompt": ...}``) or the rows are not JSON (a cycle)."""
    try:
        text = json.dumps(rows, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(rows)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _cache_key(raw: RawRows, tokenizer, options: DataOptions) -> str:
    fingerprint = raw.fingerprint if raw.fingerprint is not None else _rows_fingerprint(raw.rows)
    settings = {**asdict(options), "role_map": dict(options.role_map or {})}
    payload = json.dumps([_CACHE_VERSION, fingerprint, _tokenizer_fingerprint(tokenizer), settings], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def prepare_dataset(raw: RawRows, tokenizer, options: DataOptions, *, use_cache: bool = True):
    """Convert, validate and tokenize ``raw``; return ``(dataset, report)``, from the cache when possible."""
    import datasets

    key = _cache_key(raw, tokenizer, options) if use_cache else None
    directory = cache_root() / key if key is not None else None
    if directory is not None and (directory / "report.json").is_file():
        report = DataReport(**json.loads((directory / "report.json").read_text()))
        report.cached = True
        logger.info("Using the prepared dataset cached in %s", directory)
        return datasets.load_from_disk(str(directory / "dataset")), report
    dataset, report = convert_and_tokenize(raw, tokenizer, options, fingerprint=key)
    if directory is not None:

        def build(staging: Path) -> None:
            dataset.save_to_disk(str(staging / "dataset"))
            (staging / "report.json").write_text(json.dumps(asdict(report)))

        if build_directory_once(directory, build):  # a half-written cache entry is never read
            logger.info("Prepared %s and cached it in %s", report.source, directory)
        dataset = datasets.load_from_disk(str(directory / "dataset")) if directory.exists() else dataset
    return dataset, report


def hold_out(dataset, report: DataReport, eval_size: float, seed: int, max_eval: int | None = None):
    """Split a prepared dataset into train and eval parts, deterministically for a given ``seed``.

    ``eval_size`` is a fraction when below 1, else a number of conversations. At most ``max_eval`` of the held-out
    rows are evaluated on (the rest are still kept out of training); the eval report counts the rows evaluated on.
    Returns ``(train, train_report, eval, eval_report)``.
    """
    total = len(dataset)
    count = round(eval_size * total) if eval_size < 1 else int(eval_size)
    if not 0 < count < total:
        raise ConfigError(f"eval_size={eval_size!r} leaves no rows for training or evaluation ({total} rows).")
    parts = dataset.train_test_split(test_size=count, seed=seed, shuffle=True)

    def part_report(part, label: str) -> DataReport:
        table = part.with_format("arrow")[:]  # the selected rows (a split is an index over the same table)
        labels = table.column("labels").combine_chunks().flatten().to_numpy()
        return replace(
            report,
            source=f"{report.source} [{label}]",
            rows_used=len(part),
            tokens=int(table.column("length").to_numpy().sum()),
            trained_tokens=int((labels != IGNORE_INDEX).sum()),
            too_long_rows=int(table.column("truncated").to_numpy(zero_copy_only=False).sum()),
            dropped_after_truncation=0,
        )

    train, held = parts["train"], parts["test"]
    if max_eval is not None and len(held) > max_eval:
        held = held.select(range(max_eval))
    return train, part_report(train, "train"), held, part_report(held, f"{count} held out for eval")


@dataclass
class PreparedData:
    """The tokenized training rows (and evaluation rows, when there are any) with their reports."""

    train: Any
    train_report: DataReport
    eval: Any | None = None
    eval_report: DataReport | None = None
