"""Sampling: a checkpoint's model in a jit-compiled `lax.scan` sampler, and video files out.

  sampler = load_sampler("workdirs/tiny")            # EMA params of the latest step
  videos = sampler(["a red circle moves up"], seed=0)  # uint8 (N, T, H, W, 3)
"""
import os
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import modeling
from lumiere_jax import progress as progress_lib
from lumiere_jax import video_io
from lumiere_jax.data import tokenizer as tokenizer_lib
from lumiere_jax.diffusion import samplers

TOKENIZER_FILE = "tokenizer.model"


class Sampler:
  """Text (+ optional conditioning) -> videos, compiled once per batch shape and setting.

  Prompts are processed in chunks of `config.sample.batch_size` (the last chunk padded), so any
  number of prompts reuses one compiled function.
  """

  def __init__(self, config: ml_collections.ConfigDict, model, params: Any,
               tokenizer: tokenizer_lib.Tokenizer):
    self.config = config
    self.model = model
    self.params = params
    self.tokenizer = tokenizer
    self._compiled = {}

  @property
  def video_shape(self) -> tuple[int, int, int, int]:
    d = self.config.data
    return (d.num_frames, d.resolution, d.resolution, 3)

  def _sample_fn(self, sample_cfg, t_start: float, with_cond: bool, with_known: bool):
    key = (tuple(sorted(sample_cfg.items())), t_start, with_cond, with_known)
    if key not in self._compiled:
      model, diff_cfg = self.model, self.config.diffusion

      def fn(params, tokens, text_mask, rng, cond, x_init, known_x, known_mask):
        emb = model.apply({"params": params}, tokens, text_mask, method=model.encode_text)

        def denoise(x, t, e, m, c):
          return model.apply({"params": params}, x, t, e, m, c, method=model.denoise)

        known = (known_x, known_mask) if with_known else None
        return samplers.sample(denoise, rng, (tokens.shape[0],) + self.video_shape, emb,
                               text_mask, diff_cfg, sample_cfg, cond=cond if with_cond else None,
                               x_init=x_init if t_start < 1.0 else None, t_start=t_start,
                               known=known)

      self._compiled[key] = jax.jit(fn)
    return self._compiled[key]

  def __call__(self, prompts: Sequence[str], seed: int = 0, *, cond: np.ndarray | None = None,
               x_init: np.ndarray | None = None, strength: float = 1.0,
               known: tuple[np.ndarray, np.ndarray] | None = None,
               progress: bool = False, **sample_overrides) -> np.ndarray:
    """Generates one uint8 video `(T, H, W, 3)` per prompt.

    Args:
      prompts: the texts; empty ones are rejected, too long ones truncated with a warning.
      seed: the sampling seed; chunk i uses `fold_in(PRNGKey(seed), i)`.
      cond: optional `(N, T, H, W, C)` conditioning for a conditional model.
      x_init: optional `(N, T, H, W, 3)` float video in [-1, 1] for SDEdit, with `strength` in
        [0, 1] the noise level it starts from (0 returns the input, 1 ignores it).
      known: optional `(x, mask)` whose masked pixels are kept exactly (replacement sampling).
      progress: print a progress line per chunk.
      **sample_overrides: e.g. guidance=5.0, num_steps=64, sampler="ddpm".
    """
    if not prompts:
      raise ValueError("no prompts given")
    if not 0.0 <= strength <= 1.0:
      raise ValueError(f"strength must be in [0, 1], got {strength}")
    if strength < 1.0 and x_init is None:
      raise ValueError("strength < 1 (video-to-video) needs an input video")
    unknown = set(sample_overrides) - set(self.config.sample.keys())
    if unknown:
      raise ValueError(f"unknown sample settings {sorted(unknown)}")
    sample_cfg = ml_collections.ConfigDict({
        k: v for k, v in self.config.sample.items()
        if k in ("sampler", "num_steps", "guidance", "eta", "clip_x0")})
    sample_cfg.update({k: v for k, v in sample_overrides.items() if k in sample_cfg})
    tokens, mask = self.tokenizer.encode_prompts(list(prompts), self.config.data.max_text_len)
    n, bs = len(prompts), int(self.config.sample.batch_size)
    if cond is not None and self.config.model.cond_channels == 0:
      raise ValueError("this checkpoint has no conditioning input (model.cond_channels=0); "
                       "image-to-video, inpainting and cinemagraphs need a `cond` model")
    fn = self._sample_fn(sample_cfg, float(strength), cond is not None, known is not None)
    zeros = np.zeros((n,) + self.video_shape, np.float32)
    arrays = dict(tokens=tokens, mask=mask, cond=cond if cond is not None else zeros[..., :1],
                  x_init=x_init if x_init is not None else zeros,
                  known_x=known[0] if known is not None else zeros,
                  known_mask=known[1] if known is not None else zeros[..., :1])
    prog = progress_lib.Progress("sample", n, unit="videos", interval=0.0) if progress else None
    out = []
    for chunk, start in enumerate(range(0, n, bs)):
      part = {k: _pad_to(np.asarray(v)[start:start + bs], bs) for k, v in arrays.items()}
      rng = jax.random.fold_in(jax.random.PRNGKey(seed), chunk)
      videos = fn(self.params, part["tokens"], part["mask"], rng, part["cond"], part["x_init"],
                  part["known_x"], part["known_mask"])
      out.append(video_io.to_uint8(jax.device_get(videos))[:n - start])
      if prog:
        prog.update(min(n, start + bs))
    return np.concatenate(out)


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
  """Pads the batch dimension by repeating the last row (the padded outputs are dropped)."""
  if a.shape[0] == size:
    return a
  return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)])


