"""Tests for lumiere_jax.diffusion.conditioning."""
import jax.numpy as jnp
import numpy as np
import pytest

from lumiere_jax.diffusion import conditioning

H, W, T = 4, 5, 3


def _image(batch=()):
  return np.random.default_rng(0).uniform(-1, 1, batch + (H, W, 3)).astype(np.float32)


def test_image_to_video():
  image = _image()
  cond = np.asarray(conditioning.image_to_video(image, T))
  assert cond.shape == (1, T, H, W, 4)
  np.testing.assert_array_equal(cond[0, 0, ..., :3], image)
  np.testing.assert_array_equal(cond[0, 0, ..., 3], 1.0)
  np.testing.assert_array_equal(cond[0, 1:], 0.0)
  assert conditioning.image_to_video(_image((2,)), T).shape == (2, T, H, W, 4)


@pytest.mark.parametrize('mask_shape', [(H, W), (T, H, W)])
def test_inpainting(mask_shape):
  video = np.random.default_rng(1).uniform(-1, 1, (T, H, W, 3)).astype(np.float32)
  keep = np.random.default_rng(2).integers(0, 2, mask_shape)
  cond = np.asarray(conditioning.inpainting(video, keep))
  assert cond.shape == (1, T, H, W, 4)
  m = np.broadcast_to(keep, (T, H, W)).astype(np.float32)
  np.testing.assert_array_equal(cond[0, ..., 3], m)
  np.testing.assert_array_equal(cond[0, ..., :3], video * m[..., None])
  x_known, mask = conditioning.split_cond(cond)
  assert x_known.shape == (1, T, H, W, 3) and mask.shape == (1, T, H, W, 1)


def test_cinemagraph_freezes_outside_region():
  image = _image()
  animate = np.zeros((H, W), np.int32)
  animate[1:3, 2:4] = 1
  cond = np.asarray(conditioning.cinemagraph(image, animate, T))
  assert cond.shape == (1, T, H, W, 4)
  for f in range(T):
    np.testing.assert_array_equal(cond[0, f, ..., 3], 1 - animate)
    np.testing.assert_array_equal(cond[0, f, ..., :3], image * (1 - animate)[..., None])


def test_validate_mask():
  np.testing.assert_array_equal(conditioning.validate_mask(np.ones((2, 3), bool), (2, 3)), 1.0)
  with pytest.raises(ValueError, match='shape'):
    conditioning.validate_mask(np.ones((2, 4)), (2, 3))
  with pytest.raises(ValueError, match='binary'):
    conditioning.validate_mask(np.full((2, 3), 0.5), (2, 3))
  with pytest.raises(ValueError, match='shape'):
    conditioning.inpainting(np.zeros((T, H, W, 3)), np.ones((H + 1, W)))
  with pytest.raises(ValueError, match='binary'):
    conditioning.cinemagraph(_image(), np.full((H, W), 2), T)
  with pytest.raises(ValueError, match='3 channels'):
    conditioning.image_to_video(np.zeros((H, W, 4)), T)
  with pytest.raises(ValueError, match='num_frames'):
    conditioning.image_to_video(_image(), 0)


def test_upsample_video():
  video = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, T, H, W, 3)), jnp.float32)
  near = np.asarray(conditioning.upsample_video(video, 2))
  assert near.shape == (2, T, 2 * H, 2 * W, 3)
  np.testing.assert_array_equal(near[:, :, ::2, ::2], video)
  np.testing.assert_array_equal(near[:, :, 1::2, 1::2], video)
  bil = np.asarray(conditioning.upsample_video(video, 2, 'bilinear'))
  assert bil.shape == near.shape
  np.testing.assert_allclose(bil.mean(axis=(2, 3)), np.asarray(video).mean(axis=(2, 3)),
                             atol=0.05)
  const = conditioning.upsample_video(jnp.full((1, 1, 2, 2, 3), 0.25), 4, 'bilinear')
  np.testing.assert_allclose(const, 0.25, atol=1e-6)
  with pytest.raises(ValueError, match='factor'):
    conditioning.upsample_video(video, 0)
  with pytest.raises(ValueError, match='method'):
    conditioning.upsample_video(video, 2, 'bicubic')
