"""Procedural street scenes with exact depth and labels, for the demo, tests and training."""
