"""Variance-preserving noise schedules in continuous time, parameterised by log-SNR.

Working in log-SNR makes the cosine, linear and shifted schedules one code path:
alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr), so alpha^2 + sigma^2 = 1 exactly.
t = 0 is (almost) clean data, t = 1 is (almost) pure noise.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax import errors

SCHEDULES = ('cosine', 'linear')
PREDICTIONS = ('v', 'eps', 'x0')

# Imagen/DDPM linear betas, made continuous by interpolating their log-SNR over t in [0, 1].
_LINEAR_BETA_START = 1e-4
_LINEAR_BETA_END = 0.02
_LINEAR_STEPS = 1000


@functools.lru_cache(maxsize=None)
def _linear_logsnr_table():
  """Log-SNR of the discrete DDPM linear schedule at its 1000 steps (float64, host side)."""
  betas = np.linspace(_LINEAR_BETA_START, _LINEAR_BETA_END, _LINEAR_STEPS, dtype=np.float64)
  alphas_cumprod = np.cumprod(1.0 - betas)
  return np.log(alphas_cumprod) - np.log1p(-alphas_cumprod)


def _cosine_logsnr(t, logsnr_min, logsnr_max):
  """Cosine schedule (Nichol & Dhariwal) truncated so that logsnr(0)=max and logsnr(1)=min."""
  b = np.arctan(np.exp(-0.5 * logsnr_max))
  a = np.arctan(np.exp(-0.5 * logsnr_min)) - b
  return -2.0 * jnp.log(jnp.tan(a * t + b))


def logsnr(t, diff_cfg):
  """Log signal-to-noise ratio log(alpha^2 / sigma^2) at continuous time t in [0, 1].

  Monotonically decreasing in t. `logsnr_shift` is added after clipping to
  [logsnr_min, logsnr_max], as in simple diffusion (shift = 2*log(base_res/res) adds noise at
  higher resolutions), so a non-zero shift also moves the endpoints.
  """
  lo, hi = float(diff_cfg.logsnr_min), float(diff_cfg.logsnr_max)
  if not lo < hi:
    raise errors.UserError(f'logsnr_min must be < logsnr_max, got {lo} and {hi}')
  t = jnp.asarray(t, jnp.float32)
  if diff_cfg.schedule == 'cosine':
    out = _cosine_logsnr(t, lo, hi)
  elif diff_cfg.schedule == 'linear':
    table = _linear_logsnr_table()
    grid = np.linspace(0.0, 1.0, table.shape[0])
    out = jnp.interp(t, grid.astype(np.float32), table.astype(np.float32))
  else:
    raise errors.UserError(f'diffusion.schedule must be one of {SCHEDULES}, '
                           f'got {diff_cfg.schedule!r}')
  return jnp.clip(out, lo, hi) + float(diff_cfg.logsnr_shift)


def alpha_sigma_from_logsnr(lsnr):
  """Variance-preserving (alpha, sigma) for a log-SNR; sigmoid keeps both accurate at extremes."""
  return jnp.sqrt(jax.nn.sigmoid(lsnr)), jnp.sqrt(jax.nn.sigmoid(-lsnr))


def alpha_sigma(t, diff_cfg):
  """Signal and noise scales at time t: x_t = alpha * x0 + sigma * eps, alpha^2 + sigma^2 = 1."""
  return alpha_sigma_from_logsnr(logsnr(t, diff_cfg))


def expand_to(a, x):
  """Right-pads per-example scalars (B,) with singleton dims so they broadcast against x."""
  a = jnp.asarray(a)
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def _check_prediction(prediction):
  if prediction not in PREDICTIONS:
    raise errors.UserError(f'prediction must be one of {PREDICTIONS}, got {prediction!r}')


def pred_to_x0_eps(pred, x_t, alpha, sigma, prediction):
  """Converts a network output of type `prediction` into (x0, eps) estimates.

  alpha and sigma may be per-example (B,) or already broadcastable to x_t.
  """
  _check_prediction(prediction)
  alpha, sigma = expand_to(alpha, x_t), expand_to(sigma, x_t)
  if prediction == 'v':
    return alpha * x_t - sigma * pred, sigma * x_t + alpha * pred
  if prediction == 'eps':
    return (x_t - sigma * pred) / alpha, pred
  return pred, (x_t - alpha * pred) / sigma


def target(x0, eps, alpha, sigma, prediction):
  """The regression target for a prediction type: v = alpha*eps - sigma*x0, eps, or x0."""
  _check_prediction(prediction)
  if prediction == 'v':
    return expand_to(alpha, x0) * eps - expand_to(sigma, x0) * x0
  if prediction == 'eps':
    return eps
  return x0


def noise(rng, shape, dtype=jnp.float32):
  """Standard normal noise of any shape, drawn per example (one key per row of dim 0).

  Per example, so a batch sharded over devices draws its noise where it lives instead of
  materializing one global draw on every chip; drawn flat and reshaped, which compiles faster
  than a rank >= 4 draw (docs/benchmarks.md, "Measurements behind the design").
  """
  shape = tuple(shape)
  if len(shape) < 2:
    return jax.random.normal(rng, shape, dtype)
  return example_noise(jax.random.split(rng, shape[0]), shape, dtype)


def example_noise(keys, shape, dtype=jnp.float32):
  """Noise of `shape` whose row i is drawn from `keys[i]` alone, so a row's noise does not
  depend on the batch it is in (the sampler's per-prompt keys)."""
  shape = tuple(shape)
  size = int(np.prod(shape[1:]))
  draw = lambda key: jax.random.normal(key, (size,), dtype).reshape(shape[1:])
  return jax.vmap(draw)(keys)
