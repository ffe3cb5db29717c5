"""The checkpoint -> jit-compiled sampler path and the video files it writes."""
import os

import jax
import numpy as np
import pytest

from lumiere_jax import sample
from lumiere_jax import video_io


@pytest.fixture(scope="module")
def sampler(trained):
  _, workdir, _ = trained
  return sample.load_sampler(str(workdir))


def test_same_inputs_same_video_and_no_recompile(sampler):
  prompts = ["a red square moves up", "a blue circle moves down", "a green triangle moves left"]
  first = sampler(prompts, seed=3)
  compiled = dict(sampler._compiled)  # pylint: disable=protected-access
  again = sampler(prompts, seed=3)
  other = sampler(prompts, seed=4)
  assert first.dtype == np.uint8 and first.shape == (3,) + sampler.video_shape
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  assert sampler._compiled == compiled  # pylint: disable=protected-access
  fn = next(iter(compiled.values()))
  assert fn._cache_size() == 1  # pylint: disable=protected-access


def test_bad_inputs_are_clear_errors(sampler):
  with pytest.raises(ValueError, match="(?i)empty prompt"):
    sampler(["   "])
  with pytest.raises(ValueError, match="strength"):
    sampler(["a red square moves up"], strength=1.5)
  with pytest.raises(ValueError, match="cond"):
    sampler(["a red square moves up"], cond=np.zeros((1,) + sampler.video_shape[:3] + (4,)))
  with pytest.raises(ValueError, match="unknown sample settings"):
    sampler(["a red square moves up"], guidanse=2.0)
  for ignored in ("batch_size", "use_ema"):  # config.sample keys, but not per-call settings.
    with pytest.raises(ValueError, match=f"unknown sample settings \\['{ignored}'\\]"):
      sampler(["a red square moves up"], **{ignored: 1})


def test_replace_swaps_the_params_and_shares_the_compiled_functions(sampler):
  prompts = ["a red square moves up"]
  first = sampler(prompts, seed=0)
  zeroed = sampler.replace(jax.tree.map(lambda p: p * 0, sampler.params), step=123)
  assert zeroed.step == 123 and sampler.step != 123
  assert zeroed._compiled is sampler._compiled  # pylint: disable=protected-access
  fn = next(iter(sampler._compiled.values()))  # pylint: disable=protected-access
  cache_size = fn._cache_size()  # pylint: disable=protected-access
  assert not np.array_equal(zeroed(prompts, seed=0), first)
  assert fn._cache_size() == cache_size  # pylint: disable=protected-access  # No recompile.
  np.testing.assert_array_equal(sampler(prompts, seed=0), first)  # The original is untouched.


def test_missing_checkpoint_step_is_a_clear_error(trained):
  _, workdir, _ = trained
  with pytest.raises(FileNotFoundError, match="step 999 not found"):
    sample.load_sampler(str(workdir), step=999)


def test_write_videos_writes_mp4_gif_and_grid(tmp_path):
  videos = np.random.default_rng(0).integers(0, 255, (2, 4, 16, 16, 3), dtype=np.uint8)
  sample.write_videos(videos, ["a red square", "a red square"], str(tmp_path), fps=8)
  names = sorted(os.listdir(tmp_path))
  assert names == ["a_red_square.gif", "a_red_square.mp4", "a_red_square_1.gif",
                   "a_red_square_1.mp4", "grid.png", "prompts.txt"]
  decoded = video_io.read_video(str(tmp_path / "a_red_square.mp4"), 4, 16)
  assert decoded.shape == (4, 16, 16, 3)
