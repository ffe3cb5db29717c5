r"""Picks the dataset builder named by `config.data.name`; every builder is built once, reused.

Build a config's dataset ahead of training (like `tfds build`, with the name training will use):

  python -m lumiere_jax.data.datasets --config=experiments/video_folder.py \
      --config.data.video_dir=/path/to/videos
"""
import sys

from lumiere_jax import errors
from lumiere_jax.data import synthetic
from lumiere_jax.data import video_folder

BUILDERS = {
    "synthetic_clips": synthetic.build_dataset,
    "video_folder": video_folder.build_video_folder,
}


def build_dataset(data_cfg, data_dir=None):
  """The prepared TFDS builder for `data_cfg`; data_dir None: `synthetic.resolve_data_dir`."""
  if data_cfg.name not in BUILDERS:
    raise errors.UserError(f"Unknown dataset name {data_cfg.name!r}; expected one of "
                           f"{tuple(BUILDERS)}.")
  return BUILDERS[data_cfg.name](data_cfg, data_dir)


def _main(argv):
  if len(argv) > 1:
    raise SystemExit(f"error: unexpected arguments: {' '.join(argv[1:])}")
  try:
    builder = build_dataset(_CONFIG.value.data)
  except (errors.UserError, FileNotFoundError, NotADirectoryError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  splits = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
  print(f"Dataset {builder.data_dir}: clips per split {splits}.", flush=True)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
  app.run(_main)
