"""Adapters from the Hub: list a repo's revisions, resolve one to its commit, fetch and check its two files.

Order of a fetch, so nothing unsafe is ever loaded and nothing large is downloaded in vain:

1. the repo id is checked (``namespace/name``, on the allowlist) and the revision is a plain ref or a commit;
2. a 40-hex revision whose two files are already in the local cache is served from there, with no Hub call at
   all (a slow or unreachable Hub does not delay it; hub-reliability.md C20);
3. otherwise ``model_info(files_metadata=True)`` at that revision gives the commit id and the file list with
   sizes: ``adapter_model.safetensors`` must be there (a repo with only pickled weights is refused) and within
   the size cap;
4. ``adapter_config.json`` is downloaded at the commit and checked against the base (:mod:`.compat`);
5. ``adapter_model.safetensors`` is downloaded at the commit, its size and tensor header checked.

Only ``adapter_config.json`` and ``adapter_model.safetensors`` are downloaded, so PEFT, loading from that folder,
finds no pickle to fall back on. Hub errors become :class:`Refusal` messages; a missing or unreadable repo gets
one generic message whatever the cause (no token, wrong token, private, does not exist), and no message ever
holds the token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ModelError
from phi3_lora_hub.file_digest import sha256_of
from phi3_lora_hub.hub.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PICKLE_SUFFIXES
from phi3_lora_hub.model.adapters import read_adapter_config
from phi3_lora_hub.model.identity import ModelRef
from phi3_lora_hub.space.compat import BaseSignature, check_config, check_weights
from phi3_lora_hub.space.refusal import Refusal, quote
from phi3_lora_hub.space.repo_policy import DEFAULT_REVISION, AllowList, check_repo_id, check_revision, is_commit

logger = logging.getLogger(__name__)

MB = 1024 * 1024
"""The megabyte of ``PHI3_SPACE_MAX_ADAPTER_MB`` (the settings count sizes in MiB)."""
_STEP = re.compile(r"(?:.*\D)?(\d+)")


SCALING_KEYS = ("r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "fan_in_fan_out", "use_dora")
"""adapter_config.json entries that change what the same weights compute (how a layer scales or lays them out)."""


@dataclass(frozen=True)
class AdapterKey:
    """One adapter revision: a repo at a commit."""

    repo_id: str
    commit: str


@dataclass(frozen=True)
class LocalAdapter:
    """An adapter that passed every check, with its two files in ``directory`` (the Hub cache's snapshot)."""

    key: AdapterKey
    revision: str
    """The revision as asked for (``main``, ``step-30``, or the commit itself)."""
    directory: Path
    config: Mapping[str, Any] = field(repr=False)
    size_bytes: int = 0
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    """Tensor name -> shape, as saved in ``adapter_model.safetensors`` (from its header)."""
    weights: str = ""
    """sha256 of ``adapter_model.safetensors``: the same at every commit that leaves the weights as they are."""

    @property
    def uses_dora(self) -> bool:
        return bool(self.config.get("use_dora"))

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two revisions the same model in memory: the repo, the weights, and the config entries that
        change what those weights compute (:data:`SCALING_KEYS`). A commit that only edits the model card (or
        ``base_model_name_or_path``) keeps it."""
        scaling = json.dumps([self.config.get(key) for key in SCALING_KEYS], sort_keys=True, default=str)
        return self.key.repo_id, self.weights or self.key.commit, scaling

    @property
    def ref(self) -> ModelRef:
        """How votes name this adapter: repo, commit, weights and the revision name picked."""
        name = None if self.revision == self.key.commit else self.revision
        return ModelRef(self.key.repo_id, self.key.commit, self.weights or None, name)

    @property
    def label(self) -> str:
        """``repo @ step-30 (1a2b3c4)``, or ``repo @ 1a2b3c4`` for a commit."""
        short = self.key.commit[:7]
        if self.revision == self.key.commit:
            return f"{self.key.repo_id} @ {short}"
        return f"{self.key.repo_id} @ {self.revision} ({short})"


def order_revisions(branches: Sequence[str], tags: Sequence[str] = ()) -> list[str]:
    """``main`` first, then branches ending in a number (``step-N``) newest (highest) first, then other branches,
    then tags, each alphabetically."""
    numbered = sorted(
        (name for name in branches if name != DEFAULT_REVISION and _STEP.fullmatch(name)),
        key=lambda name: (-int(_STEP.fullmatch(name).group(1)), name),  # type: ignore[union-attr]
    )
    others = sorted(name for name in branches if name != DEFAULT_REVISION and name not in numbered)
    head = [DEFAULT_REVISION] if DEFAULT_REVISION in branches else []
    return head + numbered + others + sorted(tags)


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None) -> Iterator[None]:
    """Turn Hub client errors raised inside the block into :class:`Refusal` messages fit for a visitor."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{quote(repo_id)}" + (f" at {quote(revision)}" if revision else "")
    try:
        yield
    except Refusal:
        raise
    except RevisionNotFoundError:
        raise Refusal(f"{quote(repo_id)} has no revision {quote(revision)}: pick one from the list.") from None
    except RepositoryNotFoundError:  # also 401 and gated repos: the same words whatever the cause
        raise Refusal(
            f"Cannot find the adapter repository {quote(repo_id)}, or this Space may not read it. If it is private, "
            "the Space owner must add a read token as the HF_TOKEN secret."
        ) from None
    except RemoteEntryNotFoundError:
        raise Refusal(f"{where} is missing a file it listed a moment ago; try again.") from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            raise Refusal(
                f"This Space may not read {quote(repo_id)}. If it is private, the Space owner must add a read token "
                "as the HF_TOKEN secret."
            ) from None
        logger.warning("Hub error for %s@%s: HTTP %s", repo_id, revision, status)
        raise Refusal(f"The Hub answered with an error (HTTP {status}) for {where}; try again in a moment.") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        raise Refusal(
            f"{where} is not in this Space's cache and the Hub cannot be reached (offline mode); pick a revision "
            "that was loaded before."
        ) from None
    except Exception as error:  # httpx timeouts and connection errors, hf_xet's ConnectionError, ...
        logger.warning("Hub request for %s@%s failed: %s", repo_id, revision, type(error).__name__)
        raise Refusal(f"The Hub could not be reached for {where}; try again in a moment.") from None


class AdapterSource:
    """Finds, checks and fetches adapters for one base model. Thread-safe (its only state, the sha256 of files
    already hashed, is behind a lock)."""

    def __init__(
        self,
        base: BaseSignature,
        allowlist: AllowList,
        *,
        token: str | None = None,
        max_bytes: int = 512 * 1024 * 1024,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.base = base
        self.allowlist = allowlist
        self.max_bytes = max_bytes
        self.cache_dir = cache_dir
        # False (not None) without a token: never pick up a token file lying on the machine.
        self._token: str | bool = token or False
        self._hashes: dict[Path, str] = {}
        self._hashes_lock = threading.Lock()

    def revisions(self, repo: str) -> list[str]:
        """The repo's branches and tags for a picker, :func:`order_revisions` order (``main`` first)."""
        return list(self.refs(repo))

    def refs(self, repo: str) -> dict[str, str]:
        """The repo's branches and tags -> the commit each points at, in :func:`order_revisions` order."""
        from huggingface_hub import HfApi

        repo_id = check_repo_id(repo, self.allowlist)
        with hub_errors(repo_id, None):
            refs = HfApi().list_repo_refs(repo_id, token=self._token)
        commits = {ref.name: ref.target_commit for ref in [*refs.tags, *refs.branches]}
        names = order_revisions([ref.name for ref in refs.branches], [ref.name for ref in refs.tags])
        return {name: commits[name] for name in names}

    def fetch(self, repo: str, revision: str | None = None) -> LocalAdapter:
        """The adapter ``repo`` at ``revision`` (default ``main``), checked and on disk; :class:`Refusal` if not."""
        repo_id = check_repo_id(repo, self.allowlist)
        revision = check_revision(revision)
        cached = self._cached(repo_id, revision) if is_commit(revision) else None
        if cached is not None:
            return self._checked(repo_id, revision, revision, *cached)
        with hub_errors(repo_id, revision):
            commit, size, sha256 = self._inspect(repo_id, revision)
            config_path = self._download(repo_id, ADAPTER_CONFIG, commit)
            self._check_config_file(repo_id, revision, commit, config_path)
            weights_path = self._download(repo_id, ADAPTER_WEIGHTS, commit)
        logger.info("fetched %s@%s (%s, %.1f MB)", repo_id, revision, commit[:7], (size or 0) / MB)
        return self._checked(repo_id, revision, commit, config_path, weights_path, sha256)

    def check_remote(self, repo: str, revision: str | None = None) -> str:
        """Check ``repo`` at ``revision`` (default ``main``) on the Hub without downloading its weights: safetensors
        weights within the size cap, and a LoRA config for this base (its layers are not checked when the
        signature has none). Returns the commit; :class:`Refusal` says what is wrong."""
        repo_id = check_repo_id(repo, self.allowlist)
        revision = check_revision(revision)
        with hub_errors(repo_id, revision):
            commit, _, _ = self._inspect(repo_id, revision)
            config_path = self._download(repo_id, ADAPTER_CONFIG, commit)
        self._check_config_file(repo_id, revision, commit, config_path)
        return commit

    def _cached(self, repo_id: str, commit: str) -> tuple[Path, Path] | None:
        from huggingface_hub import try_to_load_from_cache

        paths = [
            try_to_load_from_cache(repo_id, name, cache_dir=self.cache_dir, revision=commit)
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
        ]
        if all(isinstance(path, str) for path in paths):
            return Path(paths[0]), Path(paths[1])  # type: ignore[arg-type]
        return None

    def _inspect(self, repo_id: str, revision: str) -> tuple[str, int | None, str | None]:
        """The commit of ``revision``, the size of its weights and their sha256 (the Hub's LFS sha256; ``None``
        when the file is not in LFS), refusing repos without safetensors weights."""
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, token=self._token)
        siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
        files = {name: sibling.size for name, sibling in siblings.items()}
        source = f"{quote(repo_id)} at {quote(revision)}"
        if ADAPTER_CONFIG not in files:
            raise Refusal(f"{source} is not a PEFT adapter: it has no {ADAPTER_CONFIG}.")
        if ADAPTER_WEIGHTS not in files:
            pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
            if pickles:
                raise Refusal(
                    f"{source} has its weights only as a pickle ({', '.join(pickles)}), which can run code when "
                    f"loaded: this Space loads {ADAPTER_WEIGHTS} only. Re-save the adapter with "
                    "save_pretrained(safe_serialization=True) and push again."
                )
            raise Refusal(f"{source} has no {ADAPTER_WEIGHTS}: it is not a PEFT adapter.")
        size = files[ADAPTER_WEIGHTS]
        self._check_size(source, size)
        if not info.sha:
            raise Refusal(f"The Hub did not say which commit {source} is; try again.")
        lfs = siblings[ADAPTER_WEIGHTS].lfs
        return info.sha, size, lfs.sha256 if lfs is not None else None

    def _check_size(self, source: str, size: int | None) -> None:
        if size is not None and size > self.max_bytes:
            raise Refusal(
                f"{source}: {ADAPTER_WEIGHTS} is {size / MB:.1f} MB, above this Space's limit of "
                f"{round(self.max_bytes / MB, 3):g} MB (PHI3_SPACE_MAX_ADAPTER_MB)."
            )

    def _download(self, repo_id: str, filename: str, commit: str) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename, revision=commit, token=self._token, cache_dir=self.cache_dir))

    def _check_config_file(self, repo_id: str, revision: str, commit: str, path: Path) -> dict[str, Any]:
        source = _source(repo_id, revision, commit)
        try:
            config = read_adapter_config(path, source)
        except ModelError as error:
            raise Refusal(str(error)) from None
        check_config(config, self.base, source, layers=bool(self.base.linear))
        return config

    def _sha256(self, path: Path) -> str:
        """sha256 of the file at ``path``, computed once per file of the cache (the snapshot's link target)."""
        blob = path.resolve()
        with self._hashes_lock:
            known = self._hashes.get(blob)
        if known is None:
            known = sha256_of(blob)
            with self._hashes_lock:
                self._hashes[blob] = known
        return known

    def _checked(
        self,
        repo_id: str,
        revision: str,
        commit: str,
        config_path: Path,
        weights_path: Path,
        sha256: str | None = None,
    ) -> LocalAdapter:
        """Check the files on disk (again, for cached ones) and describe the adapter; the weights' sha256 is the
        Hub's, or computed here when the Hub gave none (a cached commit, a file outside LFS)."""
        source = _source(repo_id, revision, commit)
        config = self._check_config_file(repo_id, revision, commit, config_path)
        size = weights_path.stat().st_size
        self._check_size(source, size)
        shapes = check_weights(weights_path, self.base, source)
        if config_path.parent != weights_path.parent:
            raise Refusal(f"{source}: the adapter's files are not in one folder of the cache; clear the cache.")
        weights = sha256 or self._sha256(weights_path)
        return LocalAdapter(AdapterKey(repo_id, commit), revision, weights_path.parent, config, size, shapes, weights)


def _source(repo_id: str, revision: str, commit: str) -> str:
    if revision == commit:
        return f"{quote(repo_id)} at {quote(commit[:7])}"
    return f"{quote(repo_id)} at {quote(revision)}"
