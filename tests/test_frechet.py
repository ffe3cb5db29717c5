"""Tests for lumiere_jax.evaluate.frechet."""
import numpy as np
import pytest
from scipy import linalg

from lumiere_jax.evaluate import frechet


def _gaussian(rng, num, dim, shift=0.0):
  mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
  return rng.normal(size=(num, dim)) @ mix + shift


def test_matches_direct_scipy_computation():
  rng = np.random.default_rng(0)
  mu1, sigma1 = frechet.stats(_gaussian(rng, 200, 8))
  mu2, sigma2 = frechet.stats(_gaussian(rng, 200, 8, shift=0.5))
  direct = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2)
            - 2 * np.trace(linalg.sqrtm(sigma1 @ sigma2).real))
  assert frechet.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(direct, rel=1e-6)
  np.testing.assert_allclose(mu1, np.mean(_gaussian(np.random.default_rng(0), 200, 8), 0))


def test_equal_distributions_are_close():
  rng = np.random.default_rng(1)
  mu, sigma = frechet.stats(_gaussian(rng, 100, 6))
  assert frechet.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
  # Two samples of one distribution: only sampling error remains.
  x, y = rng.normal(size=(2, 4000, 4))
  assert frechet.frechet_distance(*frechet.stats(x), *frechet.stats(y)) < 0.02


def test_shifted_mean_gives_squared_shift():
  rng = np.random.default_rng(2)
  mu, sigma = frechet.stats(_gaussian(rng, 100, 5))
  shift = rng.normal(size=5)
  assert frechet.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(
      shift @ shift, rel=1e-5)


def test_scalar_gaussians():
  # (0 - 2)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 5.
  assert frechet.frechet_distance(0.0, 1.0, 2.0, 4.0) == pytest.approx(5.0)


def test_singular_covariances_are_finite():
  zero = np.zeros((4, 4))
  assert frechet.frechet_distance(np.zeros(4), zero, np.ones(4), zero) == pytest.approx(4.0,
                                                                                       abs=1e-4)


def test_few_samples_warn_and_one_sample_raises():
  rng = np.random.default_rng(3)
  with pytest.warns(UserWarning, match='unreliable'):
    mu, sigma = frechet.stats(rng.normal(size=(5, 16)))
  assert np.isfinite(frechet.frechet_distance(mu, sigma, mu + 1, sigma))
  with pytest.raises(ValueError, match='at least 2'):
    frechet.stats(rng.normal(size=(1, 4)))
  with pytest.raises(ValueError):
    frechet.stats(rng.normal(size=(4,)))


def test_mismatched_shapes_raise():
  with pytest.raises(ValueError):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
