"""registry-probe: checks, as a node's container runtime would, that every registry it pulls from is reachable."""

__version__ = "0.1.0"
