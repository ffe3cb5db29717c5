"""U-Net / STUNet shapes, validation, dtypes and sharding annotations.

Shape and validation checks use `jax.eval_shape` (no compile); one small model is run for real.
"""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import tiny
from lumiere_jax import modeling
from lumiere_jax.models import model as model_lib
from lumiere_jax.models import unet as unet_lib


def _inputs(cfg, batch=1, frames=8, res=32):
  x = jax.random.normal(jax.random.key(0), (batch, frames, res, res, 3))
  t = jnp.linspace(0.1, 0.9, batch)
  tokens = jnp.tile(jnp.arange(1, 7, dtype=jnp.int32), (batch, 1))
  c = (jnp.ones((batch, frames, res, res, cfg.model.cond_channels))
       if cfg.model.cond_channels else None)
  return x, t, tokens, tokens > 0, c


def _abstract_init(cfg, inputs):
  model = modeling.build(cfg, cfg.data.vocab_size)
  return model, jax.eval_shape(model.init, jax.random.key(1), *inputs)


@pytest.mark.parametrize("cond_channels", [0, 4])
def test_tiny_shapes(cond_channels):
  cfg = tiny.get_config()
  cfg.model.cond_channels = cond_channels
  inputs = _inputs(cfg)
  model, variables = _abstract_init(cfg, inputs)
  out = jax.eval_shape(model.apply, variables, *inputs)
  assert out.shape == (1, 8, 32, 32, 3) and out.dtype == jnp.float32


def test_tiny_param_tree_and_annotations():
  cfg = tiny.get_config()
  inputs = _inputs(cfg)
  _, stunet = _abstract_init(cfg, inputs)
  cfg.model.temporal = False
  _, t2i = _abstract_init(cfg, inputs)
  stunet_keys, t2i_keys = set(stunet["params"]["unet"]), set(t2i["params"]["unet"])
  assert t2i_keys < stunet_keys
  assert all(k.startswith("temporal_") for k in stunet_keys - t2i_keys)
  assert "temporal_conv" in stunet["params"]["unet"]["down_0_res_0"]
  assert "temporal_conv" not in stunet["params"]["unet"]["down_1_res_0"]  # Coarsest level.
  print(f"tiny STUNet params: {model_lib.count_params(stunet)}, "
        f"T2I: {model_lib.count_params(t2i)}")
  specs = jax.tree.leaves(nn.get_partition_spec(stunet),
                          is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))
  assert len(specs) == len(jax.tree.leaves(nn.unbox(stunet)))
  assert all(any(n is not None for n in s) for s in specs)


def test_check_frames():
  cfg = tiny.get_config()
  unet_lib.check_frames(cfg.model, 8)
  with pytest.raises(ValueError, match="num_frames=7 .* factor 2"):
    unet_lib.check_frames(cfg.model, 7)
  cfg.model.update(channels=(32, 64, 64), temporal_downsample=(True, True))
  with pytest.raises(ValueError, match="num_frames=6 .* factor 4"):
    unet_lib.check_frames(cfg.model, 6)
  cfg.model.temporal = False
  unet_lib.check_frames(cfg.model, 1)  # The T2I U-Net takes single frames.


def test_bad_config_raises():
  cfg = tiny.get_config("test")
  inputs = _inputs(cfg, frames=4, res=16)
  cfg.model.norm_groups = 5
  with pytest.raises(ValueError, match="norm_groups=5"):
    _abstract_init(cfg, inputs)
  cfg.model.norm_groups = 4
  with pytest.raises(ValueError, match="frame size 18x18"):
    _abstract_init(cfg, _inputs(cfg, frames=4, res=18))
  with pytest.raises(ValueError, match="num_frames=3"):
    _abstract_init(cfg, _inputs(cfg, frames=3, res=16))
  cfg.model.temporal_downsample = (True, False)
  with pytest.raises(ValueError, match="temporal_downsample needs 1 entries"):
    _abstract_init(cfg, inputs)
  cfg.model.temporal_downsample = (True,)
  cfg.model.cond_channels = 4
  with pytest.raises(ValueError, match="cond must be given"):
    _abstract_init(cfg, inputs[:4])


