"""The reports service (port 3008): metrics from the rounds, meta and system event streams."""
