"""Read the rows of a dataset from wherever the user keeps it: a Hub id, a local file, a Dataset or a list.

Local JSON/JSONL files are parsed here rather than by Arrow, because chat data often mixes types across rows
(string content in one row, a list of parts in the next) and a parse error must name the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ConfigError, DataError
from phi3_lora_hub.file_digest import sha256_of
from phi3_lora_hub.local_paths import looks_local

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TRAIN_SPLITS = ("train", "train_sft")


class RawRows:
    """Rows as plain dicts, plus where they came from (for reports and model cards).

    ``rows`` may be given as a list or as a function that reads them (and returns them with their ``locations``):
    a file is then parsed only when its rows are first used, so a run whose prepared dataset is already cached
    (keyed by the file hash) never parses it.
    """

    def __init__(
        self,
        rows: list[dict[str, Any]] | Callable[[], tuple[list[dict[str, Any]], list[str] | None]],
        source: str,
        fingerprint: str | None,
        locations: list[str] | None = None,
    ) -> None:
        self._rows = rows
        self._locations = locations
        self.source = source
        """A short description: the Hub id and split, the file name, or ``in-memory``."""
        self.fingerprint = fingerprint
        """Identifies the content for caching (file hash, dataset fingerprint); ``None`` when unknown."""

    @property
    def rows(self) -> list[dict[str, Any]]:
        if callable(self._rows):
            self._rows, self._locations = self._rows()
        return self._rows

    @property
    def locations(self) -> list[str] | None:
        """Where each row is in its file: ``line 4`` (JSONL, CSV: the 1-based line where the row starts) or
        ``JSON array index 3``; ``None`` for in-memory rows and Parquet files."""
        _ = self.rows
        return self._locations

    def __repr__(self) -> str:
        state = "not read yet" if callable(self._rows) else f"{len(self._rows)} rows"
        return f"RawRows({self.source!r}, {state}, fingerprint={self.fingerprint!r})"


def _read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark; anything else is a ``DataError`` naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); "
            "save the file as UTF-8."
        ) from None


def _loads(text: str) -> Any:
    """``json.loads``, with JSON nested too deeply for the parser reported as a ``JSONDecodeError``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _read_json(path: Path) -> tuple[list[Any], list[str]]:
    text = _read_text(path)
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            data = _loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
        return data, [f"JSON array index {index}" for index in range(len(data))]
    rows, lines = [], []
    # Lines end at "\n" only: str.splitlines() also breaks at U+2028, NEL and other characters JSON strings may hold.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {line_number} is not valid JSON: {error.msg}") from None
        lines.append(f"line {line_number}")
    return rows, lines


def _read_csv(path: Path) -> tuple[list[Any], list[str]]:
    """Rows of a CSV file with a header line, and the line where each starts (a quoted field may span lines).

    Fields missing at the end of a line are ``None``; a field may be as long as the file (csv's own cap is 128 KiB).
    """
    text = _read_text(path)
    previous_limit = csv.field_size_limit(len(text) + 1)  # process-wide: restored below
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    try:
        header = next(reader, [])
        start = reader.line_num + 1
        for record in reader:
            if len(record) > len(header):
                raise DataError(
                    f"{path}: line {start} has {len(record)} fields, the header {len(header)}; "
                    "quote fields that contain commas."
                )
            if record:  # a blank line is not a row
                rows.append(dict(zip(header, record + [None] * (len(header) - len(record)), strict=True)))
                lines.append(f"line {start}")
            start = reader.line_num + 1
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV: {error}") from None
    finally:
        csv.field_size_limit(previous_limit)
    return rows, lines


