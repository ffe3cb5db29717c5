"""Sampling: a checkpoint's model in a jit-compiled `lax.scan` sampler, and video files out.

  sampler = load_sampler("workdirs/tiny")            # EMA params of the latest step
  videos = sampler(["a red circle moves up"], seed=0)  # uint8 (N, T, H, W, 3)

The kind of checkpoint follows `config.model.cond_channels`: 0 = text-to-video, 4 = the
conditional model of the applications (masked video + mask), 3 = spatial super-resolution (SSR,
cond = the low-resolution video upsampled), run with MultiDiffusion over `config.ssr.window`-frame
windows when the video is longer than one window.
"""
import json
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
from lumiere_jax.data import text_features
from lumiere_jax.data import tokenizer as tokenizer_lib
from lumiere_jax.diffusion import conditioning
from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.diffusion import samplers

TOKENIZER_FILE = "tokenizer.model"
SAMPLE_KEYS = ("sampler", "num_steps", "guidance", "eta", "clip_x0", "spacing")
# Files of an exported sampler (see `export_sampler`).
EXPORT_FILE, PARAMS_FILE, META_FILE = "sampler.jax_export", "params.npz", "meta.json"


class Sampler:
  """Text (+ optional conditioning) -> videos, compiled once per batch shape and setting.

  Prompts are processed in chunks of `config.sample.batch_size` (the last chunk padded), so any
  number of prompts reuses one compiled function.
  """

  def __init__(self, config: ml_collections.ConfigDict, model, params: Any,
               tokenizer: tokenizer_lib.Tokenizer, step: int | None = None):
    self.config = config
    self.model = model
    self.params = params
    self.tokenizer = tokenizer
    self.step = step
    self._compiled = {}

  def replace(self, params: Any, step: int | None) -> "Sampler":
    """The same model with other params (another checkpoint, interpolated weights).

    The compiled sampling functions take the params as an argument, so the new sampler shares
    them: no recompilation.
    """
    new = Sampler(self.config, self.model, params, self.tokenizer, step)
    new._compiled = self._compiled  # pylint: disable=protected-access
    return new

  @property
  def video_shape(self) -> tuple[int, int, int, int]:
    d = self.config.data
    return (d.num_frames, d.resolution, d.resolution, 3)

  @property
  def cond_channels(self) -> int:
    return int(self.config.model.cond_channels)

  def windows(self, num_frames: int) -> tuple[int, int] | None:
    """(window, overlap) of MultiDiffusion for an SSR video of `num_frames`, or None (one pass).

    A window equal to the video still goes through MultiDiffusion (one window, same result).
    """
    ssr = self.config.get("ssr")
    if self.cond_channels != 3 or not ssr or not 0 < ssr.window <= num_frames:
      return None
    return int(ssr.window), int(ssr.overlap)

  def sample_settings(self, **overrides) -> ml_collections.ConfigDict:
    """config.sample's sampling settings (SAMPLE_KEYS) with `overrides`; other keys (e.g.
    `batch_size`, `use_ema`) are not per-call settings and are rejected."""
    unknown = set(overrides) - set(SAMPLE_KEYS)
    if unknown:
      raise ValueError(f"unknown sample settings {sorted(unknown)}; expected some of "
                       f"{list(SAMPLE_KEYS)}")
    cfg = ml_collections.ConfigDict({k: v for k, v in self.config.sample.items()
                                     if k in SAMPLE_KEYS})
    cfg.update(overrides)
    return cfg

  def sample_fn(self, sample_cfg, t_start: float = 1.0, with_known: bool = False):
    """The pure (un-jitted) sampling function; the video shape comes from `x_init`'s shape."""
    model, diff_cfg, with_cond = self.model, self.config.diffusion, self.cond_channels > 0

    def fn(params, tokens, text_mask, rng, cond, x_init, known_x, known_mask):
      emb = model.apply({"params": params}, tokens, text_mask, method=model.encode_text)

      def denoise(x, t, e, m, c):
        return model.apply({"params": params}, x, t, e, m, c, method=model.denoise)

      windows = self.windows(x_init.shape[1])
      if windows:
        denoise = multidiffusion.multidiffusion(denoise, x_init.shape[1], *windows)
      return samplers.sample(denoise, rng, x_init.shape, emb, text_mask, diff_cfg, sample_cfg,
                             cond=cond if with_cond else None,
                             x_init=x_init if t_start < 1.0 else None, t_start=t_start,
                             known=(known_x, known_mask) if with_known else None)

    return fn

  def _jitted(self, sample_cfg, t_start: float, with_known: bool):
    key = (tuple(sorted(sample_cfg.items())), t_start, with_known)
    if key not in self._compiled:
      self._compiled[key] = jax.jit(self.sample_fn(sample_cfg, t_start, with_known))
    return self._compiled[key]

  def __call__(self, prompts: Sequence[str], seed: int = 0, *, cond: np.ndarray | None = None,
               x_init: np.ndarray | None = None, strength: float = 1.0,
               known: tuple[np.ndarray, np.ndarray] | None = None,
               progress: bool = False, **sample_overrides) -> np.ndarray:
    """Generates one uint8 video `(T, H, W, 3)` per prompt.

    Args:
      prompts: the texts; empty ones are rejected, too long ones truncated with a warning.
      seed: the sampling seed; chunk i uses `fold_in(PRNGKey(seed), i)`.
      cond: `(N, T, H, W, C)` conditioning of a conditional model (4 channels; all-zero, i.e.
        plain text-to-video, if omitted) or of an SSR model (3 channels, see `super_resolve`).
      x_init: optional `(N, T, H, W, 3)` float video in [-1, 1] for SDEdit, with `strength` in
        [0, 1] the noise level it starts from (0 returns the input, 1 ignores it).
      known: optional `(x, mask)` whose masked pixels are kept exactly (replacement sampling).
      progress: print a progress line per chunk.
      **sample_overrides: e.g. guidance=5.0, num_steps=64, sampler="ddpm".
    """
    check_prompts(prompts)
    if not 0.0 <= strength <= 1.0:
      raise ValueError(f"strength must be in [0, 1], got {strength}")
    if strength < 1.0 and x_init is None:
      raise ValueError("strength < 1 (video-to-video) needs an input video")
    sample_cfg = self.sample_settings(**sample_overrides)
    if cond is not None and self.cond_channels == 0:
      raise ValueError("this checkpoint has no conditioning input (model.cond_channels=0); "
                       "image-to-video, inpainting and cinemagraphs need a `cond` model")
    if cond is None and self.cond_channels == 3:
      raise ValueError("this is an SSR checkpoint (model.cond_channels=3): give it a "
                       "low-resolution video (Sampler.super_resolve or --ssr_workdir)")
    n, bs = len(prompts), int(self.config.sample.batch_size)
    given = [a for a in (cond, x_init, None if known is None else known[0]) if a is not None]
    frames = np.shape(given[0])[1] if given else self.video_shape[0]
    shape = (n, frames) + self.video_shape[1:]
    if cond is not None and np.shape(cond) != shape[:-1] + (self.cond_channels,):
      raise ValueError(f"cond has shape {np.shape(cond)}, expected "
                       f"{shape[:-1] + (self.cond_channels,)}")
    tokens, mask = self.tokenizer.encode_prompts(list(prompts), self.config.data.max_text_len)
    fn = self._jitted(sample_cfg, float(strength), known is not None)
    zeros = np.zeros(shape, np.float32)
    arrays = dict(
        tokens=tokens, mask=mask,
        cond=cond if cond is not None else np.zeros(shape[:-1] + (max(self.cond_channels, 1),),
                                                    np.float32),
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

  def super_resolve(self, low_res: np.ndarray, prompts: Sequence[str], seed: int = 0,
                    progress: bool = False, **sample_overrides) -> np.ndarray:
    """SSR: uint8 `(N, T, h, w, 3)` videos (e.g. the base model's) -> uint8 `(N, T, H, W, 3)`.

    The video is upsampled by `config.ssr.factor` into the cond; any T >= `config.ssr.window`
    runs as MultiDiffusion over overlapping windows.
    """
    if self.cond_channels != 3:
      raise ValueError(f"super_resolve needs an SSR checkpoint (model.cond_channels=3), this one "
                       f"has cond_channels={self.cond_channels}")
    low_res = np.asarray(low_res)
    factor, res = int(self.config.ssr.factor), self.video_shape[1]
    if low_res.ndim != 5 or low_res.shape[2:] != (res // factor, res // factor, 3):
      raise ValueError(f"SSR input has shape {low_res.shape}, expected (N, T, {res // factor}, "
                       f"{res // factor}, 3): this SSR model lifts {res // factor}px to {res}px")
    if low_res.shape[0] != len(prompts):
      raise ValueError(f"{low_res.shape[0]} low-resolution videos for {len(prompts)} prompts")
    video = video_io.to_float(low_res) if low_res.dtype == np.uint8 else low_res
    cond = conditioning.upsample_video(jnp.asarray(video, jnp.float32), factor,
                                       self.config.ssr.upsample)
    return self(prompts, seed, cond=np.asarray(cond), progress=progress, **sample_overrides)


def check_prompts(prompts: Sequence[str]) -> None:
  if not prompts:
    raise ValueError("no prompts given")
  for prompt in prompts:
    if not prompt.strip():
      raise ValueError(f"Empty prompt {prompt!r}: give some text, e.g. --prompt='a red square "
                       "moves up'")


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
  """Pads the batch dimension by repeating the last row (the padded outputs are dropped)."""
  if a.shape[0] == size:
    return a
  return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)])


