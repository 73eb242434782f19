"""Test support: a real redis-server and real service processes on free ports."""
