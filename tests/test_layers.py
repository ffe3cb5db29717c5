"""Temporal layers are exact no-ops / nearest-neighbour resampling at init."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax.models import layers

X = jax.random.normal(jax.random.key(0), (2, 8, 4, 4, 16))


def _init_apply(module, *args):
  variables = module.init(jax.random.key(1), *args)
  return module.apply(variables, *args)


def test_temporal_downsample_is_nearest_at_init():
  np.testing.assert_array_equal(_init_apply(layers.TemporalDownsample(), X), X[:, ::2])
  const = jnp.broadcast_to(X[:, :1], X.shape)
  np.testing.assert_array_equal(_init_apply(layers.TemporalDownsample(), const), const[:, :4])


def test_temporal_upsample_duplicates_frames_at_init():
  np.testing.assert_array_equal(_init_apply(layers.TemporalUpsample(), X), jnp.repeat(X, 2, 1))


def test_temporal_conv_branch_is_zero_at_init():
  out = _init_apply(layers.TemporalConv(norm_groups=4), X)
  assert out.shape == X.shape
  np.testing.assert_array_equal(out, 0.0)


def test_temporal_attention_is_identity_at_init():
  ctx = jax.random.normal(jax.random.key(2), (2, 5, 8))
  mask = jnp.array([[True] * 5, [False] * 5])
  block = layers.TemporalAttentionBlock(num_heads=2, norm_groups=4, text_attn=True)
  np.testing.assert_array_equal(_init_apply(block, X, ctx, mask), X)


def test_res_block_temporal_branch_adds_nothing_at_init():
  emb = jnp.ones((2, 12))
  spatial_block = layers.ResBlock(features=8, norm_groups=4, temporal=False)
  space_time = layers.ResBlock(features=8, norm_groups=4, temporal=True)
  v = space_time.init(jax.random.key(3), X, emb)
  # The spatial block's params are the space-time block's minus `temporal_conv`.
  v_spatial = {"params": {k: p for k, p in v["params"].items() if k != "temporal_conv"}}
  v_spatial = jax.tree.map(lambda p: p + 0.1, v_spatial)  # Nothing trivially zero.
  v = {"params": {**v["params"], **v_spatial["params"]}}
  np.testing.assert_allclose(space_time.apply(v, X, emb), spatial_block.apply(v_spatial, X, emb),
                             atol=1e-6)


def test_space_to_depth_round_trip():
  x = jax.random.normal(jax.random.key(4), (1, 2, 8, 8, 3))
  y = layers.space_to_depth(x, 2)
  assert y.shape == (1, 2, 4, 4, 12)
  np.testing.assert_array_equal(layers.depth_to_space(y, 2), x)


def test_fully_masked_attention_is_finite():
  q = jax.random.normal(jax.random.key(5), (1, 3, 2, 4))
  out = layers.dot_product_attention(q, q, q, jnp.zeros((1, 3), bool))
  assert np.isfinite(np.asarray(out)).all()


def test_params_are_annotated():
  v = jax.eval_shape(layers.ResBlock(features=8, norm_groups=4, temporal=True).init,
                     jax.random.key(6), X, jnp.ones((2, 12)))
  specs = jax.tree.leaves(nn.get_partition_spec(v), is_leaf=lambda s: isinstance(
      s, jax.sharding.PartitionSpec))
  assert specs and all(any(n is not None for n in s) for s in specs)