def load_text_input(workdir: str, config: ml_collections.ConfigDict):
  """What turns prompts into the model's text input: the workdir's tokenizer, or the frozen
  encoder whose features the dataset stores (`text.kind='precomputed'`)."""
  if config.text.kind == "precomputed":
    return text_features.encoder_for(config)
  return tokenizer_lib.Tokenizer.load(os.path.join(workdir, TOKENIZER_FILE))


def load_params(workdir: str, config: ml_collections.ConfigDict, step: int | None = None,
                use_ema: bool = True) -> tuple[Any, Any, tokenizer_lib.Tokenizer, int]:
  """(model, params on one device, tokenizer, step) of a workdir's checkpoint for `config`."""
  tokenizer = load_text_input(workdir, config)
  model = modeling.build(config, tokenizer.vocab_size)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                          flax.linen.meta.unbox(modeling.abstract_params(model, config)))
  params, step = ckpt_lib.restore_subtree(workdir, ("ema_params" if use_ema else "params",),
                                          abstract, step=step)
  return model, params, tokenizer, step


def load_sampler(workdir: str, step: int | None = None, use_ema: bool = True,
                 config: ml_collections.ConfigDict | None = None) -> Sampler:
  """Restores a workdir's (EMA) params into a `Sampler`; `config` defaults to the workdir's."""
  config = config if config is not None else ckpt_lib.load_config(workdir)
  model, params, tokenizer, step = load_params(workdir, config, step, use_ema)
  return Sampler(config, model, params, tokenizer, step)


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
  logging.info("Wrote %d videos to %s", len(videos), out_dir)
  return out_dir


