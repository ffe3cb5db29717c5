"""Building blocks of the space-time U-Net.

Spatial ops run on `(B*T, H, W, C)` and temporal ops on `(B*H*W, T, C)`: factorized convolutions
as reshapes, which run faster than 3D kernels (docs/benchmarks.md).
Temporal blocks start with zero outputs and temporal down/upsampling as keeping the even frames /
duplicating them (identity kernels), so an inflated STUNet starts equal to the T2I U-Net applied
per frame on a static clip; on a moving one, a frame that the downsampling drops sees the previous
kept frame at the coarser levels.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# Feature axes of activations stay unsharded; only batch is split (data parallel / FSDP).
VIDEO_AXES = ("batch", "frames", "height", "width", None)
TEXT_AXES = ("batch", "length", None)
CONV_AXES = (None, None, "conv_in", "conv_out")
TEMPORAL_CONV_AXES = (None, "conv_in", "conv_out")

zeros = nn.initializers.zeros_init()
default_kernel = nn.initializers.lecun_normal()


def partitioned(init: Callable[..., Any], names: tuple[str | None, ...]):
  return nn.with_logical_partitioning(init, names)


def constrain_video(x: jax.Array) -> jax.Array:
  return nn.with_logical_constraint(x, VIDEO_AXES)


def identity_temporal_kernel(key, shape, dtype=jnp.float32):
  """A (3, C, C) kernel that copies the centre frame: temporal resampling starts as nearest."""
  del key
  kernel = np.zeros(shape, np.float32)
  kernel[shape[0] // 2] = np.eye(shape[1], shape[2])
  return jnp.asarray(kernel, dtype)


def spatial(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """Applies `fn` to every frame: (B, T, H, W, C) -> (B*T, H, W, C) -> back."""
  b, t = x.shape[:2]
  y = fn(x.reshape((b * t,) + x.shape[2:]))
  return y.reshape((b, t) + y.shape[1:])


def temporal(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """Applies `fn` to every pixel's frame sequence: (B, T, H, W, C) -> (B*H*W, T, C) -> back."""
  b, _, h, w, c = x.shape
  seq = x.transpose(0, 2, 3, 1, 4).reshape(b * h * w, x.shape[1], c)
  y = fn(seq)
  return y.reshape(b, h, w, y.shape[1], y.shape[2]).transpose(0, 3, 1, 2, 4)


