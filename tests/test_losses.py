"""Tests for lumiere_jax.diffusion.losses."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lumiere_jax.diffusion import losses
from lumiere_jax.diffusion import schedules


def _cfg(**overrides):
  cfg = dict(schedule='cosine', logsnr_min=-15.0, logsnr_max=15.0, logsnr_shift=0.0,
             prediction='v', loss_weighting='none', cfg_dropout=0.1, t_sampling='uniform',
             t_logit_mean=0.0, t_logit_std=1.0)
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


def _batch(b=4):
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(rng.uniform(-1, 1, (b, 2, 4, 4, 3)), jnp.float32)
  emb = jnp.asarray(rng.normal(size=(b, 5, 8)), jnp.float32)
  mask = jnp.ones((b, 5), bool)
  return x0, emb, mask


def _oracle(x0, cfg):
  """Returns the exact target by inverting x_t = alpha x0 + sigma eps for the known x0."""
  def fn(x_t, t, text_emb, text_mask, cond):
    del text_emb, text_mask, cond
    alpha, sigma = schedules.alpha_sigma(t, cfg)
    eps = (x_t - schedules.expand_to(alpha, x0) * x0) / schedules.expand_to(sigma, x0)
    return schedules.target(x0, eps, alpha, sigma, cfg.prediction)
  return fn


@pytest.mark.parametrize('t_sampling', ['uniform', 'logit_normal'])
def test_loss_finite_and_positive(t_sampling):
  cfg = _cfg(t_sampling=t_sampling)
  x0, emb, mask = _batch()
  loss, aux = losses.diffusion_loss(lambda x, *_: jnp.zeros_like(x), x0, emb, mask, None,
                                    jax.random.PRNGKey(0), cfg)
  assert np.isfinite(loss) and loss > 0.1
  np.testing.assert_allclose(loss, aux['mse'])


@pytest.mark.parametrize('prediction,weighting',
                         [('v', 'none'), ('eps', 'none'), ('x0', 'none'), ('v', 'min_snr')])
def test_oracle_gives_zero_loss(prediction, weighting):
  cfg = _cfg(prediction=prediction, loss_weighting=weighting, t_sampling='logit_normal')
  x0, emb, mask = _batch()
  loss, _ = losses.diffusion_loss(_oracle(x0, cfg), x0, emb, mask, None, jax.random.PRNGKey(0),
                                  cfg)
  assert loss < 1e-6


def test_loss_mask_ignores_masked_pixels():
  cfg = _cfg()
  x0, emb, mask = _batch()
  loss_mask = jnp.zeros(x0.shape[:-1] + (1,)).at[:, 0].set(1.0)  # train on frame 0 only
  def fn(x_t, t, e, m, c):
    return _oracle(x0, cfg)(x_t, t, e, m, c).at[:, 1].add(100.0)  # garbage on masked frame
  loss, _ = losses.diffusion_loss(fn, x0, emb, mask, None, jax.random.PRNGKey(0), cfg,
                                  loss_mask=loss_mask)
  assert loss < 1e-6


def test_cfg_drop_rate_and_unconditional_input():
  b = 4000
  emb = jnp.ones((b, 3, 2))
  mask = jnp.ones((b, 3), bool)
  out_emb, out_mask = losses.cfg_drop(emb, mask, jax.random.PRNGKey(0), 0.1)
  dropped = ~np.asarray(out_mask).any(-1)
  assert abs(dropped.mean() - 0.1) < 0.02
  np.testing.assert_array_equal(np.asarray(out_emb)[dropped], 0.0)
  np.testing.assert_array_equal(np.asarray(out_emb)[~dropped], 1.0)
  np.testing.assert_array_equal(np.asarray(out_mask)[~dropped], True)
  with pytest.raises(ValueError, match='probability'):
    losses.cfg_drop(emb, mask, jax.random.PRNGKey(0), 1.5)


def test_loss_sees_dropped_captions():
  cfg = _cfg(cfg_dropout=0.5)
  x0, emb, mask = _batch(b=256)
  seen = []
  def fn(x_t, t, e, m, c):
    seen.append(m)
    return jnp.zeros_like(x_t)
  _, aux = losses.diffusion_loss(fn, x0, emb, mask, None, jax.random.PRNGKey(3), cfg)
  frac = float((~seen[0].any(-1)).mean())
  assert abs(frac - 0.5) < 0.1
  np.testing.assert_allclose(aux['cfg_drop_frac'], frac)


def test_bad_t_sampling_raises():
  x0, emb, mask = _batch()
  with pytest.raises(ValueError, match='t_sampling'):
    losses.diffusion_loss(lambda x, *_: x, x0, emb, mask, None, jax.random.PRNGKey(0),
                          _cfg(t_sampling='beta'))


def test_t_tail_draws_that_fraction_from_the_noisiest_levels():
  t = losses.sample_t(jax.random.PRNGKey(0), 20000, _cfg(t_tail_frac=0.5, t_tail_start=0.95))
  assert float(jnp.min(t)) >= 0.0 and float(jnp.max(t)) <= 1.0
  # Half from U[0.95, 1] plus 5% of the uniform half: 52.5% of the draws land there.
  assert abs(float(jnp.mean(t >= 0.95)) - 0.525) < 0.015
  plain = losses.sample_t(jax.random.PRNGKey(0), 20000, _cfg())
  assert abs(float(jnp.mean(plain >= 0.95)) - 0.05) < 0.01
  with pytest.raises(ValueError, match='t_tail_frac'):
    losses.sample_t(jax.random.PRNGKey(0), 4, _cfg(t_tail_frac=1.5, t_tail_start=0.9))


@pytest.mark.parametrize('prediction,per_x0_error', [('v', lambda snr: snr + 1.0),
                                                     ('x0', lambda snr: 1.0)])
def test_v_capped_weight_is_the_v_loss_capped_at_one_plus_gamma(prediction, per_x0_error):
  cfg = _cfg(prediction=prediction, loss_weighting='v_capped', min_snr_gamma=5.0)
  lsnr = jnp.asarray([-15.0, -2.0, 0.0, np.log(5.0), 3.0, 15.0])
  snr = np.exp(np.asarray(lsnr, np.float64))
  want = (1.0 + np.minimum(snr, 5.0)) / per_x0_error(snr)
  np.testing.assert_allclose(losses.loss_weight(lsnr, cfg), want, rtol=1e-5)
  # An x0 error of size d costs (1 + min(SNR, 5)) d^2 whatever the network predicts.
  if prediction == 'x0':
    np.testing.assert_allclose(np.asarray(losses.loss_weight(lsnr, cfg))[[0, -1]], [1.0, 6.0], rtol=1e-5)


@pytest.mark.parametrize('prediction,per_x0_error', [('v', lambda snr: snr + 1.0),
                                                     ('eps', lambda snr: snr),
                                                     ('x0', lambda snr: 1.0)])
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(prediction, per_x0_error):
  """Hang et al. 2023: the x0 error weighs min(SNR, gamma), whatever the network predicts (the
  oracle test cannot see the weights: zero error times any weight is zero)."""
  cfg = _cfg(prediction=prediction, loss_weighting='min_snr', min_snr_gamma=5.0)
  lsnr = jnp.asarray([-15.0, -2.0, 0.0, np.log(5.0), 3.0, 15.0])
  snr = np.exp(np.asarray(lsnr, np.float64))
  want = np.minimum(snr, 5.0) / per_x0_error(snr)
  np.testing.assert_allclose(losses.loss_weight(lsnr, cfg), want, rtol=1e-5)
  gamma_2 = losses.loss_weight(lsnr, _cfg(prediction=prediction, loss_weighting='min_snr',
                                          min_snr_gamma=2.0))
  np.testing.assert_allclose(gamma_2, np.minimum(snr, 2.0) / per_x0_error(snr), rtol=1e-5)
