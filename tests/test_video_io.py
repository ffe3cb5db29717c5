"""The one uint8 <-> [-1, 1] conversion, for numpy arrays and inside jit."""
import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax import video_io


def test_uint8_float_round_trip_in_numpy_and_under_jit():
  pixels = np.arange(256, dtype=np.uint8).reshape(1, 4, 8, 8, 1)
  as_float = video_io.to_float(pixels)
  assert isinstance(as_float, np.ndarray) and as_float.dtype == np.float32
  assert as_float.min() == -1.0 and as_float.max() == 1.0
  np.testing.assert_array_equal(video_io.to_uint8(as_float), pixels)
  traced = jax.jit(video_io.to_float)(jnp.asarray(pixels))
  np.testing.assert_allclose(np.asarray(traced), as_float, atol=2e-7)
  np.testing.assert_array_equal(np.asarray(jax.jit(video_io.to_uint8)(traced)), pixels)


def test_to_uint8_clips_and_rounds():
  out = video_io.to_uint8(np.array([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0], np.float32))
  np.testing.assert_array_equal(out, [0, 0, 128, 255, 255, 255])
