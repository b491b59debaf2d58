"""Everything that talks to the Hugging Face Hub. ``phi3_lora_hub.hub.server`` is the local Hub server."""