def load_sampler(workdir: str, step: int | None = None, use_ema: bool = True,
                 config: ml_collections.ConfigDict | None = None) -> Sampler:
  """Restores a workdir's (EMA) params into a `Sampler`; `config` defaults to the workdir's."""
  config = config if config is not None else ckpt_lib.load_config(workdir)
  tok_path = os.path.join(workdir, TOKENIZER_FILE)
  tokenizer = tokenizer_lib.Tokenizer.load(tok_path)
  model = modeling.build(config, tokenizer.vocab_size)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                          flax.linen.meta.unbox(modeling.abstract_params(model, config)))
  params, step = ckpt_lib.restore_subtree(workdir, ("ema_params" if use_ema else "params",),
                                          abstract, step=step)
  sampler = Sampler(config, model, params, tokenizer)
  sampler.step = step
  return sampler


def write_videos(videos: np.ndarray, prompts: Sequence[str], out_dir: str, fps: int) -> str:
  """Writes `<slug>.mp4` and `<slug>.gif` per prompt, `grid.png` and `prompts.txt`."""
  os.makedirs(out_dir, exist_ok=True)
  slugs = []
  for video, prompt in zip(videos, prompts):
    slug = video_io.slugify(prompt)
    slug = slug if slug not in slugs else f"{slug}_{len(slugs)}"
    slugs.append(slug)
    video_io.write_mp4(os.path.join(out_dir, slug + ".mp4"), video, fps)
    video_io.write_gif(os.path.join(out_dir, slug + ".gif"), video, fps)
  video_io.write_png(os.path.join(out_dir, "grid.png"), video_io.frame_grid(videos), min_side=256)
  with open(os.path.join(out_dir, "prompts.txt"), "w", encoding="utf-8") as f:
    f.write("".join(f"{s}\t{p}\n" for s, p in zip(slugs, prompts)))
  return out_dir


def generate_to_dir(config, model, params, tokenizer, prompts: Sequence[str], out_dir: str,
                    seed: int | None = None) -> str:
  sampler = Sampler(config, model, params, tokenizer)
  videos = sampler(prompts, seed=config.sample.seed if seed is None else seed, progress=True)
  write_videos(videos, prompts, out_dir, config.data.fps)
  logging.info("Wrote %d videos to %s", len(prompts), out_dir)
  return out_dir


def sample_from_workdir(config, workdir: str, prompts: Sequence[str] | None = None,
                        step: int | None = None, seed: int | None = None,
                        out_dir: str | None = None) -> str:
  """`--mode=sample`: the checkpoint of `workdir` and the prompts -> video files."""
  prompts = list(prompts) if prompts else list(config.sample.prompts)
  sampler = load_sampler(workdir, step=step, use_ema=config.sample.use_ema, config=config)
  out_dir = out_dir or os.path.join(workdir, "samples", str(sampler.step))
  seed = config.sample.seed if seed is None else seed
  videos = sampler(prompts, seed=seed, progress=True)
  return write_videos(videos, prompts, out_dir, config.data.fps)
