"""Sampling: a checkpoint's model in a jit-compiled `lax.scan` sampler, and video files out.

  sampler = load_sampler("workdirs/tiny")            # EMA params of the latest step
  videos = sampler(["a red circle moves up"], seed=0)  # uint8 (N, T, H, W, 3)

The kind of checkpoint (`modeling.model_kind`, from `config.model.cond_channels`): "t2v"
text-to-video, "masked" the conditional model of the applications (masked video + mask), "ssr"
spatial super-resolution (cond = the low-resolution video upsampled), run with MultiDiffusion over
`config.ssr.window`-frame windows when the video is longer than one window.
"""
import copy
import json
import os
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import errors
from lumiere_jax import modeling
from lumiere_jax import progress as progress_lib
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import video_io
from lumiere_jax import workdir as workdir_lib
from lumiere_jax.data import pipeline
from lumiere_jax.data import text_features
from lumiere_jax.data import tokenizer as tokenizer_lib
from lumiere_jax.diffusion import conditioning
from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.diffusion import samplers
from lumiere_jax.models import unet as unet_lib

SAMPLE_KEYS = ("sampler", "num_steps", "guidance", "eta", "clip_x0", "spacing")
# Files of an exported sampler (see `export_sampler`).
EXPORT_FILE, PARAMS_FILE, META_FILE = "sampler.jax_export", "params.npz", "meta.json"


