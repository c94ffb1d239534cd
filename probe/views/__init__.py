"""The views of the engine's results: the `check` report (text, JSON), its advice, and metrics."""
