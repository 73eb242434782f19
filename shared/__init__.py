"""The fleet's common library: settings, Redis, keys, scripts, logging, HTTP plumbing."""
