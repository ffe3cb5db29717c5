r"""Spatial super-resolution (SSR) STUNet: the second stage of Lumiere's cascade.

The SSR model sees the low-resolution video upsampled to its resolution as a 3-channel cond
(`model.cond_channels=3`) and is trained on `data.num_frames`-frame clips at `data.resolution`,
downsampled by `ssr.factor` on the fly (`conditioning.ssr_condition`). At sampling time it takes
videos of any length >= `ssr.window` by MultiDiffusion: overlapping windows of `ssr.window` frames
(`ssr.overlap` shared), averaged at every denoising step (the paper: overlap 2).

Variants (`--config=experiments/ssr.py:VARIANT`):
  (none)  tiny CPU SSR, 32 -> 64 px, trained on 4-frame windows; lifts the tiny base model's
          8-frame videos with 3 windows of 4 frames (overlap 2).
  test    the smallest shapes (16 -> 32 px), for unit tests: lifts tiny:test videos.
  paper   paper scale: 128 -> 1024 px, 16-frame windows with overlap 2 over the base model's 80
          frames, bfloat16, FSDP; built abstractly (`jax.eval_shape`) by the pod planner.

Cascade: `--mode=sample --workdir=<base run> --ssr_workdir=<ssr run>` writes both resolutions.
"""
import importlib.util
import os

import ml_collections

VARIANTS = ("tiny", "test", "paper")


def _tiny_config(arg: str = "") -> ml_collections.ConfigDict:
  """tiny.py's config as the common base; loaded by path like `--config` loads this file."""
  spec = importlib.util.spec_from_file_location(
      "lumiere_tiny_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str = ""):
  variant = arg or "tiny"
  if variant not in VARIANTS:
    raise ValueError(f"unknown ssr variant {arg!r}; use one of {VARIANTS}")
  c = _tiny_config("test" if variant == "test" else "")
  c.variant = f"ssr_{variant}"
  c.model.cond_channels = 3
  # The low-resolution video already fixes layout and motion: tiny.py's motion modules are off
  # and noise levels uniform (its tail is for what only the caption can say).
  c.model.update(position_code=False, frame_film=False, text_layout=False)
  c.diffusion.t_tail_frac = 0.0
  c.ssr = ml_collections.ConfigDict(dict(
      factor=2,            # Low-res side = data.resolution / factor.
      window=4,            # MultiDiffusion window (frames); 0 = whole video in one pass.
      overlap=2,           # Frames shared by consecutive windows.
      upsample="bilinear",  # How the low-res video is upsampled into the cond.
  ))
  # The cond carries the layout: fewer sampling steps and little guidance suffice.
  c.sample.update(num_steps=16, guidance=1.0)
  # The end-of-training samples and text-alignment probe are for text-to-video models.
  c.train.update(sample_at_end=False, eval_prompts=0)
  if variant == "tiny":
    c.data.update(num_frames=4, resolution=64, num_train=2000)
    c.model.update(channels=(32, 64), space_to_depth=4)
    c.train.update(steps=500, ckpt_every=250)
  elif variant == "test":
    c.data.update(resolution=32)
    c.sample.update(num_steps=4)
  else:
    c.data.update(num_frames=16, resolution=1024, fps=16, max_text_len=128)
    c.ssr.update(factor=8, window=16, overlap=2)
    # Imagen-SSR-like width; space-to-depth 4 so the first level runs at 256x256; attention
    # only at the coarsest level (32x32); 16 -> 4 frames in time.
    c.model.update(
        channels=(128, 256, 512, 1024), num_res_blocks=2, attn_levels=(3,), num_heads=0,
        head_dim=64, temporal_downsample=(False, True, True), space_to_depth=4,
        norm_groups=32, pixel_skip=True, dtype="bfloat16", param_dtype="float32")
    c.text.update(kind="precomputed", width=1024)
    c.data.text_embedding_dim = 4096  # T5-XXL features stored with the clips.
    c.train.update(steps=200_000, batch_size=64, lr=1e-4, warmup_steps=10_000,
                   ema_decay=0.9999)
    # The 6 windows of an 80-frame video in one call need 16.6 GiB of temporaries on v5e
    # (16 GiB): 2 windows per call, 3 calls per step (docs/pod_plan.md).
    c.sample.update(num_steps=64, batch_size=1, windows_per_call=2)
    c.mesh.update(shape=(1, -1))
    c.mesh.gather_params = True  # As in base.py: gather weights, not activations.
  return c