def test_bf16_cond_model_runs_with_masked_text():
  cfg = tiny.get_config("test")
  cfg.model.update(dtype="bfloat16", cond_channels=4)
  x, t, tokens, mask, cond = _inputs(cfg, batch=2, frames=4, res=16)
  model, shapes = _abstract_init(cfg, (x, t, tokens, mask, cond))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(shapes)))
  # Random params from numpy: avoids compiling the initialisers (slow on CPU).
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype),
                           nn.unbox(shapes))
  apply = jax.jit(model.apply)
  out = apply(variables, x, t, tokens, mask, cond)
  assert out.shape == x.shape and out.dtype == jnp.float32
  # The unconditional (all-pad, all-masked) prompt still gives a finite prediction.
  uncond = apply(variables, x, t, jnp.zeros_like(tokens), jnp.zeros_like(mask), cond)
  assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(uncond)).all()
  assert not np.allclose(out, uncond)


def test_paper_scale_shapes():
  """Shape-only (no allocation): the paper's base resolution, 80 frames at 128x128."""
  cfg = tiny.get_config()
  cfg.model.update(channels=(256, 512, 1024, 1024), num_res_blocks=2, attn_levels=(2, 3),
                   head_dim=64, temporal_downsample=(True, True, True), space_to_depth=1,
                   norm_groups=32, dtype="bfloat16", remat=True)
  cfg.text.update(kind="precomputed", width=1024)
  cfg.data.update(max_text_len=64, text_embedding_dim=4096)
  model = modeling.build(cfg, 0)
  x = jax.ShapeDtypeStruct((1, 80, 128, 128, 3), jnp.float32)
  args = (x, jax.ShapeDtypeStruct((1,), jnp.float32),
          jax.ShapeDtypeStruct((1, 64, 4096), jnp.float32),
          jax.ShapeDtypeStruct((1, 64), jnp.bool_))
  variables = jax.eval_shape(model.init, jax.random.key(0), *args)
  assert jax.eval_shape(model.apply, variables, *args).shape == x.shape
  n = model_lib.count_params(variables)
  print(f"paper-scale STUNet params: {n / 1e6:.1f}M")
  assert 5e8 < n < 2e9


def _jacobian_rank(pixel_skip):
  """Rank of d(output)/d(x_t) of a T2I U-Net whose first level (4 ch) is narrower than its
  space-to-depth tokens (4*4*3 = 48 values); 8x8 frames = 4 tokens = 192 input values."""
  cfg = tiny.get_config()
  cfg.model.update(temporal=False, channels=(4, 8), norm_groups=2, num_heads=1, attn_levels=(),
                   space_to_depth=4, pixel_skip=pixel_skip)
  model = modeling.build(cfg, cfg.data.vocab_size)
  x, t, tokens, mask, _ = _inputs(cfg, frames=1, res=8)
  params = model.init(jax.random.key(1), x, t, tokens, mask)["params"]
  if pixel_skip:  # Gates start at zero (the model starts as without the skip); open them.
    gate = params["unet"]["pixel_skip_gate"]
    gate["bias"] = jnp.ones_like(nn.meta.unbox(gate["bias"]))
  emb = model.apply({"params": params}, tokens, mask, method=model.encode_text)
  fn = lambda v: model.apply({"params": params}, v.reshape(x.shape), t, emb, mask,
                             method=model.denoise).ravel()
  return np.linalg.matrix_rank(np.asarray(jax.jit(jax.jacfwd(fn))(x.ravel())))


def test_pixel_skip_makes_the_prediction_full_rank_in_the_pixels():
  """Without the skip the output can vary in at most 4 tokens x 4 channels = 16 directions,
  so per-pixel noise cannot be predicted (speckle in samples); with it, in all 192 (up to
  float32 round-off in the rank's tolerance)."""
  assert _jacobian_rank(False) <= 16
  assert _jacobian_rank(True) >= 190