def _read_parquet(path: Path) -> tuple[list[Any], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist(), None
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable Parquet file: {error}") from None


def _read_file(path: Path) -> tuple[list[dict[str, Any]], list[str] | None]:
    """The rows of a local file, and where each is in it (see :attr:`RawRows.locations`)."""
    if path.suffix in (".jsonl", ".json"):
        rows, lines = _read_json(path)
    elif path.suffix == ".csv":
        rows, lines = _read_csv(path)
    else:
        rows, lines = _read_parquet(path)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            where = f" ({lines[index]})" if lines else ""
            raise DataError(
                f"{path}: row {index}{where} is a {type(row).__name__}, expected an object with named fields."
            )
    return rows, lines


def _rows_fingerprint(rows: list[dict[str, Any]]) -> str | None:
    """A content hash of rows already in memory, for the prepared-data cache; ``None`` (no caching) when a value
    is not JSON (bytes, dates). ``datasets`` keeps its own fingerprint private, so the rows are hashed here."""
    import hashlib

    try:
        text = json.dumps(rows, sort_keys=True, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _pick_split(dataset_dict: Any, split: str | None, name: str) -> tuple[Any, str]:
    if split is not None:
        if split not in dataset_dict:
            raise ConfigError(f"{name} has no split {split!r}; it has {sorted(dataset_dict)}.")
        return dataset_dict[split], split
    for candidate in TRAIN_SPLITS:
        if candidate in dataset_dict:
            return dataset_dict[candidate], candidate
    raise DataError(f"{name} has splits {sorted(dataset_dict)}; choose one with dataset_split=.")


def check_split(source: Any, split: str | None) -> None:
    """Raise ``ConfigError`` when ``split`` is asked of a source that has no splits (a local file, a list, a
    ``Dataset``): the split would otherwise be ignored and, for evaluation, the training rows evaluated on."""
    if split is None or source is None:
        return
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not (path.is_file() or path.suffix in LOCAL_SUFFIXES):
            return  # a Hub dataset id: its splits are checked when it is read
        what = f"{path.name} is a local file"
    else:
        import datasets

        if isinstance(source, datasets.DatasetDict):
            return  # its splits are checked when one is picked
        what = f"in-memory data ({type(source).__name__})"
    raise ConfigError(
        f"{what}: it has no splits, so split {split!r} cannot be selected from it. For evaluation data pass "
        "eval_dataset= (another file) or eval_size= (hold out part of the training rows); for training data "
        "leave dataset_split unset."
    )


def read_rows(source: Any, *, split: str | None = None, config_name: str | None = None, lazy: bool = False) -> RawRows:
    """Read every row of ``source`` as a dict.

    ``source`` may be a path to a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, a Hub dataset id (``split`` and
    ``config_name`` select the part), a ``datasets.Dataset`` or ``DatasetDict``, or a list of dicts. With ``lazy``, a
    local file is hashed now but parsed only when ``rows`` is first used (parse errors are raised then). A ``split``
    the source does not have is a ``ConfigError`` naming the splits it has (a local file or a list has none).
    """
    import datasets

    check_split(source, split)

    if isinstance(source, datasets.DatasetDict):
        source, split = _pick_split(source, split, "the DatasetDict")
    if isinstance(source, datasets.Dataset):
        rows = source.to_list()
        return RawRows(rows, f"in-memory Dataset ({len(source)} rows)", _rows_fingerprint(rows))
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        rows = list(source)
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise DataError(f"row {index} is a {type(row).__name__}, expected a dict.")
        return RawRows([dict(row) for row in rows], f"in-memory list ({len(rows)} rows)", None)
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_file():
            if path.suffix not in LOCAL_SUFFIXES:
                raise DataError(
                    f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}."
                )
            fingerprint = sha256_of(path)
            if lazy:
                return RawRows(lambda: _read_file(path), path.name, fingerprint)
            rows, locations = _read_file(path)
            return RawRows(rows, path.name, fingerprint, locations)
        if path.suffix in LOCAL_SUFFIXES or looks_local(str(source)):
            raise DataError(_missing_file_message(str(source), path))
        return _read_hub(str(source), split, config_name)
    raise DataError(
        f"Unsupported dataset type {type(source).__name__}: pass a path, a Hub id, a Dataset or a list of dicts."
    )


def _missing_file_message(source: str, path: Path) -> str:
    """What is wrong with a local dataset path that is not a readable file, and what to pass instead."""
    kinds = ", ".join(LOCAL_SUFFIXES)
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix in LOCAL_SUFFIXES)
        if not files:
            return f"Dataset {source!r} is a directory ({path.resolve()}) with no {kinds} file in it: pass a data file."
        return (
            f"Dataset {source!r} is a directory ({path.resolve()}), not a file: it holds "
            f"{', '.join(map(repr, files[:10]))}. Pass one of them, e.g. {str(path / files[0])!r}."
        )
    nearby = []
    if path.parent.is_dir():
        nearby = sorted(p.name for p in path.parent.iterdir() if p.is_file() and p.suffix in LOCAL_SUFFIXES)
    found = f" Data files in {path.parent.resolve()}: {', '.join(map(repr, nearby[:10]))}." if nearby else ""
    return (
        f"Dataset file {source!r} does not exist (looked for {path.resolve()}).{found} Pass an existing {kinds} "
        "file, or a Hub dataset id namespace/name."
    )


def _read_hub(dataset_id: str, split: str | None, config_name: str | None) -> RawRows:
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id, config_name, split=split)
    except Exception as error:  # datasets raises many types (offline, missing repo, bad config)
        _check_hub_split(dataset_id, config_name, split)
        raise DataError(
            f"Could not load the Hub dataset {dataset_id!r}"
            f"{f' (config {config_name!r})' if config_name else ''}: {type(error).__name__}: {error}. "
            "Check the id, your network (HF_HUB_OFFLINE), or pass a local file instead."
        ) from error
    if isinstance(loaded, datasets.DatasetDict):
        loaded, split = _pick_split(loaded, split, dataset_id)
    rows = loaded.to_list()
    return RawRows(rows, f"{dataset_id} ({split})", _rows_fingerprint(rows))


def _check_hub_split(dataset_id: str, config_name: str | None, split: str | None) -> None:
    """After a failed load: a ``ConfigError`` naming the splits when ``split`` is not one of them (if they can be
    listed; otherwise the load error stands)."""
    import datasets

    if split is None:
        return
    try:
        names = datasets.get_dataset_split_names(dataset_id, config_name)
    except Exception:  # offline or no such dataset: the load error says more
        return
    if split not in names:
        raise ConfigError(f"{dataset_id} has no split {split!r}; it has {sorted(names)}.")
