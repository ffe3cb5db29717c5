"""Tests for lumiere_jax.diffusion.schedules."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lumiere_jax.diffusion import schedules


def _cfg(schedule='cosine', shift=0.0):
  return ml_collections.ConfigDict(dict(schedule=schedule, logsnr_min=-15.0, logsnr_max=15.0,
                                        logsnr_shift=shift, prediction='v'))


@pytest.mark.parametrize('schedule', ['cosine', 'linear'])
def test_variance_preserving_and_monotone(schedule):
  t = jnp.linspace(0.0, 1.0, 1001)
  alpha, sigma = schedules.alpha_sigma(t, _cfg(schedule))
  np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
  lsnr = np.asarray(schedules.logsnr(t, _cfg(schedule)))
  assert np.all(np.diff(lsnr) < 0)
  assert np.all(np.diff(np.asarray(alpha)) <= 0)


def test_endpoints():
  cos = _cfg('cosine')
  np.testing.assert_allclose(schedules.logsnr(jnp.array([0.0, 1.0]), cos), [15.0, -15.0],
                             atol=1e-3)
  # Linear: the DDPM table's first and last steps, beta 1e-4 .. 0.02 over 1000 steps.
  acp = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
  expected = np.log(acp[[0, -1]] / (1.0 - acp[[0, -1]]))
  np.testing.assert_allclose(schedules.logsnr(jnp.array([0.0, 1.0]), _cfg('linear')), expected,
                             rtol=1e-4)
  # Cosine midpoint of the untruncated schedule is logSNR 0 (alpha = sigma).
  np.testing.assert_allclose(schedules.logsnr(0.5, cos), 0.0, atol=1e-3)


def test_shift_adds_noise():
  t = jnp.linspace(0.0, 1.0, 11)
  shift = 2.0 * np.log(64 / 128)
  np.testing.assert_allclose(schedules.logsnr(t, _cfg(shift=shift)),
                             schedules.logsnr(t, _cfg()) + shift, atol=1e-5)


def test_bad_config_raises():
  with pytest.raises(ValueError, match='schedule'):
    schedules.logsnr(0.5, _cfg('quadratic'))
  with pytest.raises(ValueError, match='prediction'):
    schedules.target(jnp.zeros(2), jnp.zeros(2), 1.0, 0.0, 'score')


@pytest.mark.parametrize('prediction', ['v', 'eps', 'x0'])
def test_prediction_round_trip(prediction):
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(rng.uniform(-1, 1, (4, 2, 3, 3, 3)), jnp.float32)
  eps = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
  t = jnp.asarray(rng.uniform(0.05, 0.95, (4,)), jnp.float32)
  alpha, sigma = schedules.alpha_sigma(t, _cfg())
  x_t = schedules.expand_to(alpha, x0) * x0 + schedules.expand_to(sigma, x0) * eps
  pred = schedules.target(x0, eps, alpha, sigma, prediction)
  x0_hat, eps_hat = schedules.pred_to_x0_eps(pred, x_t, alpha, sigma, prediction)
  np.testing.assert_allclose(x0_hat, x0, atol=1e-4)
  np.testing.assert_allclose(eps_hat, eps, atol=1e-4)


def test_noise_is_standard_normal_per_example():
  x = schedules.noise(jax.random.PRNGKey(0), (64, 4, 8, 8, 3))
  assert x.shape == (64, 4, 8, 8, 3) and x.dtype == jnp.float32
  assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02
  assert not np.allclose(x[0], x[1])  # Examples get different noise.
  assert schedules.noise(jax.random.PRNGKey(0), (5,)).shape == (5,)


def test_noise_of_a_sharded_batch_is_drawn_where_each_example_lives():
  # One flat draw over the global batch made every device compute all of its random bits
  # (a v5e pod compile of the SSR step: 48 GiB buffers per chip). Per example, each device
  # draws only its own rows.
  mesh = jax.make_mesh((2,), ('batch',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:2])
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))
  shape = (8, 4, 8, 8, 3)
  draw = jax.jit(lambda k: schedules.noise(k, shape), out_shardings=sharded)
  hlo = draw.lower(jax.random.PRNGKey(0)).compile().as_text()
  total = int(np.prod(shape))
  assert f'[{total}]' not in hlo and f'{total // 2}]' not in hlo  # No flat global draw.
  np.testing.assert_array_equal(draw(jax.random.PRNGKey(0)),
                                schedules.noise(jax.random.PRNGKey(0), shape))