def sinusoidal_embedding(pos: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Transformer-style sin/cos features of (possibly continuous) positions: (N,) -> (N, dim)."""
  half = dim // 2
  freqs = jnp.exp(-np.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = pos.astype(jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def grid_code(height: int, width: int, dim: int) -> jax.Array:
  """Fixed (H, W, dim) code of each pixel's position: sin/cos of its row, then of its column."""
  half = dim // 2
  rows = sinusoidal_embedding(jnp.arange(height), half)
  cols = sinusoidal_embedding(jnp.arange(width), dim - half)
  return jnp.concatenate([jnp.broadcast_to(rows[:, None], (height, width, half)),
                          jnp.broadcast_to(cols[None], (height, width, dim - half))], axis=-1)


def space_to_depth(x: jax.Array, s: int) -> jax.Array:
  """(B, T, H, W, C) -> (B, T, H/s, W/s, C*s*s): fewer, wider pixels run faster on CPU."""
  if s == 1:
    return x
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h // s, s, w // s, s, c).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h // s, w // s, s * s * c)


def depth_to_space(x: jax.Array, s: int) -> jax.Array:
  """Inverse of `space_to_depth`."""
  if s == 1:
    return x
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h, w, s, s, c // (s * s)).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h * s, w * s, c // (s * s))


class LayerBase(nn.Module):
  """Shared dtype fields and annotated layer factories."""
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def conv(self, features, kernel=(3, 3), strides=1, zero=False, use_bias=True, name=None,
           kernel_init=None):
    ndim = len(kernel)
    axes = CONV_AXES if ndim == 2 else TEMPORAL_CONV_AXES
    init = kernel_init or (zeros if zero else default_kernel)
    return nn.Conv(
        features, kernel, strides=strides, padding=[(k // 2, k // 2) for k in kernel],
        use_bias=use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=partitioned(init, axes), bias_init=partitioned(zeros, ("conv_out",)),
        name=name)

  def dense(self, features, axes, zero=False, name=None):
    return nn.Dense(
        features, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=partitioned(zeros if zero else default_kernel, axes),
        bias_init=partitioned(zeros, axes[-1:]), name=name)

  def group_norm(self, groups, name=None):
    return nn.GroupNorm(
        num_groups=groups, dtype=self.dtype, param_dtype=self.param_dtype,
        scale_init=partitioned(nn.initializers.ones_init(), ("conv_out",)),
        bias_init=partitioned(zeros, ("conv_out",)), name=name)

  def layer_norm(self, name=None):
    return nn.LayerNorm(
        dtype=self.dtype, param_dtype=self.param_dtype,
        scale_init=partitioned(nn.initializers.ones_init(), ("conv_out",)),
        bias_init=partitioned(zeros, ("conv_out",)), name=name)


class TemporalConv(LayerBase):
  """Residual branch of a factorized space-time conv: norm, 1D conv (k=3) over T, zero-init proj."""
  norm_groups: int = 8

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    h = nn.silu(self.group_norm(self.norm_groups, name="norm")(x))
    h = temporal(self.conv(c, (3,), name="conv"), h)
    h = spatial(self.conv(c, (1, 1), zero=True, name="proj_out"), nn.silu(h))
    return h


class ResBlock(LayerBase):
  """GroupNorm/SiLU/3x3 conv ResNet block with FiLM; STUNet adds a temporal conv branch."""
  features: int = 32
  norm_groups: int = 8
  dropout: float = 0.0
  temporal: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, train: bool = False) -> jax.Array:
    f = self.features
    h = spatial(self.group_norm(self.norm_groups, name="norm_1"), x)
    h = spatial(self.conv(f, name="conv_1"), nn.silu(h))
    # emb is (B, D), or (B, T, D) for per-frame FiLM.
    film = self.dense(2 * f, ("embed", "conv_out"), name="film")(nn.silu(emb))
    film = film[:, None] if film.ndim == 2 else film
    scale, shift = jnp.split(film[:, :, None, None, :], 2, axis=-1)
    h = spatial(self.group_norm(self.norm_groups, name="norm_2"), h) * (1 + scale) + shift
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    h = spatial(self.conv(f, zero=True, name="conv_2"), h)
    if x.shape[-1] != f:
      x = spatial(self.conv(f, (1, 1), name="skip"), x)
    x = constrain_video(x + h)
    if self.temporal:
      x = constrain_video(x + TemporalConv(self.dtype, self.param_dtype, self.norm_groups,
                                           name="temporal_conv")(x))
    return x


def dot_product_attention(q, k, v, mask=None):
  """q (B, Q, N, D), k/v (B, K, N, D), mask (B, K) bool; softmax in float32."""
  logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32) / np.sqrt(q.shape[-1])
  if mask is not None:
    # Finite fill: a fully masked row stays finite (uniform weights) instead of NaN.
    logits = jnp.where(mask[:, None, None, :], logits, -1e9)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bnqk,bknd->bqnd", weights, v)


class MultiHeadAttention(LayerBase):
  """Multi-head attention of `x` (B, Q, C) to `context` (B, K, Dc); optionally zero-init output."""
  num_heads: int = 4
  zero_out: bool = False

  @nn.compact
  def __call__(self, x, context, mask=None):
    c = x.shape[-1]
    head_dim = c // self.num_heads

    # Einsum, not DenseGeneral: DenseGeneral initialises a flattened 2D kernel, whose
    # 3-name logical box cannot be constrained once a mesh is in scope (`under_rules`).
    def proj(name):
      init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
      return nn.Einsum((context.shape[-1] if name != "query" else c, self.num_heads, head_dim),
                       "...c,chd->...hd", use_bias=False, dtype=self.dtype,
                       param_dtype=self.param_dtype,
                       kernel_init=partitioned(init, ("embed", "heads", "kv")), name=name)

    out = dot_product_attention(proj("query")(x), proj("key")(context), proj("value")(context),
                                mask)
    init = zeros if self.zero_out else nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
    return nn.Einsum((self.num_heads, head_dim, c), "...hd,hdc->...c", dtype=self.dtype,
                     param_dtype=self.param_dtype, kernel_init=partitioned(init, ("heads", "kv",
                                                                                  "embed")),
                     bias_init=partitioned(zeros, ("embed",)), name="out")(out)


class AttentionBlock(LayerBase):
  """T2I attention: spatial self-attention per frame, then cross-attention to the text.

  With `position_code`, the cross-attention queries carry a learned projection of each pixel's
  (row, column) code, so a word can attend to a place ("left", "top") and not only to content.
  """
  num_heads: int = 4
  norm_groups: int = 8
  position_code: bool = False

  @nn.compact
  def __call__(self, x, context, context_mask):
    b, t, h, w, c = x.shape
    y = spatial(self.group_norm(self.norm_groups, name="norm"), x).reshape(b * t, h * w, c)
    y = MultiHeadAttention(self.dtype, self.param_dtype, self.num_heads, zero_out=True,
                           name="self_attn")(y, y)
    x = constrain_video(x + y.reshape(x.shape))
    y = self.layer_norm(name="cross_norm")(x)
    if self.position_code:
      y = y + self.dense(c, ("embed", "conv_out"), name="grid_pos")(
          grid_code(h, w, c).astype(self.dtype))
    y = y.reshape(b, t * h * w, c)
    y = MultiHeadAttention(self.dtype, self.param_dtype, self.num_heads, zero_out=True,
                           name="cross_attn")(y, context, context_mask)
    return constrain_video(x + y.reshape(x.shape))


class TemporalAttentionBlock(LayerBase):
  """Self-attention over T per pixel (+ optional text cross-attention), a no-op at init.

  Queries carry a frame position embedding, so the text pathway can place what a word says
  (e.g. a motion direction) at the right frame, which spatial cross-attention cannot. With
  `position_code` the text queries also carry the (row, column) code: a word can then say where
  the object is in each frame.
  """
  num_heads: int = 4
  norm_groups: int = 8
  text_attn: bool = True
  position_code: bool = False

  @nn.compact
  def __call__(self, x, context, context_mask):
    b, t, h, w, c = x.shape
    pos = sinusoidal_embedding(jnp.arange(t), c).astype(self.dtype)
    pos = self.dense(c, ("embed", "conv_out"), name="frame_pos")(pos)[None, :, None, None, :]
    grid = 0.0
    if self.position_code:
      grid = self.dense(c, ("embed", "conv_out"), name="grid_pos")(
          grid_code(h, w, c).astype(self.dtype))
    y = self.group_norm(self.norm_groups, name="norm")(x) + pos
    attn = MultiHeadAttention(self.dtype, self.param_dtype, self.num_heads, zero_out=True,
                              name="self_attn")
    x = constrain_video(x + temporal(lambda s: attn(s, s), y))
    if self.text_attn:
      y = (self.layer_norm(name="cross_norm")(x) + pos + grid).reshape(b, t * h * w, c)
      y = MultiHeadAttention(self.dtype, self.param_dtype, self.num_heads, zero_out=True,
                             name="cross_attn")(y, context, context_mask)
      x = constrain_video(x + y.reshape(x.shape))
    return x


class Downsample(LayerBase):
  """Spatial x2 downsampling: strided 3x3 conv per frame."""

  @nn.compact
  def __call__(self, x):
    return spatial(self.conv(x.shape[-1], strides=2, name="conv"), x)


class Upsample(LayerBase):
  """Spatial x2 upsampling: nearest neighbour then 3x3 conv per frame."""

  @nn.compact
  def __call__(self, x):
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    return spatial(self.conv(x.shape[-1], name="conv"), x)


class TemporalDownsample(LayerBase):
  """1D temporal conv initialised to identity, stride 2: starts as keeping even frames."""

  @nn.compact
  def __call__(self, x):
    conv = self.conv(x.shape[-1], (3,), strides=2, kernel_init=identity_temporal_kernel,
                     name="conv")
    return constrain_video(temporal(conv, x))


class TemporalUpsample(LayerBase):
  """Frame duplication then 1D temporal conv initialised to identity."""

  @nn.compact
  def __call__(self, x):
    x = jnp.repeat(x, 2, axis=1)
    conv = self.conv(x.shape[-1], (3,), kernel_init=identity_temporal_kernel, name="conv")
    return constrain_video(temporal(conv, x))
