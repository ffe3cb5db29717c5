"""SSR: conditioning, MultiDiffusion on a real (random-init) SSR STUNet, and the base -> SSR cascade."""
import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_experiment
from lumiere_jax import applications
from lumiere_jax import modeling
from lumiere_jax import sample
from lumiere_jax import train
from lumiere_jax.diffusion import conditioning
from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.models import unet as unet_lib

PROMPTS = ["a red square moves up", "a blue circle moves down"]


@pytest.fixture(scope="module")
def ssr_dir(data_dir, tmp_path_factory):
  """An SSR run (experiments/ssr.py:test, 16 -> 32 px, 3 cond channels) trained for 2 steps."""
  del data_dir  # Sets $LUMIERE_DATA_DIR.
  config = load_experiment("ssr", "test")
  config.train.update(steps=2, ckpt_every=2, log_every=1)
  workdir = tmp_path_factory.mktemp("ssr")
  train.train_and_evaluate(config, str(workdir))
  return workdir


def test_ssr_stage_trains_on_its_own_clips_downsampled(ssr_dir):
  rows = [json.loads(l) for l in open(ssr_dir / "metrics.jsonl", encoding="utf-8")]
  assert [r["step"] for r in rows if "loss" in r] == [1, 2]
  assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in rows if "loss" in r)
  assert sample.load_sampler(str(ssr_dir)).windows(8) == (4, 2)  # Its config: an SSR model.


@pytest.fixture(scope="module")
def ssr(ssr_dir):
  return sample.load_sampler(str(ssr_dir))


def _with_ssr(sampler, **ssr_settings):
  """The sampler with other `config.ssr` settings (window, overlap)."""
  config = sampler.config.copy_and_resolve_references()
  config.ssr.update(ssr_settings)
  return sample.Sampler(config, sampler.model, sampler.params, sampler.tokenizer)


def _with_temporal_noise(params, scale):
  """Temporal layers start as identity (frames independent): perturbed, windows can disagree."""
  noise = np.random.default_rng(1)
  return jax.tree_util.tree_map_with_path(
      lambda p, x: x + noise.normal(0, scale, x.shape).astype(x.dtype)
      if unet_lib.is_temporal_path(p) else x, params)


def _low_res(frames=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (2, frames, 16, 16, 3), dtype=np.uint8)


def test_ssr_condition_is_the_clip_at_low_resolution_upsampled():
  video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 2, 8, 8, 3)), jnp.float32)
  cond = conditioning.ssr_condition(video, 2, "nearest")
  low = conditioning.downsample_video(video, 2)
  assert cond.shape == video.shape and low.shape == (1, 2, 4, 4, 3)
  np.testing.assert_allclose(cond[:, :, ::2, ::2], low, atol=1e-6)
  np.testing.assert_allclose(low.mean(), video.mean(), atol=1e-6)
  with pytest.raises(ValueError, match="cannot downsample 8x8 frames by factor 3"):
    conditioning.downsample_video(video, 3)


def test_one_window_over_the_whole_clip_equals_plain_ssr(ssr):
  low = _low_res(frames=4)
  plain = _with_ssr(ssr, window=0).super_resolve(low, PROMPTS, seed=1)
  one_window = _with_ssr(ssr, window=4)
  assert one_window.windows(4) == (4, ssr.config.ssr.overlap)
  np.testing.assert_array_equal(one_window.super_resolve(low, PROMPTS, seed=1), plain)
  assert plain.shape == (2, 4, 32, 32, 3)


