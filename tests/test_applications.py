"""Lumiere's applications: exactness of the known pixels, bad inputs, and the sample CLI."""
import logging
import os
import subprocess
import sys

import flax
import jax
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_experiment
from lumiere_jax import applications
from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import modeling
from lumiere_jax import sample
from lumiere_jax import video_io
from lumiere_jax import workdir as workdir_lib
from lumiere_jax.data import datasets
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.evaluate import i2v
from lumiere_jax.models import inflate
from lumiere_jax.models import unet as unet_lib

PROMPTS = ["a red square moves up", "a blue circle moves down"]


@pytest.fixture(scope="module")
def t2v(trained):
  return sample.load_sampler(str(trained[1]))


def save_workdir(workdir, config, params, tokenizer):
  """A workdir as training leaves it (config, tokenizer, EMA params at step 1), without training."""
  mngr = ckpt_lib.create_manager(str(workdir), config.train)
  ckpt_lib.save(mngr, 1, {"ema_params": params}, None, config, force=True)
  mngr.wait_until_finished()
  (workdir / "config.json").write_text(config.to_json_best_effort())
  tokenizer.save(workdir_lib.tokenizer_path(str(workdir)))
  return workdir


@pytest.fixture(scope="module")
def cond_run(t2v, tmp_path_factory):
  """The T2V run inflated into the 7-channel conditional model (exact at init: cond_in is 0).

  Stands in for a `tiny.py:cond` fine-tune, whose train-step compile is too slow for a test.
  """
  config = load_experiment("tiny", "test")
  config.model.cond_channels = 4
  model = modeling.build(config, t2v.tokenizer.vocab_size)
  init = model.init(jax.random.PRNGKey(1), *modeling.dummy_inputs(config))["params"]
  params = inflate.inflate(t2v.params, flax.linen.meta.unbox(init))
  return config, save_workdir(tmp_path_factory.mktemp("cond"), config, params, t2v.tokenizer)


@pytest.fixture(scope="module")
def cond(cond_run):
  return sample.load_sampler(str(cond_run[1]))


@pytest.fixture(scope="module")
def t2i_dir(t2v, tmp_path_factory):
  """A 'style' T2I checkpoint: the T2V run's spatial weights, perturbed (temporal ones dropped)."""
  config = load_experiment("tiny", "test")
  config.model.temporal = False
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: None if unet_lib.is_temporal_path(p) else x + rng.normal(0, 0.05, x.shape)
      .astype(x.dtype), t2v.params)
  return save_workdir(tmp_path_factory.mktemp("style_t2i"), config, params, t2v.tokenizer)


