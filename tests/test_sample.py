"""The checkpoint -> jit-compiled sampler path and the video files it writes."""
import os

import jax
import numpy as np
import pytest

from lumiere_jax import sample
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import video_io
from lumiere_jax.diffusion import multidiffusion


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


def _on(sampler, devices, mesh_shape, batch_size=None, gather_params=False):
  """The sampler's model and params on a mesh of `devices` (and another chunk size)."""
  config = sampler.config.copy_and_resolve_references()
  config.mesh.update(shape=mesh_shape, gather_params=gather_params)
  config.sample.batch_size = batch_size or config.sample.batch_size
  return sample.Sampler(config, sampler.model, sampler.params, sampler.tokenizer,
                        mesh=sharding_lib.create_mesh(config.mesh, devices))


# Max grey-level difference between videos sampled on 8 devices and on 1. Sharded, each device
# runs the model on its own rows (another batch size per convolution), so XLA's CPU kernels sum
# in another order: float32 rounding of ~1e-6, carried through the sampling steps, moves a few
# pixels across a uint8 rounding boundary. Measured on a 1000-step tiny.py run (8 grid prompts,
# 8 x 32 x 32 frames, DDIM 32 steps): data 8 x 1 and fsdp 4 x 2 with gathered params both differ
# from one device by at most 1 level in 0.0005% of the values.
UINT8_ATOL, MAX_DIFFERENT = 1, 0.01


def test_eight_devices_give_the_videos_of_one_device(sampler):
  """Data parallel (8 x 1) and FSDP with gathered params (4 x 2) vs. one device in chunks of 2:
  each prompt's video depends on the seed and its index only. 5 prompts: the 8-row chunk is
  padded, the 2-row chunks are 3."""
  prompts = ["a red square moves up", "a blue circle moves down", "a green triangle moves left",
             "a yellow circle moves right", "a red circle moves up"]
  one = _on(sampler, jax.devices()[:1], (1, 1), batch_size=2)(prompts, seed=7)
  for shape, gather in (((8, 1), False), ((4, 2), True)):
    sharded = _on(sampler, jax.devices(), shape, gather_params=gather)
    kernel = sharded.params["unet"]["down_1_res_0"]["conv_2"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(
        None, None, None, "fsdp" if shape[1] > 1 else None)
    videos = sharded(prompts, seed=7)
    diff = np.abs(videos.astype(int) - one.astype(int))
    assert diff.max() <= UINT8_ATOL and (diff > 0).mean() < MAX_DIFFERENT, (shape, diff.max())
  # A prompt's video does not depend on the prompts after it.
  np.testing.assert_array_equal(_on(sampler, jax.devices()[:1], (1, 1), batch_size=2)(
      prompts[:3], seed=7), one[:3])


def test_long_videos_run_as_multidiffusion_over_training_length_windows(sampler, monkeypatch):
  """tiny:test trains on 4 frames; 8 frames are 3 windows of 4 overlapping by 2 frames."""
  built = []
  wrap = multidiffusion.multidiffusion
  monkeypatch.setattr(multidiffusion, "multidiffusion",
                      lambda fn, *args, **kw: built.append(args + tuple(kw.values()))
                      or wrap(fn, *args, **kw))
  long = sampler(["a red square moves up"], seed=1, num_frames=8)
  assert long.shape == (1, 8) + sampler.video_shape[1:]
  assert built == [(8, 4, 2, 0)]
  assert sampler(["a red square moves up"], seed=1, num_frames=4).shape[1] == 4
  assert built == [(8, 4, 2, 0)]  # The training length: one pass.
  # The 3 windows one per call (as memory-bound SSR runs them): the same video, up to the
  # float32 rounding of convolutions over another batch size (see UINT8_ATOL).
  config = sampler.config.copy_and_resolve_references()
  config.sample.windows_per_call = 1
  one_by_one = sample.Sampler(config, sampler.model, sampler.params, sampler.tokenizer)
  again = one_by_one(["a red square moves up"], seed=1, num_frames=8)
  assert built[-1] == (8, 4, 2, 1)
  diff = np.abs(again.astype(int) - long.astype(int))
  assert diff.max() <= UINT8_ATOL and (diff > 0).mean() < MAX_DIFFERENT, diff.max()
  config.sample.windows_per_call = -1
  with pytest.raises(ValueError, match="sample.windows_per_call=-1 must be >= 0"):
    sample.Sampler(config, sampler.model, sampler.params, sampler.tokenizer)


def test_check_num_frames(sampler):
  config = sampler.config.copy_and_resolve_references()  # 4 frames, temporal factor 2.
  assert sample.check_num_frames(config, 4) is None
  assert sample.check_num_frames(config, 2) is None
  assert sample.check_num_frames(config, 10) == (4, 2)
  with pytest.raises(ValueError, match="num_frames=7 does not fit the temporal downsampling.*"
                     "multiple of 2"):
    sample.check_num_frames(config, 7)
  with pytest.raises(ValueError, match="num_frames must be >= 1"):
    sample.check_num_frames(config, 0)
  config.sample.overlap = 0
  with pytest.raises(ValueError, match="num_frames=10 cannot be tiled by 4-frame windows "
                     "overlapping by 0 .stride 4.: use 8 or 12"):
    sample.check_num_frames(config, 10)
  config.sample.overlap = 1
  with pytest.raises(ValueError, match="sample.overlap=1 must be"):
    sample.check_num_frames(config, 8)
  del config.sample["overlap"]  # A run saved before sample.overlap: half a window.
  assert sample.check_num_frames(config, 8) == (4, 2)
  with pytest.raises(ValueError, match="num_frames is for text-to-video"):
    sampler(["a red square moves up"], x_init=np.zeros((1,) + sampler.video_shape, np.float32),
            strength=0.5, num_frames=8)


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


def test_process_share_is_contiguous_and_covers_every_prompt_once():
  for n, count in ((5, 2), (2, 3), (8, 4), (1, 1)):
    shares = [sample.process_share(n, p, count) for p in range(count)]
    assert [i for share in shares for i in share] == list(range(n))
    assert max(map(len, shares)) == -(-n // count)


def test_write_videos_writes_mp4_gif_and_grid(tmp_path):
  videos = np.random.default_rng(0).integers(0, 255, (2, 4, 16, 16, 3), dtype=np.uint8)
  sample.write_videos(videos, ["a red square", "a red square"], str(tmp_path), fps=8)
  names = sorted(os.listdir(tmp_path))
  assert names == ["a_red_square.gif", "a_red_square.mp4", "a_red_square_1.gif",
                   "a_red_square_1.mp4", "grid.png", "prompts.txt"]
  decoded = video_io.read_video(str(tmp_path / "a_red_square.mp4"), 4, 16)
  assert decoded.shape == (4, 16, 16, 3)
