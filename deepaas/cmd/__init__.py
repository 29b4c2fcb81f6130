"""Command-line entry points: the only layer that reads oslo.config and the environment."""
