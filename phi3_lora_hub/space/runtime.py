"""Everything the Space app needs behind its UI, built once per process from :class:`SpaceSettings`.

``SpaceRuntime.start(settings)`` loads the base model, wraps it for adapters (:class:`AdapterRegistry`), sets
up the adapter source (allowlist, size cap, token) and the vote store. The app's handlers then call:

- :meth:`~SpaceRuntime.model_choices` / :meth:`~SpaceRuntime.revision_choices` for the pickers;
- :meth:`~SpaceRuntime.contender` to turn picker values into a checked, loaded model (or a :class:`Refusal`);
- :meth:`~SpaceRuntime.draw_pair` for a blind battle between two models drawn at random;
- :meth:`~SpaceRuntime.stream` to answer both panes at once;
- :meth:`~SpaceRuntime.record_vote`, :meth:`~SpaceRuntime.leaderboard`, :meth:`~SpaceRuntime.export_votes`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from transformers import GenerationConfig

from phi3_lora_hub.arena.votes import VoteRecord
from phi3_lora_hub.space.base_model import ServedBase, load_base
from phi3_lora_hub.space.conversation import BASE_CHOICE, Contender
from phi3_lora_hub.space.hub_adapters import MB, AdapterSource
from phi3_lora_hub.space.leaderboard import CachedLeaderboard, Row
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.registry import AdapterRegistry
from phi3_lora_hub.space.repo_policy import AllowList
from phi3_lora_hub.space.settings import SpaceSettings
from phi3_lora_hub.space.streaming import SideProgress, SideRequest, check_fits, stream_pair
from phi3_lora_hub.space.vote_store import VoteStore

logger = logging.getLogger(__name__)

BASE_LABEL = "Base model (no adapter)"
REVISIONS_TTL_S = 30.0


class SpaceRuntime:
    """The loaded base model, its adapters, where they come from, and the votes. Shared by all visitors."""

    def __init__(
        self,
        settings: SpaceSettings,
        base: ServedBase,
        *,
        registry: AdapterRegistry | None = None,
        source: AdapterSource | None = None,
        store: VoteStore | None = None,
    ) -> None:
        self.settings = settings
        self.base = base
        self.registry = registry or AdapterRegistry(
            base.model, capacity=settings.max_loaded_adapters, cache_dir=Path(settings.data_dir) / "adapter-cache"
        )
        self.allowlist = AllowList.of([*settings.adapters, *settings.allowlist])
        self.source = source or AdapterSource(
            base.signature,
            self.allowlist,
            token=settings.token,
            max_bytes=int(settings.max_adapter_mb * MB),
        )
        self.store = store or VoteStore(
            settings.data_dir,
            repo_id=settings.votes_repo,
            token=settings.token,
            private=settings.votes_private,
            every_minutes=settings.votes_every_minutes,
        )
        self._names: dict[str, set[str]] = {}
        """Model key -> revision names visitors picked it by."""
        self._commits: dict[tuple[str, str], str] = {}
        """(repo, commit) -> model key, for every adapter commit loaded."""
        self._revisions: dict[str, tuple[float, dict[str, str]]] = {}
        """Repo -> (when listed, revision name -> commit)."""
        self._cache_lock = threading.Lock()
        self._preloading: threading.Thread | None = None
        self._leaderboard = CachedLeaderboard(self.store.records, lambda: self.store.version, self.revision_names)

    @classmethod
    def start(cls, settings: SpaceSettings) -> SpaceRuntime:
        """Load the base model named by ``settings`` and set everything up around it; with ``settings.preload``,
        the offered adapters are then loaded in the background (:meth:`preload`)."""
        base = load_base(
            settings.base_model,
            revision=settings.base_revision,
            aliases=settings.base_aliases,
            dtype=settings.dtype,
            token=settings.token,
            max_context_tokens=settings.max_context_tokens,
        )
        runtime = cls(settings, base)
        if settings.preload:
            runtime._preloading = threading.Thread(target=runtime.preload, daemon=True, name="preload-adapters")
            runtime._preloading.start()
        return runtime

    def preload(self) -> list[str]:
        """Fetch and load the offered adapters at ``main`` (as many as fit); returns their labels. A refusal is
        logged, not raised: a visitor picking that adapter will see it."""
        loaded = []
        for repo in self.settings.adapters[: self.registry.capacity]:
            try:
                loaded.append(self.contender(repo, "main").label)
            except Refusal as refusal:
                logger.warning("not preloaded: %s", refusal)
        return loaded

    def model_choices(self) -> list[tuple[str, str]]:
        """Picker entries ``(label, value)``: the base model, then the offered adapter repos."""
        return [(BASE_LABEL, BASE_CHOICE), *((repo, repo) for repo in self.settings.adapters)]

    def revision_choices(self, repo: str | None) -> list[str]:
        """Revisions of ``repo`` for the revision picker (``main`` first, then ``step-N`` newest first).

        Lists are cached for :data:`REVISIONS_TTL_S` seconds (every page load asks for the default pickers').
        """
        if is_base(repo):
            return []
        key = str(repo).strip().lower()
        now = time.monotonic()
        with self._cache_lock:
            cached = self._revisions.get(key)
        if cached is not None and now - cached[0] < REVISIONS_TTL_S:
            return list(cached[1])
        refs = self.source.refs(str(repo))
        with self._cache_lock:
            self._revisions[key] = (now, refs)
        return list(refs)

    def contender(self, repo: str | None, revision: str | None, *, pinned: Contender | None = None) -> Contender:
        """The model behind picker values ``repo``/``revision``, checked, fetched and loaded; :class:`Refusal`.

        When ``pinned`` was made from the same picker values it is returned as it is: a conversation keeps the
        commit it started with even if the branch moves, and asks the Hub nothing more.
        """
        if is_base(repo):
            return Contender()
        if pinned is not None and pinned.pick == (str(repo).strip(), (revision or "main").strip()):
            return pinned
        adapter = self.source.fetch(str(repo), revision)
        self.registry.load(adapter)
        ref = adapter.ref
        with self._cache_lock:
            self._commits[(adapter.key.repo_id.lower(), adapter.key.commit)] = ref.key
            if ref.name:
                self._names.setdefault(ref.key, set()).add(ref.name)
        return Contender(adapter)

    def draw_pair(self, rng: random.Random | None = None) -> tuple[Contender, Contender]:
        """Two different models drawn at random for a blind battle, among the base and every revision of the
        offered adapters (two names of one commit count once); a model that cannot be loaded is left out.
        :class:`Refusal` when fewer than two can."""
        rng = rng or random.Random()
        pool: list[tuple[str, str | None]] = [(BASE_CHOICE, None)]
        for repo in self.settings.adapters:
            try:
                pool.extend((repo, revision) for revision in self.revision_choices(repo))
            except Refusal as refusal:
                logger.warning("left out of blind battles: %s", refusal)
        rng.shuffle(pool)
        drawn: list[Contender] = []
        for repo, revision in pool:
            try:
                contender = self.contender(repo, revision)
            except Refusal as refusal:
                logger.warning("left out of blind battles: %s", refusal)
                continue
            if all(contender.ref != other.ref for other in drawn):
                drawn.append(contender)
            if len(drawn) == 2:
                return drawn[0], drawn[1]
        raise Refusal(
            "A blind battle needs two models and fewer than two can be loaded here: offer more adapters "
            "(PHI3_SPACE_ADAPTERS), or compare them by name with blind mode off."
        )

    def stream(
        self,
        sides: Sequence[tuple[Contender, Sequence[dict[str, str]]]],
        params: GenerationConfig,
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[list[SideProgress]]:
        """Answer each ``(contender, transcript)`` at once; see :func:`stream_pair`."""
        requests = [SideRequest(list(messages), contender.adapter) for contender, messages in sides]
        return stream_pair(self.base, self.registry, requests, params, cancel=cancel)

    def check_fits(self, transcripts: Sequence[Sequence[dict[str, str]]], params: GenerationConfig) -> None:
        """:class:`Refusal` when a transcript plus ``params.max_new_tokens`` exceeds the model's context."""
        check_fits(self.base, transcripts, params.max_new_tokens)

    def record_vote(self, record: VoteRecord) -> None:
        self.store.add(record)

    def revision_names(self) -> dict[str, set[str]]:
        """Model key (:attr:`ModelRef.key`) -> every revision name known here to point at those weights: picked
        since the start, or listed for a picker pointing at a commit that was loaded."""
        with self._cache_lock:
            names = {key: set(picked) for key, picked in self._names.items()}
            for repo, (_, refs) in self._revisions.items():
                for name, commit in refs.items():
                    key = self._commits.get((repo, commit))
                    if key is not None:
                        names.setdefault(key, set()).add(name)
        return names

    def leaderboard(self) -> list[Row]:
        return self._leaderboard.rows()

    def export_votes(self) -> Path:
        """The votes as a JSONL file for any visitor: with conversations only if ``export_transcripts`` allows."""
        return self.store.export(transcripts=self.settings.export_transcripts)

    def close(self) -> None:
        """Wait for the background preload, then upload the remaining votes (when a dataset repo is configured).

        Waiting matters beyond tidiness: PEFT loads adapters inside ``init_empty_weights``, which patches
        ``nn.Module.register_parameter`` for the whole process, so a preload left running breaks any model that
        another thread builds meanwhile.
        """
        if self._preloading is not None:
            self._preloading.join()
        self.store.close()


def is_base(repo: str | None) -> bool:
    return repo is None or not str(repo).strip() or str(repo).strip() == BASE_CHOICE
