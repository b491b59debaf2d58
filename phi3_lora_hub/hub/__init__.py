"""Everything that talks to the Hugging Face Hub as a client.

The local Hub server is an application of its own (``phi3_lora_hub.local_hub``); nothing here imports it.

Publishing checkpoints while training runs (the ``TrainerCallback`` that drives it is
:class:`phi3_lora_hub.callbacks.hub_push.HubPushCallback`):

- :class:`HubPublisher` (``publisher``) does the work: ``staging`` (immutable copies), ``worker`` (one background
  thread, coalescing, flush deadline), ``uploader`` (commits and branches, idempotent), ``retry`` (classifying
  errors, backoff), ``timeouts`` (HTTP timeouts for the plugin's requests only), ``tokens``, ``naming`` (branch
  names), ``files`` (what is pushed), ``marker`` (completion marker of resumable checkpoints), ``report``
  (:class:`HubPushReport`).
- :func:`resume_checkpoint_from_hub` (``resume``): download the newest complete resumable checkpoint.
- :func:`push_adapter` (``adapter_push``): publish an existing adapter directory (``phi3-lora-hub push``).
"""
