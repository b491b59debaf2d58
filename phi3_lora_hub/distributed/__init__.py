"""The recipe under ``accelerate launch`` and ``torchrun``.

- :mod:`~phi3_lora_hub.distributed.processes`: which process prepares data, writes files and talks to the Hub.
- :mod:`~phi3_lora_hub.distributed.launch`: the launcher's settings, read as accelerate will and checked up front.
"""
