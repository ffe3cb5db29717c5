"""The layout of a run's directory (`--workdir`), in one place.

  config.json           the run's config (written once the train state fits it)
  tokenizer.model       the caption tokenizer trained on the dataset's captions
  checkpoints/<step>/   Orbax checkpoints: train state and data-iterator positions
  metrics.jsonl         one JSON row per logged step; tensorboard/ has the same for TensorBoard
  samples/<step>/       videos sampled at the end of training (heldout/: the held-out captions)
                        and by --mode=sample
  eval/                 --mode=eval and --mode=sweep results (eval/samples/<cell>/: their videos)

An exported sampler's directory (`sample.export_sampler`) holds a tokenizer under the same name.
"""
import os

CONFIG = "config.json"
TOKENIZER = "tokenizer.model"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
SAMPLES = "samples"
EVAL = "eval"


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG)


def tokenizer_path(workdir: str) -> str:
  return os.path.join(workdir, TOKENIZER)


def checkpoints_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINTS)


def samples_dir(workdir: str, *parts) -> str:
  """`samples/` or, with parts such as (step, "heldout"), a directory below it."""
  return os.path.join(workdir, SAMPLES, *map(str, parts))


def eval_dir(workdir: str) -> str:
  return os.path.join(workdir, EVAL)
