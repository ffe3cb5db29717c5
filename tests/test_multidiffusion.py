"""Tests for lumiere_jax.diffusion.multidiffusion."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.diffusion import samplers

B, T = 2, 10


def _x(seed=0, frames=T):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(B, frames, 3, 3, 3)), jnp.float32)


def _text():
  return jnp.ones((B, 4, 2), jnp.float32), jnp.ones((B, 4), bool)


def _window_fn(calls=None):
  """Depends on the whole window (adds its mean), so overlapping windows disagree."""
  def fn(x_t, t, text_emb, text_mask, cond):
    if calls is not None:
      calls.append(x_t.shape)
    out = 0.5 * x_t + x_t.mean(axis=(1, 2, 3, 4), keepdims=True)
    out = out + t[:, None, None, None, None] + text_emb.mean() * text_mask.mean()
    return out if cond is None else out + cond.mean(axis=(1, 2, 3, 4), keepdims=True)
  return fn


def _reference(fn, x, t, emb, mask, cond, window, overlap):
  """Per-frame average of window predictions, computed window by window (traceable)."""
  total, count = jnp.zeros(x.shape, jnp.float32), np.zeros(x.shape[1], np.float32)
  for s in multidiffusion.window_starts(x.shape[1], window, overlap):
    sl = slice(s, s + window)
    total = total.at[:, sl].add(fn(x[:, sl], t, emb, mask, None if cond is None else cond[:, sl]))
    count[sl] += 1
  return total / count[None, :, None, None, None]


def test_window_starts():
  assert multidiffusion.window_starts(16, 8, 2) == [0, 6, 8]
  assert multidiffusion.window_starts(14, 8, 2) == [0, 6]
  assert multidiffusion.window_starts(8, 8, 2) == [0]
  assert multidiffusion.window_starts(10, 4, 0) == [0, 4, 6]
  for frames, window, overlap in [(16, 8, 2), (80, 16, 2), (7, 3, 1), (9, 2, 1)]:
    starts = multidiffusion.window_starts(frames, window, overlap)
    covered = np.zeros(frames, bool)
    for s in starts:
      covered[s:s + window] = True
    assert covered.all() and starts[-1] + window == frames
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))
  with pytest.raises(ValueError, match='longer than the video'):
    multidiffusion.window_starts(4, 8, 2)
  with pytest.raises(ValueError, match='overlap'):
    multidiffusion.window_starts(16, 4, 4)


def test_single_window_equals_direct_call():
  fn = _window_fn()
  x, t = _x(), jnp.array([0.3, 0.7])
  wrapped = multidiffusion.multidiffusion(fn, T, T, 2)
  np.testing.assert_array_equal(wrapped(x, t, *_text(), None), fn(x, t, *_text(), None))


@pytest.mark.parametrize('window,overlap', [(4, 2), (4, 1), (3, 0)])
def test_overlaps_are_averaged_in_one_batched_call(window, overlap):
  calls = []
  fn = _window_fn(calls)
  x, t, cond = _x(), jnp.array([0.3, 0.7]), _x(1)
  out = multidiffusion.multidiffusion(fn, T, window, overlap)(x, t, *_text(), cond)
  num_windows = len(multidiffusion.window_starts(T, window, overlap))
  assert calls == [(num_windows * B, window, 3, 3, 3)]
  np.testing.assert_allclose(out, _reference(fn, x, t, *_text(), cond, window, overlap),
                             atol=1e-5)


@pytest.mark.parametrize('windows_per_call', [1, 3, 4, 9])
def test_windows_in_several_calls_give_the_same_average(windows_per_call):
  # T=10, window 4, overlap 2: 4 windows; 3 per call pads the second call with a weight-0 copy.
  calls = []
  fn = _window_fn(calls)
  x, t, cond = _x(), jnp.array([0.3, 0.7]), _x(1)
  out = jax.jit(lambda *a: multidiffusion.multidiffusion(fn, T, 4, 2, windows_per_call)(*a))(
      x, t, *_text(), cond)
  assert calls == [(min(windows_per_call, 4) * B, 4, 3, 3, 3)]  # Traced once, run per call.
  np.testing.assert_allclose(out, _reference(fn, x, t, *_text(), cond, 4, 2), atol=1e-5)


def test_windows_per_call_bounds_the_activation_memory():
  def wide(x_t, t, text_emb, text_mask, cond):  # A 64x wider intermediate, like a U-Net's.
    h = jnp.tanh(jnp.tile(x_t, (1, 1, 1, 1, 64)) * t[:, None, None, None, None])
    return h.reshape(x_t.shape + (64,)).mean(-1)

  def temp_bytes(windows_per_call):
    wrapped = multidiffusion.multidiffusion(wide, 64, 4, 0, windows_per_call)
    f = jax.jit(lambda x, t, e, m: wrapped(x, t, e, m, None))
    x = jax.ShapeDtypeStruct((B, 64, 8, 8, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((B,), jnp.float32)
    return f.lower(x, t, *_text()).compile().memory_analysis().temp_size_in_bytes

  all_at_once, one_by_one = temp_bytes(0), temp_bytes(1)
  assert one_by_one < all_at_once / 4, (one_by_one, all_at_once)  # 16 windows, 1 per call.


def test_negative_windows_per_call_raises():
  with pytest.raises(ValueError, match='windows_per_call'):
    multidiffusion.multidiffusion(_window_fn(), T, 4, 2, -1)


def test_full_sampler_with_multidiffusion():
  diff_cfg = ml_collections.ConfigDict(dict(schedule='cosine', logsnr_min=-15.0,
                                            logsnr_max=15.0, logsnr_shift=0.0, prediction='v'))
  sample_cfg = ml_collections.ConfigDict(dict(sampler='ddpm', num_steps=4, guidance=2.0, eta=0.0,
                                              seed=0, clip_x0=True))
  shape = (B, T, 3, 3, 3)
  fn = _window_fn()
  wrapped = multidiffusion.multidiffusion(fn, T, 4, 2)
  reference = lambda x_t, t, e, m, c: _reference(fn, x_t, t, e, m, c, 4, 2)
  run = jax.jit(lambda f: samplers.sample(f, jax.random.PRNGKey(0), shape, *_text(), diff_cfg,
                                          sample_cfg), static_argnums=0)
  out = run(wrapped)
  assert out.shape == shape
  # Every step must see one averaged value per frame, as with the window-by-window reference.
  np.testing.assert_allclose(out, run(reference), atol=1e-5)


def test_frame_count_mismatch_raises():
  wrapped = multidiffusion.multidiffusion(_window_fn(), T, 4, 2)
  with pytest.raises(ValueError, match='frames'):
    wrapped(_x(frames=T + 2), jnp.zeros(B), *_text(), None)


def test_seam_metric():
  frames, window, overlap = 16, 6, 2
  ramp = np.linspace(-1, 1, frames, dtype=np.float32)
  smooth = np.broadcast_to(ramp[:, None, None, None], (frames, 4, 4, 3)).copy()
  m = multidiffusion.seam_metric(smooth, window, overlap)
  np.testing.assert_allclose(m['ratio'], 1.0, rtol=1e-4)
  jumpy = smooth.copy()
  jumpy[4:] += 2.0  # jump between frames 3 and 4, where the second window starts
  assert multidiffusion.window_starts(frames, window, overlap)[1] == 4
  m = multidiffusion.seam_metric(jumpy[None], window, overlap)
  assert m['ratio'] > 3.0 and m['border'] > m['inside']
  with pytest.raises(ValueError, match='border'):
    multidiffusion.seam_metric(smooth, frames, 2)


def test_windows_of_a_sharded_batch_stay_on_their_device():
  # Batch-major window rows keep each video's windows where the video is: with the batch split
  # over 2 devices, each device runs denoise_fn on its own K windows, not on all 2K.
  mesh = jax.make_mesh((2,), ('batch',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:2])
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))
  window, overlap = 4, 2
  num_windows = len(multidiffusion.window_starts(T, window, overlap))
  fn = _window_fn()  # Reduces over each window, so window-shaped buffers exist.
  wrapped = jax.jit(lambda x, t, e, m: multidiffusion.multidiffusion(fn, T, window, overlap)(
      x, t, e, m, None), in_shardings=sharded, out_shardings=sharded)
  x, t = jax.device_put(_x(), sharded), jax.device_put(jnp.array([0.3, 0.7]), sharded)
  hlo = wrapped.lower(x, t, *_text()).compile().as_text()
  assert f'f32[{num_windows},{window},3,3,3]' in hlo  # Per device: one video's windows.
  assert f'f32[{2 * num_windows},{window},3,3,3]' not in hlo
  np.testing.assert_allclose(wrapped(x, t, *_text()),
                             _reference(fn, _x(), jnp.array([0.3, 0.7]), *_text(), None,
                                        window, overlap), atol=1e-5)
