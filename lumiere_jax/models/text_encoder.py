"""Text encoders: a small T5-style transformer on tokens, or a projection of precomputed embeddings.

Both return `(B, L, width)` with padded positions zeroed, so an all-pad (unconditional) prompt gives
an input that does not depend on what the pad positions would attend to.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from lumiere_jax import errors
from lumiere_jax.models import layers

TEXT_KINDS = ("transformer", "precomputed")


class RMSNorm(layers.LayerBase):
  """T5 LayerNorm: scale only, no mean subtraction."""

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", layers.partitioned(nn.initializers.ones_init(), ("embed",)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + 1e-6)
    return (x32 * scale).astype(self.dtype)


class EncoderLayer(layers.LayerBase):
  """Pre-norm self-attention with a key padding mask, then a gated-GELU MLP."""
  num_heads: int = 4
  mlp_dim: int = 128

  @nn.compact
  def __call__(self, x, mask):
    y = RMSNorm(self.dtype, self.param_dtype, name="attn_norm")(x)
    x = x + layers.MultiHeadAttention(self.dtype, self.param_dtype, self.num_heads,
                                      name="attn")(y, y, mask)
    y = RMSNorm(self.dtype, self.param_dtype, name="mlp_norm")(x)
    gate = self.dense(self.mlp_dim, ("embed", "mlp"), name="wi_0")(y)
    up = self.dense(self.mlp_dim, ("embed", "mlp"), name="wi_1")(y)
    y = self.dense(x.shape[-1], ("mlp", "embed"), name="wo")(nn.gelu(gate) * up)
    return nn.with_logical_constraint(x + y, layers.TEXT_AXES)


class TextEncoder(layers.LayerBase):
  """Token ids (B, L) -> embeddings (B, L, width); learned absolute positions."""
  vocab_size: int = 128
  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_len: int = 16

  @nn.compact
  def __call__(self, tokens, text_mask):
    if tokens.shape[1] > self.max_len:
      raise ValueError(f"text length {tokens.shape[1]} exceeds max_len={self.max_len} "
                       "(data.max_text_len)")
    if self.width % self.num_heads:
      raise errors.UserError(f"text width {self.width} is not divisible by {self.num_heads} heads")
    x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                 embedding_init=layers.partitioned(nn.initializers.normal(1.0),
                                                   ("vocab", "embed")),
                 name="token_embed")(tokens)
    pos = self.param("pos_embed", layers.partitioned(nn.initializers.normal(1.0),
                                                     ("length", "embed")),
                     (self.max_len, self.width), self.param_dtype)
    x = x + pos[None, :tokens.shape[1]].astype(self.dtype)
    for i in range(self.num_layers):
      x = EncoderLayer(self.dtype, self.param_dtype, self.num_heads, self.mlp_dim,
                       name=f"layer_{i}")(x, text_mask)
    x = RMSNorm(self.dtype, self.param_dtype, name="final_norm")(x)
    return x * text_mask[..., None].astype(x.dtype)


class PrecomputedText(layers.LayerBase):
  """Precomputed embeddings (B, L, input_dim) (e.g. from a frozen T5) -> (B, L, width)."""
  width: int = 64
  input_dim: int = 0

  @nn.compact
  def __call__(self, embeddings, text_mask):
    if embeddings.ndim != 3 or (self.input_dim and embeddings.shape[-1] != self.input_dim):
      raise ValueError(f"precomputed text must be (B, L, {self.input_dim or 'D'}), got shape "
                       f"{embeddings.shape}")
    x = self.dense(self.width, ("mlp", "embed"), name="proj")(embeddings.astype(self.dtype))
    return x * text_mask[..., None].astype(x.dtype)


def text_encoder_from_config(text_cfg, vocab_size: int, dtype, param_dtype, *, max_len: int,
                             input_dim: int = 0) -> nn.Module:
  """`config.text.kind` selects the encoder; both share the `(inputs, text_mask)` interface.

  The text's shape is the dataset's (`config.data`): `max_len` tokens of `input_dim`-dim
  precomputed features (0: any).
  """
  if text_cfg.kind == "transformer":
    return TextEncoder(dtype=dtype, param_dtype=param_dtype, vocab_size=vocab_size,
                       width=text_cfg.width, num_layers=text_cfg.num_layers,
                       num_heads=text_cfg.num_heads, mlp_dim=text_cfg.mlp_dim,
                       max_len=max_len)
  if text_cfg.kind == "precomputed":
    return PrecomputedText(dtype=dtype, param_dtype=param_dtype, width=text_cfg.width,
                           input_dim=input_dim)
  raise errors.UserError(f"unknown text.kind {text_cfg.kind!r}; use one of {TEXT_KINDS}")
