"""Proxy training: the data, recipes, loops and checkpoints behind the training evaluators."""
