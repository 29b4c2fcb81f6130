"""Command-line entry points: the only layer reading oslo.config and the environment."""
