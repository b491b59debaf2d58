"""``python -m phi3_lora_hub`` is the ``phi3-lora-hub`` command."""

import sys

from phi3_lora_hub.cli.main import main

sys.exit(main())
