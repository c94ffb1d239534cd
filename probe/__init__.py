"""registry-probe: checks that a node reaches every registry it pulls from, as its runtime would."""

__version__ = "0.1.0"
