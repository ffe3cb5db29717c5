"""Frechet distance between Gaussians fitted to features: the core of FID and FVD.

d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), computed as in the reference
FID implementation (pytorch-fid / TTUR): float64, an `eps` ridge on both covariances when the
product is singular or its square root not finite, and tiny imaginary parts from round-off dropped.
"""
import warnings

import numpy as np
from scipy import linalg


def stats(features):
  """Mean (D,) and covariance (D, D) of `features` (N, D), in float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2:
    raise ValueError(f"Expected features of shape (N, D), got {features.shape}.")
  num, dim = features.shape
  if num < 2:
    raise ValueError(f"Need at least 2 samples to estimate a covariance, got {num}.")
  if num < dim:
    warnings.warn(f"Only {num} samples for {dim}-dim features: the covariance is singular and "
                  "the Frechet distance unreliable (biased upwards).", stacklevel=2)
  return features.mean(0), np.cov(features, rowvar=False).reshape(dim, dim)


def _sqrtm(matrix):
  """Matrix square root, or None when scipy finds `matrix` singular or the root is not finite."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", linalg.LinAlgWarning)
    try:
      root = linalg.sqrtm(matrix)
    except linalg.LinAlgWarning:
      return None
  return root if np.isfinite(root).all() else None


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  dim = mu1.shape[0]
  shapes = (mu1.shape, mu2.shape, sigma1.shape, sigma2.shape)
  if shapes != ((dim,), (dim,), (dim, dim), (dim, dim)):
    raise ValueError(f"Mismatched statistics shapes (mu1, mu2, sigma1, sigma2): {shapes}.")
  diff = mu1 - mu2
  covmean = _sqrtm(sigma1 @ sigma2)
  if covmean is None:
    offset = np.eye(dim) * eps
    covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"Matrix square root has an imaginary part of "
                       f"{np.max(np.abs(covmean.imag)):.3g}; covariances are not PSD.")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
