"""The orchestrator (port 3123): starts and supervises the fleet's services and pre-arms them."""
