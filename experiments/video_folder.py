r"""The tiny CPU model trained on a user directory of captioned videos (see docs/data.md).

  python -m lumiere_jax.main --config=experiments/video_folder.py --workdir=workdirs/vf \
      --config.data.video_dir=/path/to/videos

Variants are tiny's (`experiments/tiny.py:VARIANT`); the model, text, diffusion, training and
mesh sections are tiny's, only `data` (and the sample prompts) change.
"""
import importlib.util
import os

import ml_collections


def _tiny_get_config(arg):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.py")
  spec = importlib.util.spec_from_file_location("experiments.tiny", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str = ""):
  c = _tiny_get_config(arg)
  c.data = ml_collections.ConfigDict(dict(
      name="video_folder", video_dir="", data_dir="",
      num_frames=c.data.num_frames, resolution=c.data.resolution, fps=c.data.fps,
      clip_stride=0,  # 0: num_frames (non-overlapping windows).
      validation_fraction=0.05, max_bad_fraction=0.05, num_workers=2,
      max_text_len=c.data.max_text_len, vocab_size=c.data.vocab_size,
      random_flip=False, random_temporal_flip=False, worker_count=0,
  ))
  # Prompts about the user's data are unknown here; pass --prompt to sample instead.
  c.sample.prompts = ("a video",)
  return c
