"""The runtime of the side-by-side Space (``space_app/app.py`` is only its UI).

One job per module:

- :mod:`.settings`: configuration from ``PHI3_SPACE_*`` environment variables (and ``space_config.json``).
- :mod:`.repo_policy`: which repo ids and revisions may be asked for (``namespace/name``, allowlist).
- :mod:`.compat`: does an adapter fit the loaded base (config and safetensors header), checked before loading.
- :mod:`.hub_adapters`: list revisions, resolve them to commits, fetch the two adapter files with a size cap.
- :mod:`.base_model`: load the Phi-3 base and tokenizer once, for serving.
- :mod:`.registry`: adapters loaded into one PEFT model, least recently used unloaded, one lock for all use.
- :mod:`.streaming`: both panes answered in one batched ``generate``, streamed token by token.
- :mod:`.limits`: caps on prompts and generation settings.
- :mod:`.conversation`: a visitor's two panes, blind mode, and the vote record they become.
- :mod:`.vote_store`: votes in a local JSONL file, uploaded to a Hub dataset in the background.
- :mod:`.leaderboard`: ratings and win rates per adapter revision.
- :mod:`.runtime`: ties the above together for the app.
- :mod:`.launch`: safe ``queue()``/``launch()`` settings.
- :mod:`.deploy`: build and upload the Space repository.

Every refusal is a :class:`~.refusal.Refusal` whose message is written for the visitor.
"""
