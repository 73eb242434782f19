"""`tooloo`: the operator's command line for a running fleet (HTTP) and its Redis (backup)."""
