"""Text encoders: shapes, padding, unconditional input, config dispatch."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lumiere_jax.models import text_encoder


def _cfg(**kw):
  cfg = dict(kind="transformer", width=32, num_layers=1, num_heads=2, mlp_dim=64)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def test_transformer_encoder_shapes_and_padding():
  enc = text_encoder.text_encoder_from_config(_cfg(), 50, jnp.float32, jnp.float32, max_len=8)
  tokens = jnp.array([[5, 6, 7, 0, 0, 0], [0] * 6], jnp.int32)
  mask = tokens > 0
  v = enc.init(jax.random.key(0), tokens, mask)
  out = enc.apply(v, tokens, mask)
  assert out.shape == (2, 6, 32)
  assert np.isfinite(np.asarray(out)).all()
  np.testing.assert_array_equal(out[0, 3:], 0.0)
  np.testing.assert_array_equal(out[1], 0.0)  # All-pad (unconditional) prompt.
  # Real tokens do not see padding: changing pad ids leaves them unchanged.
  out2 = enc.apply(v, tokens.at[0, 4].set(9), mask)
  np.testing.assert_allclose(out2[0, :3], out[0, :3], atol=1e-6)


def test_too_long_text_raises():
  enc = text_encoder.text_encoder_from_config(_cfg(), 50, jnp.float32, jnp.float32, max_len=8)
  tokens = jnp.ones((1, 9), jnp.int32)
  with pytest.raises(ValueError, match="max_len=8"):
    enc.init(jax.random.key(0), tokens, tokens > 0)


def test_precomputed_path():
  enc = text_encoder.text_encoder_from_config(_cfg(kind="precomputed"), 0, jnp.float32,
                                              jnp.float32, max_len=8, input_dim=12)
  emb = jnp.ones((2, 5, 12))
  mask = jnp.array([[True] * 5, [True, False, False, False, False]])
  v = enc.init(jax.random.key(0), emb, mask)
  out = enc.apply(v, emb, mask)
  assert out.shape == (2, 5, 32)
  np.testing.assert_array_equal(out[1, 1:], 0.0)
  with pytest.raises(ValueError, match="precomputed text"):
    enc.init(jax.random.key(0), jnp.ones((2, 5, 7)), mask)


def test_unknown_kind_raises():
  with pytest.raises(ValueError, match="unknown text.kind"):
    text_encoder.text_encoder_from_config(_cfg(kind="clip"), 50, jnp.float32, jnp.float32,
                                          max_len=8)
