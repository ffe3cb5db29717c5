"""Evaluation sweep over the session's tiny training run: rows, resume, reports, bad input."""
import json
import os
import shutil

import numpy as np
import pytest
from scipy import special

from conftest import load_experiment
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.evaluate import i3d
from lumiere_jax.evaluate import sweep


@pytest.fixture(scope="module")
def swept(trained, tmp_path_factory):
  """(config, workdir, first summary, second summary, checkpoints the second run loaded)."""
  config, source, _ = trained
  workdir = tmp_path_factory.mktemp("sweep") / "run"
  shutil.copytree(source, workdir)  # The eval outputs must not leak into the shared run.
  first = sweep.run_sweep(config, str(workdir))
  loaded = []
  with pytest.MonkeyPatch.context() as patch:
    load = sweep.sample_lib.load_sampler
    patch.setattr(sweep.sample_lib, "load_sampler",
                  lambda *a, **k: loaded.append(a) or load(*a, **k))
    second = sweep.run_sweep(config, str(workdir))
  return config, workdir, first, second, loaded


@pytest.fixture(scope="module")
def evaluator(data_dir, tmp_path_factory):
  """The sweep's scorer of tiny:test, with FVD from an I3D weights file: random values in the
  documented .npz layout (docs/metrics.md), run at 32x32 instead of 224x224 (as test_i3d: the
  same network and file reading, ~50x less compute)."""
  del data_dir  # Sets $LUMIERE_DATA_DIR.
  config = load_experiment("tiny", "test")
  weights = tmp_path_factory.mktemp("i3d") / "i3d.npz"
  np.savez(weights, **i3d.random_weights(0))
  eval_cfg = config.eval.copy_and_resolve_references()
  eval_cfg.i3d_weights = str(weights)
  from_file = i3d.I3D.from_file.__func__
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(i3d.I3D, "from_file", classmethod(
        lambda cls, path, **kw: from_file(cls, path, resolution=32, **kw)))
    return sweep._Evaluator(eval_cfg, config.data)  # pylint: disable=protected-access


def _validation(evaluator):
  """Real clips other than the test clips the "test" prompt set is compared with."""
  videos, _, captions = classifier_lib.read_split(evaluator.builder, "validation", ())
  return videos, captions


def test_frechet_distances_separate_real_clips_from_noise(evaluator):
  videos, captions = _validation(evaluator)
  real = evaluator.metrics(videos, captions, "test")
  noise = np.random.default_rng(0).integers(0, 256, videos.shape, dtype=np.uint8)
  fake = evaluator.metrics(noise, captions, "test")
  print(f"real validation vs test clips: fd {real['fd']:.4f} fvd {real['fvd']:.4f}; "
        f"noise: fd {fake['fd']:.4f} fvd {fake['fvd']:.4f}")
  assert real["color_acc"] == 1.0 and fake["color_acc"] < 0.5
  # Measured: fd 0.0000 vs 0.0168 (the test config's 5-step classifier), fvd 0.63 vs 6.8.
  assert real["fd"] < 1e-3 < fake["fd"]
  assert real["fvd"] < 2.0 < fake["fvd"]


def test_inception_score_is_one_for_identical_samples_and_higher_for_varied_ones(evaluator):
  """`i3d_is`: exp of the mean KL between each sample's and the set's class distribution, so a set
  of one video repeated scores exactly 1 and varied clips more."""
  videos, captions = _validation(evaluator)
  varied = evaluator.metrics(videos, captions, "test")["i3d_is"]
  expected = i3d.inception_score(special.softmax(evaluator.i3d(videos), axis=1))[0]
  same = evaluator.metrics(np.repeat(videos[:1], len(videos), axis=0), captions, "test")
  print(f"i3d_is: varied clips {varied:.4f}, one clip repeated {same['i3d_is']:.6f}")
  assert varied == pytest.approx(expected, rel=1e-9)
  assert same["i3d_is"] == pytest.approx(1.0, abs=1e-9)
  # Measured 1.0007: random I3D weights give near-uniform class probabilities, so the KLs are
  # small, but 1e5x above the repeated clip's distance from 1.
  assert varied > 1.0 + 1e-4


