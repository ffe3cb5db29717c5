"""One U-Net class for both stages: the T2I U-Net (`temporal=False`) and Lumiere's STUNet.

The STUNet param tree is the T2I tree plus modules whose names start with `temporal_`, so
inflation, freezing and weight interpolation select parameters by path (see `inflate.py`).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lumiere_jax import errors
from lumiere_jax.models import layers

TEMPORAL_PREFIX = "temporal_"


def temporal_factor(model_cfg) -> int:
  """Total temporal downsampling of the STUNet (1 for the T2I U-Net)."""
  if not model_cfg.temporal:
    return 1
  return 2 ** sum(bool(d) for d in model_cfg.temporal_downsample)


def check_frames(model_cfg, num_frames: int) -> None:
  """Raises a one-line ValueError if the clip length does not fit the temporal downsampling."""
  factor = temporal_factor(model_cfg)
  if num_frames % factor:
    raise errors.UserError(f"num_frames={num_frames} is not divisible by the STUNet's total "
                           f"temporal downsampling factor {factor} (model.temporal_downsample="
                           f"{tuple(model_cfg.temporal_downsample)})")


class UNet(layers.LayerBase):
  """Text-conditioned U-Net on videos `(B, T, H, W, C)`; frames are independent unless temporal."""
  channels: Sequence[int] = (32, 64)
  num_res_blocks: int = 1
  attn_levels: Sequence[int] = (1,)
  num_heads: int = 4
  head_dim: int | None = None
  temporal: bool = True
  temporal_downsample: Sequence[bool] = (True,)
  temporal_attn_levels: Sequence[int] | None = None
  temporal_text_attn: bool = True
  space_to_depth: int = 2
  cond_channels: int = 0
  out_channels: int = 3
  dropout: float = 0.0
  norm_groups: int = 8
  remat: bool = False
  pixel_skip: bool = False
  pixel_gate_from_features: bool = False
  position_code: bool = False
  frame_film: bool = False
  text_layout: bool = False

  def _validate(self):
    n = len(self.channels)
    for c in self.channels:
      if c % self.norm_groups:
        raise errors.UserError(f"channel count {c} is not divisible by "
                               f"norm_groups={self.norm_groups}")
      if c % self._heads(c):
        raise errors.UserError(f"channel count {c} is not divisible by {self._heads(c)} heads")
    if self.space_to_depth < 1:
      raise errors.UserError(f"space_to_depth must be >= 1, got {self.space_to_depth}")
    if any(not 0 <= i < n for i in self.attn_levels):
      raise errors.UserError(f"attn_levels={tuple(self.attn_levels)} out of range for {n} levels")
    if self.temporal:
      if len(self.temporal_downsample) != n - 1:
        raise errors.UserError(f"temporal_downsample needs {n - 1} entries (one per level "
                               f"transition), got {tuple(self.temporal_downsample)}")
      if any(not 0 <= i < n for i in self._temporal_attn_levels()):
        raise errors.UserError(f"temporal_attn_levels={tuple(self.temporal_attn_levels)} out of "
                               f"range for {n} levels")

  def _heads(self, c: int) -> int:
    if self.head_dim:
      return max(c // self.head_dim, 1)
    return self.num_heads

  def _temporal_attn_levels(self) -> Sequence[int]:
    if self.temporal_attn_levels is None:
      return (len(self.channels) - 1,)
    return tuple(self.temporal_attn_levels)

  def _kw(self):
    return dict(dtype=self.dtype, param_dtype=self.param_dtype)

  def _attention(self, h, level, ctx, ctx_mask, name):
    c = h.shape[-1]
    if level in self.attn_levels:
      h = layers.AttentionBlock(num_heads=self._heads(c), norm_groups=self.norm_groups,
                                position_code=self.position_code, name=f"{name}_attn",
                                **self._kw())(h, ctx, ctx_mask)
    if self.temporal and level in self._temporal_attn_levels():
      h = layers.TemporalAttentionBlock(
          num_heads=self._heads(c), norm_groups=self.norm_groups,
          text_attn=self.temporal_text_attn, position_code=self.position_code,
          name=f"{TEMPORAL_PREFIX}attn_{name}",
          **self._kw())(h, ctx, ctx_mask)
    return h

  def _cond_embedding(self, t, text_emb, text_mask):
    """FiLM input: sinusoidal(1000 t) -> MLP, plus a projection of the mask-mean-pooled text."""
    dim = 4 * self.channels[0]
    emb = layers.sinusoidal_embedding(t * 1000.0, self.channels[0]).astype(self.dtype)
    emb = self.dense(dim, ("embed", "mlp"), name="time_mlp_1")(emb)
    emb = self.dense(dim, ("mlp", "embed"), name="time_mlp_2")(nn.silu(emb))
    m = text_mask.astype(text_emb.dtype)[..., None]
    pooled = (text_emb * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    return emb + self.dense(dim, ("embed", "mlp"), name="text_pool_proj")(pooled)

  @nn.compact
  def __call__(self, x, t, text_emb, text_mask, cond=None, train: bool = False):
    """x (B, T, H, W, C), t (B,) in [0, 1], text_emb (B, L, D), text_mask (B, L) bool."""
    self._validate()
    b, frames, height, width, _ = x.shape
    n = len(self.channels)
    s = self.space_to_depth
    spatial_factor = s * 2 ** (n - 1)
    if height % spatial_factor or width % spatial_factor:
      raise errors.UserError(f"frame size {height}x{width} is not divisible by space_to_depth * "
                             f"2**(levels - 1) = {spatial_factor}")
    check_frames(self, frames)
    if (cond is None) != (self.cond_channels == 0):
      raise ValueError(f"cond must be given iff cond_channels > 0 (cond_channels="
                       f"{self.cond_channels}, cond is {'None' if cond is None else 'given'})")
    if cond is not None and cond.shape != x.shape[:4] + (self.cond_channels,):
      raise ValueError(f"cond shape {cond.shape} != {x.shape[:4] + (self.cond_channels,)}")

    x = layers.constrain_video(x.astype(self.dtype))
    text_emb = nn.with_logical_constraint(text_emb.astype(self.dtype), layers.TEXT_AXES)
    emb = self._cond_embedding(t, text_emb, text_mask)
    # A learned null token keeps cross-attention defined for all-masked (unconditional) text.
    null = self.param("text_null", layers.partitioned(nn.initializers.normal(1.0),
                                                      (None, "embed")),
                      (1, text_emb.shape[-1]), self.param_dtype)
    ctx = jnp.concatenate([jnp.broadcast_to(null.astype(self.dtype)[None],
                                            (b, 1, text_emb.shape[-1])), text_emb], axis=1)
    ctx_mask = jnp.concatenate([jnp.ones((b, 1), bool), text_mask.astype(bool)], axis=1)

    h = layers.spatial(self.conv(self.channels[0], name="conv_in"), layers.space_to_depth(x, s))
    if self.position_code:
      h = self._add_position_code(h)
    layout_prediction = None
    if self.temporal and self.text_layout:
      features, layout_prediction = self._text_layout(h.shape[1:4], ctx, ctx_mask, emb)
      h = h + features
    if self.cond_channels:
      # Zero-init so a checkpoint without cond channels fine-tunes from its exact function.
      c_in = layers.space_to_depth(cond.astype(self.dtype), s)
      h = h + layers.spatial(self.conv(self.channels[0], zero=True, use_bias=False,
                                                       name="cond_in"),
                             c_in)

    res_block = layers.ResBlock
    if self.remat:
      res_block = nn.remat(layers.ResBlock, static_argnums=(3,))

    level_emb = self._level_embeddings(emb, frames)

    def block(features, level, name):
      return res_block(features=features, norm_groups=self.norm_groups, dropout=self.dropout,
                       temporal=self.temporal and level < n - 1, name=name, **self._kw())

    skips = [h]
    for i, c in enumerate(self.channels):
      for j in range(self.num_res_blocks):
        h = block(c, i, f"down_{i}_res_{j}")(h, level_emb[i], train)
        h = self._attention(h, i, ctx, ctx_mask, f"down_{i}_{j}")
        skips.append(h)
      if i < n - 1:
        h = layers.Downsample(name=f"down_{i}_resample", **self._kw())(h)
        if self.temporal and self.temporal_downsample[i]:
          h = layers.TemporalDownsample(name=f"{TEMPORAL_PREFIX}down_{i}", **self._kw())(h)
        skips.append(h)

    for i in reversed(range(n)):
      for j in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = block(self.channels[i], i, f"up_{i}_res_{j}")(h, level_emb[i], train)
        h = self._attention(h, i, ctx, ctx_mask, f"up_{i}_{j}")
      if i > 0:
        h = layers.Upsample(name=f"up_{i}_resample", **self._kw())(h)
        if self.temporal and self.temporal_downsample[i - 1]:
          h = layers.TemporalUpsample(name=f"{TEMPORAL_PREFIX}up_{i}", **self._kw())(h)

    features = nn.silu(layers.spatial(self.group_norm(self.norm_groups, name="norm_out"), h))
    h = layers.spatial(self.conv(self.out_channels * s * s, name="conv_out"), features)
    if layout_prediction is not None:
      h = h + layout_prediction
    if self.pixel_skip:
      h = h + self._pixel_skip(x, cond, emb, features)
    return layers.constrain_video(layers.depth_to_space(h, s).astype(jnp.float32))

  def _add_position_code(self, h):
    """Adds learned projections of fixed sin/cos codes of each token's row, column and frame.

    A direction word fixes where the object is in every frame ("moves right": left edge first,
    right edge last), and a conv U-Net sees absolute position only through its zero padding.
    The (row, column) code is spatial (part of the T2I model); the frame code is a temporal
    module initialised to zero, so an inflated STUNet still starts as the per-frame T2I.
    """
    _, frames, height, width, c = h.shape
    h = h + self.dense(c, ("embed", "conv_out"), name="position_code")(
        layers.grid_code(height, width, c).astype(self.dtype))[None, None]
    if self.temporal:
      code = layers.sinusoidal_embedding(jnp.arange(frames), c).astype(self.dtype)
      code = self.dense(c, ("embed", "conv_out"), zero=True,
                        name=f"{TEMPORAL_PREFIX}frame_code")(code)
      h = h + code[None, :, None, None, :]
    return h

  def _text_layout(self, tokens_shape, ctx, ctx_mask, emb):
    """Where the caption puts things: learned per-(frame, row, column) queries attend to the
    caption, giving features (B, T, H, W, C) at the first level and, through a gate of the
    time + text embedding, a direct term of the prediction (B, T, H, W, s*s*out).

    At high noise the prediction is the caption's expected video, and for a motion word that is
    a function of frame, position and word at once ("moves right": left edge in the first frame,
    right edge in the last). Free queries per position learn it like a lookup table, where
    FiLM, position codes and conv padding learnt colours but ignored direction words. The table
    is sized by the clip's token grid, so it suits short clips at low resolution (the CPU
    recipe; MultiDiffusion windows keep the trained length). Temporal module, zero-init outputs:
    an inflated STUNet still starts as the per-frame T2I.
    """
    frames, height, width = tokens_shape
    b = ctx.shape[0]
    c = self.channels[0]
    name = f"{TEMPORAL_PREFIX}layout"
    queries = self.param(f"{name}_queries",
                         layers.partitioned(nn.initializers.normal(1.0),
                                            ("frames", "height", "width", "embed")),
                         (frames, height, width, c), self.param_dtype).astype(self.dtype)
    y = layers.MultiHeadAttention(self.dtype, self.param_dtype, self._heads(c),
                                  name=f"{name}_attn")(
        jnp.broadcast_to(queries.reshape(1, -1, c), (b, frames * height * width, c)), ctx,
        ctx_mask).reshape(b, frames, height, width, c)
    features = self.dense(c, ("embed", "conv_out"), zero=True, name=f"{name}_features")(y)
    out = self.out_channels * self.space_to_depth ** 2
    gate = self.dense(out, ("embed", "pixels"), zero=True, name=f"{name}_gate")(emb)
    prediction = self.dense(out, ("embed", "pixels"), name=f"{name}_out")(y)
    return features, prediction * gate[:, None, None, None, :]

  def _level_embeddings(self, emb, frames):
    """The FiLM embedding of each level: (B, D), or (B, T_level, D) with `frame_film`.

    `frame_film` adds a zero-init temporal MLP of [embedding, frame code]: per-frame scales and
    shifts that depend on the text, so a motion word can act differently on each frame (the
    text-only FiLM is the same for every frame). A level's frames are the input frames its
    temporal downsampling keeps (every 2nd per downsampling: the identity-initialised stride-2
    conv is centred on the even frames).
    """
    n = len(self.channels)
    if not (self.temporal and self.frame_film):
      return [emb] * n
    dim = emb.shape[-1]
    code = layers.sinusoidal_embedding(jnp.arange(frames), self.channels[0]).astype(self.dtype)
    b = emb.shape[0]
    z = jnp.concatenate([jnp.broadcast_to(emb[:, None], (b, frames, dim)),
                         jnp.broadcast_to(code[None], (b, frames, code.shape[-1]))], axis=-1)
    z = self.dense(dim, ("embed", "mlp"), name=f"{TEMPORAL_PREFIX}film_1")(z)
    z = self.dense(dim, ("mlp", "embed"), zero=True, name=f"{TEMPORAL_PREFIX}film_2")(nn.silu(z))
    per_frame = emb[:, None] + z
    out, stride = [], 1
    for i in range(n):
      out.append(per_frame[:, ::stride])
      if i < n - 1 and self.temporal_downsample[i]:
        stride *= 2
    return out

  def _pixel_skip(self, x, cond, emb, features):
    """A full-rank linear path from the input pixels (and cond) to the output tokens.

    With space-to-depth s, a token holds s*s*3 values but the first level only channels[0]
    features: below s*s*3 the network cannot pass per-pixel detail through, and a v/eps target
    needs exactly that, so samples keep a speckle of residual noise. The ideal linear part of the
    prediction depends on the noise level (e.g. v ~ (alpha x_t - x0) / sigma, and x0 ~ the
    upsampled video for SSR), hence a gate per input channel from the timestep/text embedding,
    zero at init (the model starts as without), on a projection initialised to the identity from
    each pixel of x_t, and of the cond's video, to the same output pixel. The cond's path has its
    own params (`cond_pixel_skip*`), new like `cond_in` when a T2V model becomes a cond model.

    With `pixel_gate_from_features` the gate also varies per pixel, from the last features
    (zero-init conv): the ideal linear part differs between places, e.g. for an x0 prediction
    at low noise, copy x_t at an object's edge (gate ~1) but output the flat colour away from it
    (gate 0), which neither a per-example gate nor the narrow main path can do alone.
    """
    features = features if self.pixel_gate_from_features else None
    out = self._gated_identity(x, emb, features, "pixel_skip")
    if cond is not None:
      out = out + self._gated_identity(cond.astype(x.dtype), emb, features, "cond_pixel_skip")
    return out

  def _gated_identity(self, z, emb, features, name):
    s, channels, out = self.space_to_depth, z.shape[-1], self.out_channels
    z = layers.space_to_depth(z, s)
    gate = self.dense(z.shape[-1], ("embed", "pixels"), zero=True, name=f"{name}_gate")(emb)
    gate = gate[:, None, None, None, :]
    if features is not None:
      gate = gate + layers.spatial(self.conv(z.shape[-1], zero=True, name=f"{name}_pixel_gate"),
                                   features)
    z = z * gate

    def identity_init(key, shape, dtype):
      del key
      kernel = np.zeros((s * s, channels, s * s, out), np.float32)
      for c in range(min(channels, out)):  # Video channels; a cond's mask channel maps to 0.
        kernel[np.arange(s * s), c, np.arange(s * s), c] = 1.0
      return jnp.asarray(kernel.reshape(shape), dtype)

    return nn.Dense(out * s * s, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=layers.partitioned(identity_init, ("conv_in", "pixels")),
                    bias_init=layers.partitioned(layers.zeros, ("pixels",)), name=name)(z)


def is_temporal_path(path: Sequence[Any]) -> bool:
  """True if any key of a pytree path names a temporal module."""
  return any(str(getattr(k, "key", getattr(k, "name", k))).startswith(TEMPORAL_PREFIX)
             for k in path)


def unet_from_config(model_cfg) -> UNet:
  """Builds the U-Net from `config.model` (ml_collections or any attribute container)."""
  return UNet(
      channels=tuple(model_cfg.channels), num_res_blocks=model_cfg.num_res_blocks,
      attn_levels=tuple(model_cfg.attn_levels), num_heads=model_cfg.num_heads,
      head_dim=model_cfg.head_dim, temporal=model_cfg.temporal,
      temporal_downsample=tuple(model_cfg.temporal_downsample),
      temporal_attn_levels=(None if model_cfg.temporal_attn_levels is None
                            else tuple(model_cfg.temporal_attn_levels)),
      temporal_text_attn=model_cfg.temporal_text_attn, space_to_depth=model_cfg.space_to_depth,
      cond_channels=model_cfg.cond_channels, out_channels=model_cfg.out_channels,
      dropout=model_cfg.dropout, norm_groups=model_cfg.norm_groups, remat=model_cfg.remat,
      pixel_skip=model_cfg.get("pixel_skip", False),
      pixel_gate_from_features=model_cfg.get("pixel_gate_from_features", False),
      position_code=model_cfg.get("position_code", False),
      frame_film=model_cfg.get("frame_film", False),
      text_layout=model_cfg.get("text_layout", False),
      dtype=jnp.dtype(model_cfg.dtype), param_dtype=jnp.dtype(model_cfg.param_dtype))