def export_sampler(sampler: Sampler, path: str, batch_size: int,
                   platforms: Sequence[str] = ("cpu",), **sample_overrides) -> str:
  """Serializes the jitted sampling function with `jax.export` into the directory `path`.

  The params are an argument, not baked in: they go to `params.npz` (flat leaves, in order), so
  the artifact stays small (StableHLO constants hit protobuf's 2 GB limit at paper scale) and a
  newer checkpoint of the same config reuses it. Serve it with `load_exported` (needs jax, numpy
  and sentencepiece only). Conditional models take `cond`; for 4-channel cond its known pixels
  are kept exactly. SDEdit and windows longer than `config.data.num_frames` are not exported.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  sample_cfg = sampler.sample_settings(**sample_overrides)
  leaves, treedef = jax.tree.flatten(sampler.params)
  fn = sampler.sample_fn(sample_cfg, with_known=sampler.cond_channels == 4)
  shape = (batch_size,) + sampler.video_shape
  cond_c = max(sampler.cond_channels, 1)

  def serve(param_leaves, tokens, text_mask, rng, cond):
    params = jax.tree.unflatten(treedef, param_leaves)
    known_x, known_mask = conditioning.split_cond(cond) if cond_c == 4 else (cond, cond)
    video = fn(params, tokens, text_mask, rng, cond, jnp.zeros(shape, jnp.float32), known_x,
               known_mask)
    return video_io.to_uint8(video)

  max_len = int(sampler.config.data.max_text_len)
  text_dim = (int(sampler.config.text.precomputed_dim)
              if sampler.config.text.kind == "precomputed" else 0)
  tokens = (jax.ShapeDtypeStruct((batch_size, max_len, text_dim), jnp.float32) if text_dim
            else jax.ShapeDtypeStruct((batch_size, max_len), jnp.int32))
  args = ([jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves], tokens,
          jax.ShapeDtypeStruct((batch_size, max_len), jnp.bool_),
          jax.ShapeDtypeStruct((2,), jnp.uint32),
          jax.ShapeDtypeStruct(shape[:-1] + (cond_c,), jnp.float32))
  exported = jax.export.export(jax.jit(serve), platforms=tuple(platforms))(*args)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, EXPORT_FILE), "wb") as f:
    f.write(exported.serialize())
  np.savez(os.path.join(path, PARAMS_FILE),
           **{f"{i:05d}": np.asarray(jax.device_get(x)) for i, x in enumerate(leaves)})
  if not text_dim:
    sampler.tokenizer.save(os.path.join(path, TOKENIZER_FILE))
  meta = dict(batch_size=batch_size, max_text_len=max_len, text_embedding_dim=text_dim,
              video_shape=sampler.video_shape,
              cond_channels=sampler.cond_channels, fps=int(sampler.config.data.fps),
              platforms=list(platforms), sample=sample_cfg.to_dict())
  with open(os.path.join(path, META_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2)
  return path


def load_exported(path: str):
  """An exported sampler as `serve(prompts, seed=0, cond=None) -> uint8 (N, T, H, W, 3)`.

  Same output as `Sampler.__call__` with the same prompts, seed and settings (one chunk of at
  most `batch_size` prompts).
  """
  for name in (EXPORT_FILE, PARAMS_FILE, META_FILE):
    if not os.path.exists(os.path.join(path, name)):
      raise FileNotFoundError(f"{os.path.join(path, name)} not found: not an exported sampler")
  with open(os.path.join(path, EXPORT_FILE), "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with np.load(os.path.join(path, PARAMS_FILE)) as z:
    leaves = [z[k] for k in sorted(z.files)]
  with open(os.path.join(path, META_FILE), encoding="utf-8") as f:
    meta = json.load(f)
  text_dim = meta.get("text_embedding_dim", 0)
  tokenizer = (text_features.HashedWordEncoder(text_dim) if text_dim
               else tokenizer_lib.Tokenizer.load(os.path.join(path, TOKENIZER_FILE)))
  bs = meta["batch_size"]
  cond_shape = (bs,) + tuple(meta["video_shape"][:-1]) + (max(meta["cond_channels"], 1),)

  def serve(prompts: Sequence[str], seed: int = 0, cond: np.ndarray | None = None):
    check_prompts(prompts)
    if len(prompts) > bs:
      raise ValueError(f"{len(prompts)} prompts for an export with batch_size={bs}")
    tokens, mask = tokenizer.encode_prompts(list(prompts), meta["max_text_len"])
    cond = np.zeros((len(prompts),) + cond_shape[1:], np.float32) if cond is None else cond
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    videos = exported.call(leaves, _pad_to(tokens, bs), _pad_to(mask, bs), rng,
                           _pad_to(np.asarray(cond, np.float32), bs))
    return np.asarray(videos)[:len(prompts)]

  serve.meta = meta
  return serve
