"""Inflation T2I -> STUNet: where it starts as the T2I per frame; freezing; interpolation."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import tiny
from lumiere_jax import modeling
from lumiere_jax.models import inflate as inflate_lib


def _models():
  cfg = tiny.get_config("test")
  cfg.model.remat = True  # Exercised by the training steps below.
  stunet = modeling.build(cfg, cfg.data.vocab_size)
  cfg.model.temporal = False
  t2i = modeling.build(cfg, cfg.data.vocab_size)
  return t2i, stunet


T2I, STUNET = _models()
TOKENS = jnp.array([[3, 4, 5, 0], [0, 0, 0, 0]], jnp.int32)
MASK = TOKENS > 0
T = jnp.array([0.3, 0.8])


def _constant_clip(frames=4):
  frame = jax.random.uniform(jax.random.key(0), (2, 1, 16, 16, 3), minval=-1, maxval=1)
  return jnp.broadcast_to(frame, (2, frames, 16, 16, 3))


@pytest.fixture(scope="module")
def params():
  """Real STUNet init, and perturbed T2I params (its non-temporal subtree) so nothing is zero."""
  # unsafe_rbg: its initialisers compile ~2.5x faster on CPU than threefry.
  stunet = nn.unbox(jax.jit(STUNET.init)(jax.random.key(1, impl="unsafe_rbg"), _constant_clip(),
                                         T, TOKENS, MASK))
  rng = np.random.default_rng(2)
  noisy = jax.tree.map(lambda l: l + 0.05 * rng.standard_normal(l.shape, np.float32), stunet)
  t2i_shapes = jax.eval_shape(T2I.init, jax.random.key(1), _constant_clip(), T, TOKENS, MASK)
  t2i = jax.tree_util.tree_map_with_path(
      lambda p, _: _get(noisy, p), nn.unbox(t2i_shapes))
  return t2i, stunet


def _get(tree, path):
  for k in path:
    tree = tree[k.key]
  return tree


def _moving_clip(frames=4):
  """A clip whose every frame is a different random image."""
  return jax.random.uniform(jax.random.key(3), (2, frames, 16, 16, 3), minval=-1, maxval=1)


APPLY_T2I = jax.jit(T2I.apply)


def _t2i_per_frame(t2i, clip):
  """The T2I model applied to each frame on its own (as a clip that shows only that frame)."""
  return jnp.stack([APPLY_T2I(t2i, jnp.broadcast_to(clip[:, f:f + 1], clip.shape), T, TOKENS,
                              MASK)[:, f] for f in range(clip.shape[1])], axis=1)


def test_t2i_treats_every_frame_as_an_image(params):
  """The reference of the tests below: the T2I output of a frame depends on that frame only."""
  t2i, _ = params
  clip = _moving_clip()
  out = APPLY_T2I(t2i, clip, T, TOKENS, MASK)
  assert float(jnp.abs(out).mean()) > 0.1  # Not trivially zero.
  np.testing.assert_allclose(out, _t2i_per_frame(t2i, clip), atol=1e-5)


def test_inflated_stunet_equals_t2i_per_frame_on_a_static_clip(params):
  t2i, stunet_init = params
  stunet = inflate_lib.inflate(t2i, stunet_init)
  clip = _constant_clip()
  np.testing.assert_allclose(jax.jit(STUNET.apply)(stunet, clip, T, TOKENS, MASK),
                             APPLY_T2I(t2i, clip, T, TOKENS, MASK), atol=1e-5)


def test_inflated_stunet_on_a_moving_clip_differs_only_where_resampling_drops_frames(params):
  """Temporal down/upsampling start as nearest neighbour in time: keep the even frames, then
  duplicate. So an output frame equals the T2I's when the coarse level kept that frame; the
  others see their own frame at the fine level and the previous kept frame at the coarse one.
  """
  t2i, stunet_init = params
  stunet = inflate_lib.inflate(t2i, stunet_init)
  apply_st = jax.jit(STUNET.apply)
  clip = _moving_clip()
  out, per_frame = apply_st(stunet, clip, T, TOKENS, MASK), APPLY_T2I(t2i, clip, T, TOKENS, MASK)
  np.testing.assert_allclose(out[:, ::2], per_frame[:, ::2], atol=1e-5)  # The kept frames.
  dropped_error = float(jnp.abs(out[:, 1::2] - per_frame[:, 1::2]).mean())
  print(f"mean |STUNet - T2I| on the dropped frames: {dropped_error:.4f}, "
        f"mean |T2I|: {float(jnp.abs(per_frame).mean()):.4f}")
  assert dropped_error > 0.1  # Measured 0.46 (mean |T2I| 0.55).
  # A clip that moves only between kept frames (frames 0, 0, 2, 2): equal on every frame.
  held = clip[:, ::2].repeat(2, axis=1)
  np.testing.assert_allclose(apply_st(stunet, held, T, TOKENS, MASK),
                             APPLY_T2I(t2i, held, T, TOKENS, MASK), atol=1e-5)


def test_inflated_stunet_without_temporal_resampling_equals_t2i_per_frame_on_any_clip(params):
  t2i, stunet_init = params
  cfg = tiny.get_config("test")
  cfg.model.temporal_downsample = (False,)
  stunet_model = modeling.build(cfg, cfg.data.vocab_size)
  # Its tree is the STUNet's without the temporal resampling modules: take their init values.
  shapes = jax.eval_shape(stunet_model.init, jax.random.key(1), _constant_clip(), T, TOKENS, MASK)
  init = jax.tree_util.tree_map_with_path(lambda p, _: _get(stunet_init, p), nn.unbox(shapes))
  stunet = inflate_lib.inflate(t2i, init)
  clip = _moving_clip()
  np.testing.assert_allclose(jax.jit(stunet_model.apply)(stunet, clip, T, TOKENS, MASK),
                             APPLY_T2I(t2i, clip, T, TOKENS, MASK), atol=1e-5)


def test_freezing_keeps_t2i_weights_bit_identical(params):
  t2i, stunet_init = params
  stunet = inflate_lib.inflate(t2i, stunet_init)
  mask = inflate_lib.temporal_mask(stunet)
  labels = jax.tree.map(lambda m: "train" if m else "freeze", mask)
  tx = optax.multi_transform({"train": optax.adamw(1e-2), "freeze": optax.set_to_zero()}, labels)
  clip = _constant_clip() + 0.1 * jnp.arange(4.0)[None, :, None, None, None]  # Moves in time.

  @jax.jit
  def step(p, opt_state):
    grads = jax.grad(lambda p: jnp.mean((STUNET.apply(p, clip, T, TOKENS, MASK) - clip) ** 2))(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  p, opt_state = stunet, tx.init(stunet)
  for _ in range(3):
    p, opt_state = step(p, opt_state)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stunet, p)
  for path, m in jax.tree_util.tree_leaves_with_path(mask):
    name = jax.tree_util.keystr(path)
    if m:
      continue
    assert not _get(changed, path), f"frozen {name} changed"
  assert any(jax.tree.leaves(jax.tree.map(lambda c, m: c and m, changed, mask)))
  assert sum(jax.tree.leaves(mask)) > 0 and not all(jax.tree.leaves(mask))


def test_inflate_rejects_mismatch(params):
  t2i, stunet_init = params
  bad = jax.tree.map(lambda x: x, t2i)
  bad["params"]["unet"]["conv_in"]["kernel"] = jnp.zeros((3, 3, 12, 7))
  with pytest.raises(ValueError, match="shape mismatch at params/unet/conv_in/kernel"):
    inflate_lib.inflate(bad, stunet_init)
  bad = jax.tree.map(lambda x: x, t2i)
  bad["params"]["unet"]["extra"] = {"kernel": jnp.zeros(3)}
  with pytest.raises(ValueError, match="params/unet/extra/kernel has no counterpart"):
    inflate_lib.inflate(bad, stunet_init)


def test_inflate_adds_zero_cond_channels(params):
  _, stunet = params
  cfg = tiny.get_config("test")
  cfg.model.cond_channels = 4
  cond_model = modeling.build(cfg, cfg.data.vocab_size)
  clip = _constant_clip()
  cond_init = jax.tree.map(
      jnp.ones_like,
      nn.unbox(jax.eval_shape(cond_model.init, jax.random.key(1), clip, T, TOKENS, MASK,
                              jnp.ones((2, 4, 16, 16, 4)))))
  out = inflate_lib.inflate(stunet, cond_init)
  np.testing.assert_array_equal(out["params"]["unet"]["conv_in"]["kernel"],
                                stunet["params"]["unet"]["conv_in"]["kernel"])
  s2d = cfg.model.space_to_depth  # cond_in sees the 4 cond channels after space-to-depth.
  assert out["params"]["unet"]["cond_in"]["kernel"].shape == (3, 3, 4 * s2d**2,
                                                              cfg.model.channels[0])


def test_interpolate_spatial(params):
  t2i, stunet = params
  a = stunet
  b = jax.tree.map(lambda x: x + 1.0, t2i)  # A "style-fine-tuned" T2I.
  out0 = inflate_lib.interpolate_spatial(a, b, 0.0)
  jax.tree.map(np.testing.assert_array_equal, out0, a)
  half = inflate_lib.interpolate_spatial(a, b, 0.5)
  mask = inflate_lib.temporal_mask(a)
  for (path, m), x, y in zip(jax.tree_util.tree_leaves_with_path(mask), jax.tree.leaves(half),
                             jax.tree.leaves(a)):
    expected = y if m else 0.5 * y + 0.5 * _get(b, path)
    np.testing.assert_allclose(x, expected, atol=1e-6, err_msg=jax.tree_util.keystr(path))
