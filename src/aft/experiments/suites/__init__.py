"""Committed suite configs: `fashion-mnist`, `fashion-mnist-views`, `spam-assassin` and the `demo`."""
