"""Tests for lumiere_jax.diffusion.samplers."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lumiere_jax.diffusion import samplers
from lumiere_jax.diffusion import schedules

SHAPE = (2, 3, 4, 4, 3)


def _diff_cfg(prediction='v'):
  return ml_collections.ConfigDict(dict(schedule='cosine', logsnr_min=-15.0, logsnr_max=15.0,
                                        logsnr_shift=0.0, prediction=prediction))


def _sample_cfg(**overrides):
  cfg = dict(sampler='ddim', num_steps=8, guidance=1.0, eta=0.0, seed=0, clip_x0=True)
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


def _text(b=SHAPE[0]):
  emb = jnp.asarray(np.random.default_rng(1).normal(size=(b, 5, 4)), jnp.float32)
  return emb, jnp.ones((b, 5), bool)


def _video(seed, shape=SHAPE):
  return jnp.asarray(np.random.default_rng(seed).uniform(-0.9, 0.9, shape), jnp.float32)


def _oracle(x_star, diff_cfg):
  """Denoiser for a dataset holding the single point x_star: returns its exact prediction."""
  def fn(x_t, t, text_emb, text_mask, cond):
    del text_emb, text_mask, cond
    alpha, sigma = schedules.alpha_sigma(t, diff_cfg)
    eps = (x_t - schedules.expand_to(alpha, x_t) * x_star) / schedules.expand_to(sigma, x_t)
    return schedules.target(x_star, eps, alpha, sigma, diff_cfg.prediction)
  return fn


def _gaussian_oracle(mu, std, diff_cfg):
  """Exact v for data x0 ~ N(mu, std^2) per pixel: E[x0 | x_t] is linear in x_t."""
  def fn(x_t, t, text_emb, text_mask, cond):
    del text_emb, text_mask, cond
    alpha, sigma = (schedules.expand_to(a, x_t) for a in schedules.alpha_sigma(t, diff_cfg))
    x0 = mu + alpha * std**2 / (alpha**2 * std**2 + sigma**2) * (x_t - alpha * mu)
    return alpha * (x_t - alpha * x0) / sigma - sigma * x0
  return fn


def _text_fn(calls=None):
  """Toy denoiser whose output depends on the caption (zero when unconditional)."""
  def fn(x_t, t, text_emb, text_mask, cond):
    if calls is not None:
      calls.append(x_t.shape[0])
    c = (text_emb * text_mask[..., None]).mean(axis=(1, 2))
    return 0.3 * x_t + schedules.expand_to(c, x_t) + 0.1 * schedules.expand_to(t, x_t)
  return fn


@pytest.mark.parametrize('sampler', ['ddim', 'dpmpp_2m'])
@pytest.mark.parametrize('prediction', ['v', 'eps', 'x0'])
def test_deterministic_oracle_recovers_data_point(prediction, sampler):
  diff_cfg = _diff_cfg(prediction)
  x_star = _video(0)
  out = samplers.sample(_oracle(x_star, diff_cfg), jax.random.PRNGKey(0), SHAPE, *_text(),
                        diff_cfg, _sample_cfg(sampler=sampler, num_steps=4))
  np.testing.assert_allclose(out, x_star, atol=1e-4)


def test_ddpm_oracle_recovers_data_point():
  diff_cfg = _diff_cfg()
  x_star = _video(0)
  out = samplers.sample(_oracle(x_star, diff_cfg), jax.random.PRNGKey(0), SHAPE, *_text(),
                        diff_cfg, _sample_cfg(sampler='ddpm', num_steps=6))
  np.testing.assert_allclose(out, x_star, atol=1e-3)


@pytest.mark.parametrize('sampler', ['ddim', 'ddpm', 'dpmpp_2m'])
def test_gaussian_data_statistics(sampler):
  """With the exact denoiser for N(mu, std^2) data, samples must have that mean and std.

  Ancestral sampling underestimates the std with few steps (0.46 at 50 steps, 0.49 at 200),
  so this uses many steps; they are cheap inside one scan.
  """
  diff_cfg = _diff_cfg()
  mu, std = 0.3, 0.5
  shape = (4, 4, 8, 8, 3)
  out = samplers.sample(_gaussian_oracle(mu, std, diff_cfg), jax.random.PRNGKey(1), shape,
                        *_text(4), diff_cfg,
                        _sample_cfg(sampler=sampler, num_steps=400, clip_x0=False))
  out = np.asarray(out)
  assert abs(out.mean() - mu) < 0.03
  assert abs(out.std() - std) < 0.03


def test_jit_compiles_once_and_is_deterministic():
  diff_cfg, sample_cfg = _diff_cfg(), _sample_cfg(sampler='ddpm', guidance=2.0)
  traces = []
  fn = jax.jit(lambda rng, emb, mask: samplers.sample(_text_fn(traces), rng, SHAPE, emb, mask,
                                                      diff_cfg, sample_cfg))
  emb, mask = _text()
  a = fn(jax.random.PRNGKey(0), emb, mask)
  b = fn(jax.random.PRNGKey(0), emb, mask)
  c = fn(jax.random.PRNGKey(1), emb + 1.0, mask)
  assert len(traces) == 1  # denoise_fn traced once: one scan body, one compilation.
  assert traces == [2 * SHAPE[0]]  # conditional and unconditional as one doubled batch
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_guidance():
  diff_cfg = _diff_cfg()
  emb, mask = _text()
  rng = jax.random.PRNGKey(3)
  run = lambda g, e=emb, m=mask, calls=None: samplers.sample(
      _text_fn(calls), rng, SHAPE, e, m, diff_cfg, _sample_cfg(guidance=g))
  calls = []
  plain = run(1.0, calls=calls)
  assert calls == [SHAPE[0]]  # guidance 1 does not double the batch
  # The doubled path at guidance ~1 reproduces the plain conditional sample...
  np.testing.assert_allclose(run(1.0 + 1e-6), plain, atol=1e-4)
  # ...guidance 0 is the unconditional sample, and guidance 3 differs from both.
  uncond = run(1.0, jnp.zeros_like(emb), jnp.zeros_like(mask))
  np.testing.assert_allclose(run(0.0), uncond, atol=1e-5)
  guided = run(3.0)
  assert np.abs(np.asarray(guided) - np.asarray(plain)).max() > 1e-2


def test_sdedit():
  diff_cfg, sample_cfg = _diff_cfg(), _sample_cfg(num_steps=10, clip_x0=False)
  x_init = _video(5)
  fn = _gaussian_oracle(0.0, 0.5, diff_cfg)
  run = lambda t_start: np.asarray(samplers.sample(fn, jax.random.PRNGKey(0), SHAPE, *_text(),
                                                   diff_cfg, sample_cfg, x_init=x_init,
                                                   t_start=t_start))
  np.testing.assert_array_equal(run(0.0), x_init)
  near, far = np.abs(run(0.05) - x_init).mean(), np.abs(run(1.0) - x_init).mean()
  assert near < 0.1 and far > 0.4
  with pytest.raises(ValueError, match='x_init'):
    samplers.sample(fn, jax.random.PRNGKey(0), SHAPE, *_text(), diff_cfg, sample_cfg,
                    t_start=0.5)


@pytest.mark.parametrize('sampler', ['ddim', 'ddpm', 'dpmpp_2m'])
def test_known_pixels_reproduced(sampler):
  diff_cfg = _diff_cfg()
  x_known = _video(7)
  mask = jnp.asarray(np.random.default_rng(8).integers(0, 2, SHAPE[:-1] + (1,)), jnp.float32)
  out = np.asarray(samplers.sample(_text_fn(), jax.random.PRNGKey(0), SHAPE, *_text(), diff_cfg,
                                   _sample_cfg(sampler=sampler), known=(x_known, mask)))
  keep = np.broadcast_to(np.asarray(mask) > 0.5, SHAPE)
  np.testing.assert_array_equal(out[keep], np.asarray(x_known)[keep])
  assert np.abs(out[~keep] - np.asarray(x_known)[~keep]).mean() > 0.1


def test_dpm_solver_needs_half_the_steps_of_ddim_on_the_probability_flow_ode():
  """Both solvers integrate the same ODE from the same noise (Gaussian data: exact denoiser; no
  clipping). Against the converged solution (4000 DPM-Solver steps), N DPM-Solver++(2M) steps
  must beat 2N DDIM steps. Measured max errors, N = 8 / 16 / 32: DPM 0.11 / 0.0045 / 0.0082,
  DDIM at 2N 0.14 / 0.069 / 0.035; not 1/N^2 throughout, because the first step (first order,
  from pure noise, where the cosine log-SNR jumps by ~9) shrinks only slowly with N."""
  diff_cfg = _diff_cfg()
  fn = _gaussian_oracle(0.3, 0.5, diff_cfg)
  run = lambda sampler, n: np.asarray(samplers.sample(
      fn, jax.random.PRNGKey(2), SHAPE, *_text(), diff_cfg,
      _sample_cfg(sampler=sampler, num_steps=n, clip_x0=False)), np.float64)
  converged = run('dpmpp_2m', 4000)
  error = lambda sampler, n: np.abs(run(sampler, n) - converged).max()
  for n in (8, 16, 32):
    assert error('dpmpp_2m', n) < error('ddim', 2 * n), n
  assert error('dpmpp_2m', 16) < error('ddim', 16) / 10


def test_bad_arguments_raise():
  diff_cfg = _diff_cfg()
  with pytest.raises(ValueError, match='sampler'):
    samplers.sample(_text_fn(), jax.random.PRNGKey(0), SHAPE, *_text(), diff_cfg,
                    _sample_cfg(sampler='euler'))
  with pytest.raises(ValueError, match='t_start'):
    samplers.sample(_text_fn(), jax.random.PRNGKey(0), SHAPE, *_text(), diff_cfg,
                    _sample_cfg(), x_init=_video(0), t_start=1.5)


def test_logsnr_spacing_is_equal_steps_in_logsnr():
  diff_cfg = _diff_cfg()
  ts = samplers.time_grid(1.0, 8, 'logsnr', diff_cfg)
  assert float(ts[0]) == 1.0 and float(ts[-1]) == 0.0
  assert np.all(np.diff(np.asarray(ts)) < 0)
  steps = np.diff(np.asarray(schedules.logsnr(ts, diff_cfg)))
  np.testing.assert_allclose(steps, steps[0], rtol=1e-2)
  np.testing.assert_allclose(samplers.time_grid(1.0, 4, 'uniform', diff_cfg),
                             [1.0, 0.75, 0.5, 0.25, 0.0])
  with pytest.raises(ValueError, match='sample.spacing'):
    samplers.time_grid(1.0, 4, 'cosine', diff_cfg)
