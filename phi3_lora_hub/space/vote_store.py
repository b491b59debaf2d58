"""Where votes go: a local JSONL file per app instance, appended to a Hub dataset repo in the background.

Each app instance writes its own ``votes/votes-<instance>.jsonl`` (one :class:`VoteRecord` per line, via
:func:`phi3_lora_hub.arena.votes.append_votes`), so replicas and restarts never write the same file. With a
dataset repo configured, a ``huggingface_hub.CommitScheduler`` uploads the folder to ``data/`` of that repo every
few minutes (and at exit) from a background thread; a vote never waits for the Hub, and a Hub outage only delays
the upload. At start the votes already in the dataset are fetched once (in the background too), so the
leaderboard survives restarts of a Space whose disk is ephemeral.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from phi3_lora_hub.arena.votes import VoteRecord, append_votes, read_votes

logger = logging.getLogger(__name__)

PATH_IN_REPO = "data"


class VoteStore:
    """Votes of this Space: the ones cast here, the ones found on disk and in the dataset repo at start."""

    def __init__(
        self,
        directory: str | Path,
        *,
        repo_id: str | None = None,
        token: str | None = None,
        private: bool = True,
        every_minutes: float = 5.0,
        instance: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.local_dir = self.directory / "votes"
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.instance = instance or uuid.uuid4().hex[:12]
        self.path = self.local_dir / f"votes-{self.instance}.jsonl"
        self.repo_id = repo_id
        self.upload_error: str | None = None
        """Why votes are not uploaded (set when the dataset repo could not be set up), else ``None``."""
        self._lock = threading.Lock()
        self._records: list[VoteRecord] = []
        self._version = 0
        self._token = token
        self._scheduler = None
        for existing in sorted(self.local_dir.glob("votes-*.jsonl")):
            self._records.extend(read_votes(existing, skip_invalid=True))
        self._version = len(self._records)
        if repo_id:
            self._start_upload(repo_id, token, private, every_minutes)
            threading.Thread(target=self._fetch_hub_votes, daemon=True, name="hub-votes").start()

    @property
    def version(self) -> int:
        """Grows whenever the set of votes changes (to cache what is computed from them)."""
        return self._version

    @property
    def uploading(self) -> bool:
        return self._scheduler is not None

    def add(self, record: VoteRecord) -> None:
        """Append ``record`` to this instance's file (never interleaved with an upload in progress)."""
        lock = self._scheduler.lock if self._scheduler is not None else self._lock
        with lock:
            append_votes(self.path, [record])
        with self._lock:
            self._records.append(record)
            self._version += 1

    def records(self) -> list[VoteRecord]:
        """Every vote known here, oldest first."""
        with self._lock:
            return sorted(self._records, key=lambda record: record.tstamp)

    def export(self, directory: str | Path | None = None, *, transcripts: bool = True) -> Path:
        """Write every vote to a new JSONL file (in a fresh temporary folder by default) and return its path.

        ``transcripts=False`` empties the text of every message (see :meth:`VoteRecord.without_transcripts`).
        """
        folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="phi3-space-votes-"))
        path = folder / f"votes-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self.records() if transcripts else [record.without_transcripts() for record in self.records()]
        path.write_text("".join(record.to_json() + "\n" for record in records), encoding="utf-8")
        return path

    def flush(self) -> None:
        """Upload now (blocking) what was not uploaded yet; a no-op without a dataset repo."""
        if self._scheduler is not None:
            self._scheduler.trigger().result()

    def close(self) -> None:
        """Upload what is left and stop the background uploads. Never raises: when the last upload fails (Hub
        down at shutdown) the votes stay in the local files, and a warning says so."""
        if self._scheduler is None:
            return
        try:
            self.flush()
        except Exception as error:
            logger.warning(
                "the last votes were not uploaded (%s); they stay in %s", type(error).__name__, self.local_dir
            )
        finally:
            self._scheduler.stop()

    def _start_upload(self, repo_id: str, token: str | None, private: bool, every_minutes: float) -> None:
        from huggingface_hub import CommitScheduler

        try:
            self._scheduler = CommitScheduler(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=self.local_dir,
                path_in_repo=PATH_IN_REPO,
                every=every_minutes,
                private=private,
                token=token,
                allow_patterns=["votes-*.jsonl"],
            )
        except Exception as error:  # the Space still works; votes stay local
            self.upload_error = f"{type(error).__name__} while setting up the dataset {repo_id}"
            logger.warning("votes will stay on this machine: %s", self.upload_error)

    def _fetch_hub_votes(self) -> None:
        """Read the dataset's vote files once, skipping files this machine has itself."""
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(
                self.repo_id,
                repo_type="dataset",
                allow_patterns=[f"{PATH_IN_REPO}/votes-*.jsonl"],
                local_dir=self.directory / "hub-votes",
                token=self._token or False,
            )
        except Exception as error:
            logger.warning("could not read earlier votes from %s: %s", self.repo_id, type(error).__name__)
            return
        local_names = {path.name for path in self.local_dir.glob("votes-*.jsonl")}
        found = [
            path for path in sorted(Path(folder).glob(f"{PATH_IN_REPO}/votes-*.jsonl")) if path.name not in local_names
        ]
        self.extend(read_votes(found, skip_invalid=True) if found else [])

    def extend(self, records: Iterable[VoteRecord]) -> None:
        """Add votes cast elsewhere (not written to this instance's file)."""
        records = list(records)
        if records:
            with self._lock:
                self._records.extend(records)
                self._version += 1