def test_windows_agree_on_every_frame_at_every_step(ssr):
  """The model-level MultiDiffusion step: one value per frame, the mean of its windows."""
  frames, (window, overlap) = 8, ssr.windows(8)
  model = ssr.model
  params = _with_temporal_noise(ssr.params, 0.1)
  denoise = jax.jit(lambda x, t, e, m, c: model.apply({"params": params}, x, t, e, m, c,
                                                      method=model.denoise))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, frames, 32, 32, 3)), jnp.float32)
  cond = jnp.asarray(rng.uniform(-1, 1, (2, frames, 32, 32, 3)), jnp.float32)
  t = jnp.array([0.3, 0.8])
  emb, mask = jnp.asarray(rng.normal(size=(2, 16, 32)), jnp.float32), jnp.ones((2, 16), bool)
  out = multidiffusion.multidiffusion(denoise, frames, window, overlap)(x, t, emb, mask, cond)
  starts = multidiffusion.window_starts(frames, window, overlap)
  per_frame = [[] for _ in range(frames)]
  for s in starts:
    pred = denoise(x[:, s:s + window], t, emb, mask, cond[:, s:s + window])
    for i in range(window):
      per_frame[s + i].append(pred[:, i])
  assert max(len(p) for p in per_frame) > 1  # Windows do overlap.
  for f, preds in enumerate(per_frame):
    np.testing.assert_allclose(out[:, f], np.mean(preds, axis=0), atol=1e-4)
  assert not np.allclose(per_frame[2][0], per_frame[2][1], atol=1e-4)  # They would disagree.


def test_sampled_ssr_video_with_windows_and_seam_metric(ssr):
  """With temporal layers that mix frames, MultiDiffusion's averaged windows leave no seam;
  independent windows (overlap 0: nothing averaged) do, at the frame pair between windows."""
  low = _low_res(frames=8)
  blended = ssr.replace(_with_temporal_noise(ssr.params, 0.3), None)
  videos = blended.super_resolve(low, PROMPTS, seed=2)
  assert videos.shape == (2, 8, 32, 32, 3)
  np.testing.assert_array_equal(blended.super_resolve(low, PROMPTS, seed=2), videos)
  seams = multidiffusion.seam_metric(videos, *blended.windows(8))
  independent = _with_ssr(blended, overlap=0)
  seams_independent = multidiffusion.seam_metric(
      independent.super_resolve(low, PROMPTS, seed=2), *independent.windows(8))
  print(f"seam ratio, 8 frames in windows of 4: overlap 2 averaged {seams['ratio']:.3f}, "
        f"independent {seams_independent['ratio']:.3f}")
  # Measured over seeds 2, 3, 4: averaged 0.971-0.984, independent 1.163-1.194.
  assert seams["ratio"] < 1.08 < seams_independent["ratio"]


def test_bad_ssr_inputs(ssr, trained):
  with pytest.raises(ValueError, match=r"expected \(N, T, 16, 16, 3\)"):
    ssr.super_resolve(np.zeros((1, 4, 8, 8, 3), np.uint8), PROMPTS[:1])
  with pytest.raises(ValueError, match="low-resolution video"):
    ssr(PROMPTS[:1])
  with pytest.raises(ValueError, match="needs an SSR checkpoint"):
    sample.load_sampler(str(trained[1])).super_resolve(_low_res(), PROMPTS)


def test_cascade_writes_both_resolutions(trained, ssr_dir, tmp_path):
  config, workdir, _ = trained
  out = applications.run(config, str(workdir), prompts=PROMPTS[:1], ssr_workdir=str(ssr_dir),
                         out_dir=str(tmp_path / "out"))
  assert out == [str(tmp_path / "out"), str(tmp_path / "out" / "ssr_32px")]
  for d in out:
    assert os.path.exists(os.path.join(d, "a_red_square_moves_up.mp4"))
  with pytest.raises(ValueError, match="is an SSR run"):
    applications.run(load_experiment("ssr", "test"), str(ssr_dir), prompts=PROMPTS[:1])


def test_paper_ssr_builds_abstractly():
  config = load_experiment("ssr", "paper")
  model = modeling.build(config, 32000)
  params = flax.linen.meta.unbox(modeling.abstract_params(model, config))
  num = sum(np.prod(x.shape) for x in jax.tree.leaves(params))
  assert 1e8 < num < 1e9
  assert config.data.resolution // config.ssr.factor == 128
  assert (config.ssr.window, config.ssr.overlap) == (16, 2)
