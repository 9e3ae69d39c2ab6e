"""Committed suite configs: `fashion-mnist`, `spam-assassin` and the `demo`."""