@pytest.mark.parametrize("gate_from_features", [False, True])
def test_pixel_skip_starts_as_the_model_without_it(gate_from_features):
  cfg = tiny.get_config()
  cfg.model.update(pixel_skip=True, cond_channels=4, pixel_gate_from_features=gate_from_features)
  inputs = _inputs(cfg, batch=2, res=32)
  with_skip = modeling.build(cfg, cfg.data.vocab_size)
  params = with_skip.init(jax.random.key(1), *inputs)["params"]
  cfg.model.pixel_skip = False
  without = modeling.build(cfg, cfg.data.vocab_size)
  unet = {k: v for k, v in params["unet"].items() if "pixel_skip" not in k}
  np.testing.assert_array_equal(with_skip.apply({"params": params}, *inputs),
                                without.apply({"params": {**params, "unet": unet}}, *inputs))


def _skip_gain_spread(gate_from_features):
  """Spread over pixels of output / input of a U-Net whose output is its pixel skip alone."""
  cfg = tiny.get_config()
  cfg.model.update(temporal=False, channels=(4, 8), norm_groups=2, num_heads=1, attn_levels=(),
                   space_to_depth=4, pixel_skip=True,
                   pixel_gate_from_features=gate_from_features)
  model = modeling.build(cfg, cfg.data.vocab_size)
  x, t, tokens, mask, _ = _inputs(cfg, frames=1, res=16)
  flat = flax.traverse_util.flatten_dict(
      nn.meta.unbox(model.init(jax.random.key(1), x, t, tokens, mask)["params"]))
  for i, path in enumerate(sorted(flat)):
    if "conv_out" in path:  # The main path's output: off.
      flat[path] = jnp.zeros_like(flat[path])
    elif path[-2] == "pixel_skip_gate" and path[-1] == "bias":  # The per-example gate: open.
      flat[path] = jnp.ones_like(flat[path])
    elif path[-2] == "pixel_skip_pixel_gate" and path[-1] == "kernel":
      flat[path] = 0.3 * jax.random.normal(jax.random.key(i), flat[path].shape)
  params = flax.traverse_util.unflatten_dict(flat)
  gain = model.apply({"params": params}, x, t, tokens, mask) / x
  return float(jnp.max(jnp.std(gain.reshape(-1, 3), axis=0)))


def test_pixel_gate_from_features_varies_the_skip_per_pixel():
  """The per-example gate scales every pixel of a channel alike; the gate from the features is
  what lets the skip copy x_t in one place (an object's edge) and not in another."""
  assert _skip_gain_spread(False) < 1e-5
  assert _skip_gain_spread(True) > 0.05


@functools.lru_cache(maxsize=None)
def _static_clip_frame_spread(perturb):
  """Largest difference between output frames of a static clip (every frame the same)."""
  cfg = tiny.get_config()
  cfg.model.update(channels=(8, 16), norm_groups=2, num_heads=2, space_to_depth=2,
                   position_code=True, frame_film=True, text_layout=True,
                   temporal_downsample=(False,))
  model = modeling.build(cfg, cfg.data.vocab_size)
  x, t, tokens, mask, _ = _inputs(cfg, batch=2, frames=4, res=8)
  x = jnp.repeat(x[:, :1], 4, axis=1)
  params = nn.meta.unbox(model.init(jax.random.key(1), x, t, tokens, mask)["params"])
  # Zero-init outputs of the res blocks (whose FiLM would not show otherwise) and of the chosen
  # temporal projections get random weights.
  flat = flax.traverse_util.flatten_dict(params)
  for i, path in enumerate(sorted(flat)):
    if path[-1] == "kernel" and ("conv_2" in path or path[1] in perturb):
      flat[path] = 0.3 * jax.random.normal(jax.random.key(i), flat[path].shape)
  params = flax.traverse_util.unflatten_dict(flat)
  out = model.apply({"params": params}, x, t, tokens, mask)
  return float(jnp.max(jnp.abs(out - out[:, :1])))


@pytest.mark.parametrize("module", ["temporal_film_2", "temporal_frame_code",
                                    "temporal_layout_features", "temporal_layout_gate"])
def test_frame_dependent_paths_start_at_zero_and_then_vary_by_frame(module):
  """At init a static clip gives the same prediction in every frame (the inflated model is the
  per-frame T2I); the per-frame FiLM, the frame code and the text layout (into the features and
  straight into the prediction) are what let frames differ."""
  assert _static_clip_frame_spread(()) < 1e-5
  assert _static_clip_frame_spread((module,)) > 1e-3
