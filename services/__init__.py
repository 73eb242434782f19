"""One package per service of the fleet."""
