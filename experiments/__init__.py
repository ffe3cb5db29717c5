"""Experiment configs: one file per experiment, each with `get_config(arg)` and its variants.

`load("tiny", "test")` returns what `--config=experiments/tiny.py:test` loads; tests and
benchmarks use it.
"""
import importlib

import ml_collections


def load(name: str, arg: str = "") -> ml_collections.ConfigDict:
  return importlib.import_module(f"{__name__}.{name}").get_config(arg)
