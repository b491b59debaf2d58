"""How many visitors may wait for an answer: the queue is sized from the hardware unless the owner sets it."""

from __future__ import annotations

import pytest

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.space.launch import MIN_QUEUE, default_queue_size, queue_kwargs
from phi3_lora_hub.space.settings import SpaceSettings


def test_the_queue_is_sized_from_the_hardware_unless_set():
    assert default_queue_size(gpus=1) == 256 and default_queue_size(gpus=2) == 512
    assert default_queue_size(gpus=0, cpu_cores=2) == MIN_QUEUE == 64 and default_queue_size(0, 16) == 512
    assert queue_kwargs(SpaceSettings())["max_size"] == default_queue_size() >= 50
    assert queue_kwargs(SpaceSettings.from_env({"PHI3_SPACE_QUEUE_SIZE": "5"}))["max_size"] == 5
    with pytest.raises(ConfigError, match="PHI3_SPACE_QUEUE_SIZE must be positive"):
        SpaceSettings.from_env({"PHI3_SPACE_QUEUE_SIZE": "0"})