class Sampler:
  """Text (+ optional conditioning) -> videos: one jit over the config's mesh.

  Params are placed by the config's logical-axis rules (FSDP-sharded or replicated; gathered at
  the start of the function with `mesh.gather_params`) and the prompts are sharded over the
  data-parallel mesh axes. Prompts run in chunks of `config.sample.batch_size` rounded up to a
  multiple of the data-parallel size (the last chunk padded), so any number of prompts reuses
  one compiled function. With several processes each runs the same program on its contiguous
  block of the prompts (`process_share`) and the videos are gathered. Prompt i draws its noise
  from `fold_in(PRNGKey(seed), i)`, so its video does not depend on the chunking, the device
  count or the process count (up to float rounding, see tests/test_sample.py).
  """

  def __init__(self, config: ml_collections.ConfigDict, model, params: Any,
               tokenizer: tokenizer_lib.Tokenizer | None, step: int | None = None,
               mesh: jax.sharding.Mesh | None = None):
    self.config = config
    self.model = model
    self.tokenizer = tokenizer
    self.step = step
    self.mesh = mesh if mesh is not None else sharding_lib.create_mesh(config.mesh)
    self.param_shardings = jax.tree.map(lambda a: a.sharding,
                                        abstract_params(model, config, self.mesh))
    # Abstract params (ShapeDtypeStructs) only lower the function (benchmarks/pod_plan.py).
    abstract = all(isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree.leaves(params))
    self.params = params if abstract else jax.device_put(params, self.param_shardings)
    self._compiled = {}
    if self.windows_per_call < 0:
      raise errors.UserError(f"sample.windows_per_call={self.windows_per_call} must be >= 0 "
                             "(0: every MultiDiffusion window in one call)")

  def replace(self, params: Any, step: int | None) -> "Sampler":
    """The same model with other params (another checkpoint, interpolated weights).

    The compiled sampling functions take the params as an argument, so the new sampler shares
    them: no recompilation.
    """
    new = copy.copy(self)
    new.params, new.step = jax.device_put(params, self.param_shardings), step
    return new

  @property
  def video_shape(self) -> tuple[int, int, int, int]:
    d = self.config.data
    return (d.num_frames, d.resolution, d.resolution, 3)

  @property
  def cond_channels(self) -> int:
    return int(self.config.model.cond_channels)

  @property
  def kind(self) -> str:
    """The model kind: "t2v", "ssr" or "masked" (`modeling.KINDS`)."""
    return modeling.model_kind(self.config)

  @property
  def windows_per_call(self) -> int:
    """MultiDiffusion windows per model call (0: all in one); runs saved before the key: 0."""
    return int(self.config.sample.get("windows_per_call", 0))

  @property
  def batch_axes(self) -> tuple:
    """The mesh axes that shard the prompts (the config's `batch` rule)."""
    return tuple(a for a in sharding_lib.batch_axes(self.config.mesh)
                 if a in self.mesh.axis_names)

  @property
  def data_parallel(self) -> int:
    return int(np.prod([self.mesh.shape[a] for a in self.batch_axes]))

  def windows(self, num_frames: int) -> tuple[int, int] | None:
    """(window, overlap) of MultiDiffusion for a video of `num_frames`, or None (one pass).

    An SSR model runs on `config.ssr.window`-frame windows whenever the video has that many
    frames (a window equal to the video still goes through MultiDiffusion, with the same
    result); a base model on windows of its training length when the video is longer
    (`check_num_frames`).
    """
    if self.kind != "ssr":
      return check_num_frames(self.config, num_frames)
    ssr = self.config.get("ssr")
    if not ssr or not 0 < ssr.window <= num_frames:
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
    """The pure (un-jitted) sampling function; the video shape comes from `x_init`'s shape.

    `rngs` holds one key per video (`samplers.sample`).
    """
    model, diff_cfg, with_cond = self.model, self.config.diffusion, self.kind != "t2v"

    def fn(params, tokens, text_mask, rngs, cond, x_init, known_x, known_mask):
      emb = model.apply({"params": params}, tokens, text_mask, method=model.encode_text)

      def denoise(x, t, e, m, c):
        return model.apply({"params": params}, x, t, e, m, c, method=model.denoise)

      windows = self.windows(x_init.shape[1])
      if windows:
        denoise = multidiffusion.multidiffusion(denoise, x_init.shape[1], *windows,
                                                windows_per_call=self.windows_per_call)
      return samplers.sample(denoise, rngs, x_init.shape, emb, text_mask, diff_cfg, sample_cfg,
                             cond=cond if with_cond else None,
                             x_init=x_init if t_start < 1.0 else None, t_start=t_start,
                             known=(known_x, known_mask) if with_known else None)

    return fn

  def jitted(self, sample_cfg, t_start: float = 1.0, with_known: bool = False):
    """`sample_fn` jitted over the mesh: what `__call__` runs and the pod planner compiles.

    Traced under the config's logical-axis rules, params in their shardings (gathered first
    with `mesh.gather_params`), every other argument and the videos sharded on the batch.
    """
    key = (tuple(sorted(sample_cfg.items())), t_start, with_known)
    if key not in self._compiled:
      fn = self.sample_fn(sample_cfg, t_start, with_known)
      gather = self.config.mesh.get("gather_params", False)

      def sharded(params, *args):
        return fn(sharding_lib.replicate(params, self.mesh) if gather else params, *args)

      batch = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(self.batch_axes))
      self._compiled[key] = jax.jit(
          sharding_lib.under_rules(sharded, self.mesh, self.config.mesh),
          in_shardings=(self.param_shardings,) + (batch,) * 7, out_shardings=batch)
    return self._compiled[key]

  def lower(self, batch_size: int, num_frames: int | None = None, **sample_overrides):
    """The jitted function lowered for abstract inputs of `batch_size` text-to-video prompts
    (or the SSR / conditional model's cond), e.g. to compile it for a TPU topology."""
    sample_cfg = self.sample_settings(**sample_overrides)
    batch = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(self.batch_axes))
    shape = (batch_size, num_frames or self.video_shape[0]) + self.video_shape[1:]
    sds = lambda s, dtype: jax.ShapeDtypeStruct(s, dtype, sharding=batch)
    max_len = int(self.config.data.max_text_len)
    text_dim = modeling.text_embedding_dim(self.config)
    tokens = (sds((batch_size, max_len, text_dim), jnp.float32) if text_dim
              else sds((batch_size, max_len), jnp.int32))
    params = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
                          self.params, self.param_shardings)
    return self.jitted(sample_cfg).lower(
        params, tokens, sds((batch_size, max_len), jnp.bool_), sds((batch_size, 2), jnp.uint32),
        sds(shape[:-1] + (max(self.cond_channels, 1),), jnp.float32),
        sds(shape, jnp.float32), sds(shape, jnp.float32), sds(shape[:-1] + (1,), jnp.float32))

  def __call__(self, prompts: Sequence[str], seed: int = 0, *, cond: np.ndarray | None = None,
               x_init: np.ndarray | None = None, strength: float = 1.0,
               known: tuple[np.ndarray, np.ndarray] | None = None,
               num_frames: int | None = None, progress: bool = False,
               **sample_overrides) -> np.ndarray:
    """Generates one uint8 video `(T, H, W, 3)` per prompt (all of them, on every process).

    Args:
      prompts: the texts; empty ones are rejected, too long ones truncated with a warning.
      seed: the sampling seed; prompt i uses `fold_in(PRNGKey(seed), i)`.
      cond: `(N, T, H, W, C)` conditioning of a conditional model (4 channels; all-zero, i.e.
        plain text-to-video, if omitted) or of an SSR model (3 channels, see `super_resolve`).
      x_init: optional `(N, T, H, W, 3)` float video in [-1, 1] for SDEdit, with `strength` in
        [0, 1] the noise level it starts from (0 returns the input, 1 ignores it).
      known: optional `(x, mask)` whose masked pixels are kept exactly (replacement sampling).
      num_frames: video length of text-to-video (default `config.data.num_frames`); longer
        videos run as MultiDiffusion over windows of the training length (`check_num_frames`).
      progress: print a progress line per chunk.
      **sample_overrides: e.g. guidance=5.0, num_steps=64, sampler="ddpm".
    """
    check_prompts(prompts)
    if not 0.0 <= strength <= 1.0:
      raise errors.UserError(f"strength must be in [0, 1], got {strength}")
    if strength < 1.0 and x_init is None:
      raise errors.UserError("strength < 1 (video-to-video) needs an input video")
    sample_cfg = self.sample_settings(**sample_overrides)
    if cond is not None and self.kind == "t2v":
      raise errors.UserError("this checkpoint has no conditioning input (model.cond_channels=0); "
                             "image-to-video, inpainting and cinemagraphs need a `cond` model")
    if cond is None and self.kind == "ssr":
      raise errors.UserError("this is an SSR checkpoint (model.cond_channels=3): give it a "
                             "low-resolution video (Sampler.super_resolve or --ssr_workdir)")
    given = [a for a in (cond, x_init, None if known is None else known[0]) if a is not None]
    if given and num_frames is not None:
      raise errors.UserError("num_frames is for text-to-video; an input video sets the length")
    frames = np.shape(given[0])[1] if given else num_frames or self.video_shape[0]
    self.windows(frames)  # A one-line error for a length the model cannot sample.
    n = len(prompts)
    shape = (n, frames) + self.video_shape[1:]
    if cond is not None and np.shape(cond) != shape[:-1] + (self.cond_channels,):
      raise ValueError(f"cond has shape {np.shape(cond)}, expected "
                       f"{shape[:-1] + (self.cond_channels,)}")
    tokens, mask = self.tokenizer.encode_prompts(list(prompts), self.config.data.max_text_len)
    fn = self.jitted(sample_cfg, float(strength), known is not None)
    zeros = np.zeros((1,) + shape[1:], np.float32)  # Broadcast rows for absent inputs.
    arrays = dict(
        tokens=tokens, mask=mask,
        rngs=prompt_keys(seed, n),
        cond=cond if cond is not None else np.zeros(
            (1,) + shape[1:-1] + (max(self.cond_channels, 1),), np.float32),
        x_init=x_init if x_init is not None else zeros,
        known_x=known[0] if known is not None else zeros,
        known_mask=known[1] if known is not None else zeros[..., :1])
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    # This process's block of prompts, padded by repeating its last row to whole chunks: every
    # process runs the same number of chunks of `local` rows, `local * process_count` per jit.
    procs = jax.process_count()
    chunk = -(-int(self.config.sample.batch_size) // self.data_parallel) * self.data_parallel
    local = chunk // procs
    shares = [process_share(n, p, procs) for p in range(procs)]
    num_chunks = -(-max(len(s) for s in shares) // local)
    mine = list(shares[jax.process_index()]) or [n - 1]
    rows = mine + [mine[-1]] * (num_chunks * local - len(mine))
    spec = jax.sharding.PartitionSpec(self.batch_axes)
    prog = progress_lib.Progress("sample", n, unit="videos", interval=0.0) if progress else None
    out = []
    for c in range(num_chunks):
      idx = rows[c * local:(c + 1) * local]
      part = {k: v[np.minimum(idx, len(v) - 1)] for k, v in arrays.items()}
      part = pipeline.make_global_batch(part, self.mesh, self.batch_axes)
      videos = fn(self.params, part["tokens"], part["mask"], part["rngs"], part["cond"],
                  part["x_init"], part["known_x"], part["known_mask"])
      videos = multihost_utils.global_array_to_host_local_array(videos, self.mesh, spec)
      out.append(video_io.to_uint8(np.asarray(videos)))
      if prog:
        prog.update(min(n, (c + 1) * chunk))
    out = np.concatenate(out)
    if procs == 1:
      return out[:n]
    every = np.asarray(multihost_utils.process_allgather(out, tiled=False))
    return np.concatenate([every[p, :len(s)] for p, s in enumerate(shares)])

  def super_resolve(self, low_res: np.ndarray, prompts: Sequence[str], seed: int = 0,
                    progress: bool = False, **sample_overrides) -> np.ndarray:
    """SSR: uint8 `(N, T, h, w, 3)` videos (e.g. the base model's) -> uint8 `(N, T, H, W, 3)`.

    The video is upsampled by `config.ssr.factor` into the cond; any T >= `config.ssr.window`
    runs as MultiDiffusion over overlapping windows.
    """
    if self.kind != "ssr":
      raise errors.UserError(f"super_resolve needs an SSR checkpoint (model.cond_channels=3), this "
                             f"one has cond_channels={self.cond_channels}")
    low_res = np.asarray(low_res)
    factor, res = int(self.config.ssr.factor), self.video_shape[1]
    if low_res.ndim != 5 or low_res.shape[2:] != (res // factor, res // factor, 3):
      raise errors.UserError(f"SSR input has shape {low_res.shape}, expected (N, T, "
                             f"{res // factor}, {res // factor}, 3): this SSR model lifts "
                             f"{res // factor}px to {res}px")
    if low_res.shape[0] != len(prompts):
      raise ValueError(f"{low_res.shape[0]} low-resolution videos for {len(prompts)} prompts")
    video = video_io.to_float(low_res) if low_res.dtype == np.uint8 else low_res
    cond = conditioning.upsample_video(jnp.asarray(video, jnp.float32), factor,
                                       self.config.ssr.upsample)
    return self(prompts, seed, cond=np.asarray(cond), progress=progress, **sample_overrides)


def check_num_frames(config: ml_collections.ConfigDict, num_frames: int) -> tuple[int, int] | None:
  """(window, overlap) of the temporal MultiDiffusion that samples `num_frames` frames with a
  base model, or None for one pass; a one-line ValueError for a length it cannot sample.

  Up to the training length `data.num_frames` the model runs once. A longer video is covered
  by windows of the training length that overlap by `sample.overlap` frames (the paper's SSR
  recipe applied at the base stage), so it must be `data.num_frames + k * stride`. Every length
  and stride must be a multiple of the STUNet's temporal downsampling factor, so that
  overlapping windows keep the same frames at their coarse levels.
  """
  window, factor = int(config.data.num_frames), unet_lib.temporal_factor(config.model)
  if num_frames < 1:
    raise errors.UserError(f"num_frames must be >= 1, got {num_frames}")
  if num_frames % factor:
    raise errors.UserError(f"num_frames={num_frames} does not fit the temporal downsampling: the "
                           f"STUNet divides the frames by {factor} (model.temporal_downsample="
                           f"{tuple(config.model.temporal_downsample)}), use a multiple of "
                           f"{factor}")
  if num_frames <= window:
    return None
  # Runs saved before `sample.overlap` existed get tiny.py's choice: half a window.
  overlap = int(config.sample.get("overlap", window // 2))
  stride = window - overlap
  if not 0 <= overlap < window or stride % factor:
    raise errors.UserError(f"sample.overlap={overlap} must be in [0, {window}) with "
                           f"data.num_frames - overlap a multiple of {factor} (temporal "
                           "downsampling)")
  if (num_frames - window) % stride:
    below = num_frames - (num_frames - window) % stride
    raise errors.UserError(f"num_frames={num_frames} cannot be tiled by {window}-frame windows "
                           f"overlapping by {overlap} (stride {stride}): use {below} or "
                           f"{below + stride} (or set --config.sample.overlap)")
  return window, overlap


def prompt_keys(seed: int, n: int) -> np.ndarray:
  """(n, 2) keys: prompt i samples from `fold_in(PRNGKey(seed), i)` (Sampler and export alike)."""
  key = jax.random.PRNGKey(seed)
  return np.asarray(jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n)))


def process_share(n: int, process: int | None = None, count: int | None = None) -> range:
  """The prompts (indices) of a process: the `process`-th contiguous block of ceil(n / count)."""
  process = jax.process_index() if process is None else process
  count = jax.process_count() if count is None else count
  per = -(-n // count)
  return range(min(n, process * per), min(n, (process + 1) * per))


def abstract_params(model, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Any:
  """The model's params as ShapeDtypeStructs placed by the config's logical-axis rules."""
  boxed = modeling.abstract_params(model, config)
  shardings = sharding_lib.logical_to_shardings(boxed, mesh, config.mesh)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      flax.linen.meta.unbox(boxed), shardings)


def check_prompts(prompts: Sequence[str]) -> None:
  if not prompts:
    raise errors.UserError("no prompts given")
  for prompt in prompts:
    if not prompt.strip():
      raise errors.UserError(f"Empty prompt {prompt!r}: give some text, e.g. --prompt='a red "
                             "square moves up'")


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
  return tokenizer_lib.Tokenizer.load(workdir_lib.tokenizer_path(workdir))


def load_params(workdir: str, config: ml_collections.ConfigDict, step: int | None = None,
                use_ema: bool = True, mesh: jax.sharding.Mesh | None = None
                ) -> tuple[Any, Any, tokenizer_lib.Tokenizer, int]:
  """(model, params, tokenizer, step) of a workdir's checkpoint for `config`, restored straight
  into their shardings on `mesh` (default: the config's mesh over all devices)."""
  tokenizer = load_text_input(workdir, config)
  model = modeling.build(config, tokenizer.vocab_size)
  mesh = mesh if mesh is not None else sharding_lib.create_mesh(config.mesh)
  params, step = ckpt_lib.restore_subtree(workdir, ("ema_params" if use_ema else "params",),
                                          abstract_params(model, config, mesh), step=step)
  return model, params, tokenizer, step


def load_sampler(workdir: str, step: int | None = None, use_ema: bool = True,
                 config: ml_collections.ConfigDict | None = None,
                 mesh: jax.sharding.Mesh | None = None) -> Sampler:
  """Restores a workdir's (EMA) params into a `Sampler`; `config` defaults to the workdir's."""
  config = config if config is not None else ckpt_lib.load_config(workdir)
  mesh = mesh if mesh is not None else sharding_lib.create_mesh(config.mesh)
  model, params, tokenizer, step = load_params(workdir, config, step, use_ema, mesh)
  return Sampler(config, model, params, tokenizer, step, mesh)


def write_videos(videos: np.ndarray, prompts: Sequence[str], out_dir: str, fps: int) -> str:
  """Writes `<slug>.mp4` and `<slug>.gif` per prompt, `grid.png` and `prompts.txt`.

  With several processes (each holding all the videos, see `Sampler.__call__`) each writes the
  files of its own prompts (`process_share`) and process 0 the grid and the prompt list, so
  every file is written once.
  """
  os.makedirs(out_dir, exist_ok=True)
  slugs = []
  for prompt in prompts:
    slug = video_io.slugify(prompt)
    slugs.append(slug if slug not in slugs else f"{slug}_{len(slugs)}")
  mine = process_share(len(prompts))
  for i in mine:
    video_io.write_mp4(os.path.join(out_dir, slugs[i] + ".mp4"), videos[i], fps)
    video_io.write_gif(os.path.join(out_dir, slugs[i] + ".gif"), videos[i], fps)
  if jax.process_index() == 0:
    video_io.write_png(os.path.join(out_dir, "grid.png"), video_io.frame_grid(videos),
                       min_side=256)
    with open(os.path.join(out_dir, "prompts.txt"), "w", encoding="utf-8") as f:
      f.write("".join(f"{s}\t{p}\n" for s, p in zip(slugs, prompts)))
  logging.info("Wrote %d of %d videos to %s", len(mine), len(videos), out_dir)
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
    raise errors.UserError(f"batch_size must be >= 1, got {batch_size}")
  sample_cfg = sampler.sample_settings(**sample_overrides)
  leaves, treedef = jax.tree.flatten(sampler.params)
  masked = sampler.kind == "masked"
  fn = sampler.sample_fn(sample_cfg, with_known=masked)
  shape = (batch_size,) + sampler.video_shape
  cond_c = max(sampler.cond_channels, 1)

  def serve(param_leaves, tokens, text_mask, rngs, cond):
    params = jax.tree.unflatten(treedef, param_leaves)
    known_x, known_mask = conditioning.split_cond(cond) if masked else (cond, cond)
    video = fn(params, tokens, text_mask, rngs, cond, jnp.zeros(shape, jnp.float32), known_x,
               known_mask)
    return video_io.to_uint8(video)

  max_len = int(sampler.config.data.max_text_len)
  text_dim = modeling.text_embedding_dim(sampler.config)
  tokens = (jax.ShapeDtypeStruct((batch_size, max_len, text_dim), jnp.float32) if text_dim
            else jax.ShapeDtypeStruct((batch_size, max_len), jnp.int32))
  args = ([jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves], tokens,
          jax.ShapeDtypeStruct((batch_size, max_len), jnp.bool_),
          jax.ShapeDtypeStruct((batch_size, 2), jnp.uint32),
          jax.ShapeDtypeStruct(shape[:-1] + (cond_c,), jnp.float32))
  exported = jax.export.export(jax.jit(serve), platforms=tuple(platforms))(*args)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, EXPORT_FILE), "wb") as f:
    f.write(exported.serialize())
  np.savez(os.path.join(path, PARAMS_FILE),
           **{f"{i:05d}": np.asarray(jax.device_get(x)) for i, x in enumerate(leaves)})
  if not text_dim:
    sampler.tokenizer.save(workdir_lib.tokenizer_path(path))
  meta = dict(batch_size=batch_size, max_text_len=max_len, text_embedding_dim=text_dim,
              video_shape=sampler.video_shape,
              cond_channels=sampler.cond_channels, fps=int(sampler.config.data.fps),
              platforms=list(platforms), sample=sample_cfg.to_dict())
  with open(os.path.join(path, META_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2)
  return path


def load_exported(path: str):
  """An exported sampler as `serve(prompts, seed=0, cond=None) -> uint8 (N, T, H, W, 3)`.

  Same output as `Sampler.__call__` with the same prompts, seed and settings (at most
  `batch_size` prompts), up to float rounding when the sampler runs on other devices.
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
               else tokenizer_lib.Tokenizer.load(workdir_lib.tokenizer_path(path)))
  bs = meta["batch_size"]
  cond_shape = (bs,) + tuple(meta["video_shape"][:-1]) + (max(meta["cond_channels"], 1),)

  def serve(prompts: Sequence[str], seed: int = 0, cond: np.ndarray | None = None):
    check_prompts(prompts)
    if len(prompts) > bs:
      raise errors.UserError(f"{len(prompts)} prompts for an export with batch_size={bs}")
    tokens, mask = tokenizer.encode_prompts(list(prompts), meta["max_text_len"])
    cond = np.zeros((len(prompts),) + cond_shape[1:], np.float32) if cond is None else cond
    videos = exported.call(leaves, _pad_to(tokens, bs), _pad_to(mask, bs),
                           _pad_to(prompt_keys(seed, len(prompts)), bs),
                           _pad_to(np.asarray(cond, np.float32), bs))
    return np.asarray(videos)[:len(prompts)]

  serve.meta = meta
  return serve