def test_rows_cover_the_grid(swept):
  config, workdir, first, _, _ = swept
  rows = [json.loads(line) for line in open(workdir / "eval" / "results.jsonl")]
  # 2 checkpoints x 2 guidance scales x 2 prompt sets.
  assert len(rows) == first["num_new"] == 8
  assert {(r["step"], r["guidance"]) for r in rows} == {(2, 1.0), (2, 3.0), (4, 1.0), (4, 3.0)}
  assert {r["prompt_set"] for r in rows} == {"grid", "test"}
  for row in rows:
    assert row["num_samples"] == config.eval.num_samples
    for metric in ("color_acc", "direction_acc", "all_acc", "color_stability", "fd",
                   "clf_color_acc"):  # What fd measures: test_frechet_distances_separate_...
      assert metric in row
    assert os.path.exists(workdir / "eval" / "samples" / row["cell"] / "grid.png")
  assert len(list((workdir / "eval" / "samples" / rows[0]["cell"]).glob("*.mp4"))) == 1


def test_resume_skips_finished_cells(swept):
  _, workdir, first, second, loaded = swept
  rows = open(workdir / "eval" / "results.jsonl").read().splitlines()
  assert second["num_new"] == 0 and len(rows) == 8
  assert [r["cell"] for r in second["rows"]] == [r["cell"] for r in first["rows"]]
  assert not loaded  # Every cell was skipped: no checkpoint restored, nothing sampled.


def test_reports(swept):
  _, workdir, first, _, _ = swept
  eval_dir = workdir / "eval"
  table = (eval_dir / "results.md").read_text()
  assert "| step | guidance |" in table and "Best per prompt set" in table
  assert len((eval_dir / "results.csv").read_text().splitlines()) == 1 + 8
  for name in ("plot_vs_guidance.png", "plot_vs_step.png", "samples_grid.png",
               "samples_test.png"):
    assert str(eval_dir / name) in first["plots"]
    assert (eval_dir / name).stat().st_size > 1000
  assert set(first["best"]) == {"grid", "test"}


def test_run_eval_one_checkpoint(swept):
  config, workdir, _, _, _ = swept
  # tiny:test samples with guidance 3 and 4 steps: new cells, at the requested step only.
  with config.unlocked():
    prompt_sets = config.eval.prompt_sets
    config.eval.prompt_sets = ("grid",)
  try:
    result = sweep.run_eval(config, str(workdir), step=2)
  finally:
    with config.unlocked():
      config.eval.prompt_sets = prompt_sets
  assert result["num_new"] == 1
  assert [r["cell"] for r in result["rows"]] == ["step2_g3_ddim_n4_s0_grid"]


def test_missing_checkpoint_lists_available(swept):
  config, workdir, _, _, _ = swept
  with pytest.raises(FileNotFoundError, match=r"\[7\].*available steps: \[2, 4\]"):
    sweep.run_eval(config, str(workdir), step=7)


def test_bad_specs(swept):
  config, workdir, _, _, _ = swept
  with pytest.raises(ValueError, match="eval.checkpoints"):
    sweep.resolve_steps(str(workdir), "two")
  spec = config.eval.to_dict()
  spec["prompt_sets"] = ("grid", "imagenet")
  with pytest.raises(ValueError, match="imagenet"):
    sweep.sweep_cells(sweep._Spec(spec), [2])  # pylint: disable=protected-access


def test_too_few_samples_for_fd(swept):
  config, workdir, _, _, _ = swept
  with config.unlocked():
    config.eval.num_samples = 1
  try:
    with pytest.raises(ValueError, match="at least 2 samples"):
      sweep.run_eval(config, str(workdir), step=4)
  finally:
    with config.unlocked():
      config.eval.num_samples = 4