def _image(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def _video(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)


def _box_mask():
  mask = np.zeros((16, 16), np.float32)
  mask[4:12, 2:10] = 1.0
  return mask


def test_image_to_video_reproduces_the_first_frame(cond):
  image = _image()
  videos = applications.image_to_video(cond, image, PROMPTS, seed=1)
  assert videos.shape == (2, 4, 16, 16, 3)
  np.testing.assert_array_equal(videos[:, 0], np.broadcast_to(image, (2, 16, 16, 3)))
  assert not np.array_equal(videos[:, 1], videos[:, 0])


def test_inpainting_keeps_pixels_outside_the_mask(cond):
  video, mask = _video(), _box_mask()
  out = applications.inpaint(cond, video, mask, PROMPTS, seed=2)
  keep = mask == 0
  np.testing.assert_array_equal(out[:, :, keep], np.broadcast_to(video[:, keep], out[:, :, keep]
                                                                 .shape))
  assert not np.array_equal(out[:, :, ~keep], np.broadcast_to(video[:, ~keep],
                                                               out[:, :, ~keep].shape))


def test_cinemagraph_freezes_pixels_outside_the_mask(cond):
  image, mask = _image(1), _box_mask()
  out = applications.cinemagraph(cond, image, mask, PROMPTS[:1], seed=3)
  frozen = mask == 0
  np.testing.assert_array_equal(out[0][:, frozen], np.broadcast_to(image[frozen],
                                                                    (4,) + image[frozen].shape))
  assert np.ptp(out[0][:, ~frozen].astype(int), axis=0).any()  # The region moves.


def test_video_to_video_strength_zero_returns_the_input(t2v):
  video = _video(3)
  np.testing.assert_array_equal(applications.video_to_video(t2v, video, PROMPTS, strength=0.0),
                                np.broadcast_to(video, (2,) + video.shape))
  edited = applications.video_to_video(t2v, video, PROMPTS[:1], strength=0.5)
  assert edited.shape == (1,) + video.shape and not np.array_equal(edited[0], video)


def test_style_alpha_zero_is_the_base_model_bit_for_bit(t2v, t2i_dir):
  base = t2v(PROMPTS, seed=4)
  np.testing.assert_array_equal(applications.stylize(t2v, str(t2i_dir), 0.0)(PROMPTS, seed=4),
                                base)
  styled = applications.stylize(t2v, str(t2i_dir), 0.5)
  temporal = lambda p: jax.tree.leaves(jax.tree_util.tree_map_with_path(
      lambda k, x: x if unet_lib.is_temporal_path(k) else None, p))
  for a, b in zip(temporal(styled.params), temporal(t2v.params)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(styled(PROMPTS, seed=4), base)
  with pytest.raises(ValueError, match="style_alpha"):
    applications.stylize(t2v, str(t2i_dir), 1.5)


def _write_png(path, array):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
  return str(path)


def test_read_mask_sizes_and_binary_check(tmp_path):
  mask = _box_mask()
  exact = _write_png(tmp_path / "m.png", mask * 255)
  np.testing.assert_array_equal(applications.read_mask(exact, 16), mask)
  up = _write_png(tmp_path / "up.png", np.kron(mask, np.ones((4, 4))) * 255)
  np.testing.assert_array_equal(applications.read_mask(up, 16), mask)
  video = str(tmp_path / "m.mp4")
  video_io.write_mp4(video, np.repeat((mask * 255).astype(np.uint8)[None, ..., None], 4, 0)
                     .repeat(3, -1), fps=8)  # Lossy and written 8x upscaled.
  np.testing.assert_array_equal(applications.read_mask(video, 16, 4),
                                np.broadcast_to(mask, (4, 16, 16)))
  with pytest.raises(ValueError, match="is 20x20, expected 16x16"):
    applications.read_mask(_write_png(tmp_path / "s.png", np.zeros((20, 20))), 16)
  smooth = np.kron(mask, np.ones((2, 2))) * 255
  smooth[0, 0] = 255
  with pytest.raises(ValueError, match="not an exact 2x upscale"):
    applications.read_mask(_write_png(tmp_path / "u.png", smooth), 16)
  gray = np.full((16, 16), 128)
  with pytest.raises(ValueError, match="not binary"):
    applications.read_mask(_write_png(tmp_path / "g.png", gray), 16)
  with pytest.raises(ValueError, match="has 4 frames, the model needs 8"):
    applications.read_mask(video, 16, 8)


def test_bad_inputs_are_clear_errors(trained, tmp_path):
  config, workdir, _ = trained
  cond_config = load_experiment("tiny", "test")
  cond_config.model.cond_channels = 4
  run = lambda prompts=PROMPTS[:1], **kw: applications.run(config, str(workdir), prompts=prompts,
                                                           **kw)
  # Input errors come before the checkpoint restore: the T2V workdir stands in for a cond one.
  crun = lambda **kw: applications.run(cond_config, str(workdir), prompts=PROMPTS[:1], **kw)
  garbage = tmp_path / "garbage.png"
  garbage.write_bytes(b"not an image")
  image = _write_png(tmp_path / "img.png", _image())
  with pytest.raises(FileNotFoundError, match="image not found"):
    crun(image=str(tmp_path / "missing.png"))
  with pytest.raises(ValueError, match="cannot decode image"):
    crun(image=str(garbage))
  with pytest.raises(FileNotFoundError, match="video not found"):
    run(video=str(tmp_path / "missing.mp4"))
  with pytest.raises(ValueError, match="cannot decode video"):
    run(video=str(garbage))
  with pytest.raises(FileNotFoundError, match="mask not found"):
    crun(image=image, mask=str(tmp_path / "missing.png"))
  with pytest.raises(ValueError, match="is 20x20, expected 16x16"):
    crun(image=image, mask=_write_png(tmp_path / "m.png", np.zeros((20, 20))))
  with pytest.raises(ValueError, match="not binary"):
    crun(image=image, mask=_write_png(tmp_path / "g.png", np.full((16, 16), 100)))
  with pytest.raises(ValueError, match=r"strength must be in \[0, 1\], got 1.5"):
    run(video=str(garbage), strength=1.5)
  with pytest.raises(ValueError, match="--strength is for video-to-video"):
    run(image=image, strength=0.5)
  with pytest.raises(ValueError, match="not both"):
    run(image=image, video=str(garbage))
  with pytest.raises(ValueError, match="--mask needs"):
    run(mask=image)
  with pytest.raises(ValueError, match="experiments/tiny.py:cond"):
    run(image=image)
  with pytest.raises(ValueError, match="Empty prompt"):
    run(prompts=[" "])


def test_too_long_prompt_is_truncated_with_a_warning(t2v, caplog):
  with caplog.at_level(logging.WARNING):
    videos = applications.video_to_video(t2v, _video(), [" ".join(["red square"] * 40)], 0.0)
  assert videos.shape == (1, 4, 16, 16, 3)
  assert "truncated" in caplog.text


def test_run_writes_every_application(cond_run, t2i_dir, tmp_path):
  config, workdir = cond_run
  image = _write_png(tmp_path / "photo.png", np.kron(_image(), np.ones((3, 5, 1))))  # 48x80
  mask = _write_png(tmp_path / "mask.png", _box_mask() * 255)
  video = str(tmp_path / "in.mp4")
  video_io.write_mp4(video, _video(), fps=8)
  cases = {"image_to_video": dict(image=image), "cinemagraph": dict(image=image, mask=mask),
           "inpainting": dict(video=video, mask=mask), "video_to_video": dict(video=video),
           "": dict(), "video_to_video_style_alpha0.5": dict(video=video, style_from=str(t2i_dir),
                                                             style_alpha=0.5)}
  for name, kwargs in cases.items():
    out = applications.run(config, str(workdir), prompts=PROMPTS[:1], seed=0, **kwargs)
    assert out == [os.path.join(str(workdir), "samples", "1", name)]
    assert {"a_red_square_moves_up.gif", "a_red_square_moves_up.mp4", "grid.png",
            "prompts.txt"} <= set(os.listdir(out[0]))


def test_cli_image_to_video(cond_run, trained, tmp_path):
  _, workdir = cond_run
  image = _write_png(tmp_path / "photo.png", _image())
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  base = [sys.executable, "-m", "lumiere_jax.main", "--mode=sample", "--prompt=a red square"]
  proc = subprocess.run(base + ["--config=experiments/tiny.py:test", f"--workdir={trained[1]}",
                                f"--image={image}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 1 and len(lines) == 1, lines
  assert lines[0].startswith("error: image-to-video needs the conditional model") and (
      "experiments/tiny.py:cond" in lines[0])
  proc = subprocess.run(base + ["--config=experiments/tiny.py:test",
                                "--config.model.cond_channels=4", f"--workdir={workdir}",
                                f"--image={image}", f"--out_dir={tmp_path / 'out'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == f"Videos: {tmp_path / 'out'}"
  assert os.path.exists(tmp_path / "out" / "a_red_square.mp4")


def test_i2v_alignment_animates_each_first_frame_and_turns_directions(cond, t2v):
  builder = datasets.build_dataset(cond.config.data)
  videos, _, captions = classifier_lib.read_split(builder, "test", (), 3)
  scores = i2v.i2v_alignment(cond, videos, captions, seeds=(0, 1))
  assert scores["own"]["num_samples"] == 6
  assert 0 < scores["changed"]["num_samples"] <= 6 and scores["changed"]["num_samples"] % 2 == 0
  with pytest.raises(ValueError, match="conditional model"):
    i2v.i2v_alignment(t2v, videos, captions)


def test_perpendicular_caption_points_where_there_is_room():
  frame = np.zeros((32, 32, 3), np.uint8)
  frame[2:10, 12:20] = (255, 0, 0)  # Near the top: room below.
  assert i2v.perpendicular_caption("a red square moves left", frame) == "a red square moves down"
  frame = np.zeros((32, 32, 3), np.uint8)
  frame[12:20, 22:30] = (255, 0, 0)  # At the right edge: room to the left.
  assert i2v.perpendicular_caption("a red square moves up", frame) == "a red square moves left"
  assert i2v.perpendicular_caption("a red square moves up", np.zeros_like(frame)) is None
