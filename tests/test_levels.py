"""Tests for the per-noise-level denoising probe (lumiere_jax.evaluate.levels)."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lumiere_jax import video_io
from lumiere_jax.data import render
from lumiere_jax.diffusion import schedules
from lumiere_jax.evaluate import levels


def _clips(n=4, frames=4, res=16):
  rng = np.random.default_rng(0)
  attrs = [render.sample_attributes(rng, "simple") for _ in range(n)]
  return (np.stack([render.render_clip(a, frames, res) for a in attrs]),
          [render.make_caption(a, rng) for a in attrs])


def _config(cond_channels=0):
  diffusion = dict(schedule="cosine", logsnr_min=-15.0, logsnr_max=15.0, logsnr_shift=0.0,
                   prediction="v")
  return ml_collections.ConfigDict(dict(model=dict(cond_channels=cond_channels),
                                        data=dict(max_text_len=8), diffusion=diffusion))


class _Tokenizer:
  def encode(self, captions, max_len):
    return np.zeros((len(captions), max_len), np.int32), np.ones((len(captions), max_len), bool)


class _Model:
  """Stands in for a checkpoint: predicts v from `fn(x_t, t)` (a flax module's apply interface)."""

  def __init__(self, fn):
    self.fn = fn

  def apply(self, variables, *args, method):
    del variables
    return method(*args)

  def encode_text(self, tokens, mask):
    return jnp.zeros(tokens.shape + (4,))

  def denoise(self, x_t, t, emb, mask):
    return self.fn(x_t, t)


def _errors(fn, videos, captions):
  return levels.denoising_errors(_Model(fn), {}, _Tokenizer(), _config(), videos, captions,
                                 t_values=(0.02, 0.3, 0.9))


def test_a_perfect_denoiser_has_no_error_and_the_input_gets_noisier():
  videos, captions = _clips()
  x0 = jnp.asarray(video_io.to_float(videos))
  cfg = _config().diffusion

  def oracle(x_t, t):  # The exact v for the known clean clips.
    alpha, sigma = (schedules.expand_to(a, x_t) for a in schedules.alpha_sigma(t, cfg))
    return alpha * (x_t - alpha * x0) / sigma - sigma * x0

  rows = _errors(oracle, videos, captions)
  assert [r["t"] for r in rows] == pytest.approx([0.02, 0.3, 0.9])
  for r in rows:
    assert r["loss"] < 1e-6 and r["background_error"] < 0.5 and r["object_error"] < 0.5
  noisy = [r["input_background_error"] for r in rows]
  assert noisy[0] < 5.0 < noisy[1] < noisy[2]


def test_a_model_that_does_not_denoise_keeps_its_input_noise():
  """v = 0 returns alpha * x_t: at low noise its estimate is about as noisy as the input."""
  videos, captions = _clips()
  rows = _errors(lambda x_t, t: jnp.zeros_like(x_t), videos, captions)
  low = rows[0]
  assert low["loss"] > 0.5
  assert low["background_error"] > 0.8 * low["input_background_error"] > 0.5


def test_needs_a_text_to_video_checkpoint_and_an_object():
  videos, captions = _clips(n=2)
  with pytest.raises(ValueError, match="text-to-video"):
    levels.predict_at_level(_Model(None), _config(cond_channels=4))
  with pytest.raises(ValueError, match="no object"):
    _errors(lambda x_t, t: x_t, np.zeros_like(videos), captions)
