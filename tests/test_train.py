"""End-to-end training on the `test` config: data -> train -> checkpoint -> samples -> resume."""
import json
import os
import shutil

import flax

import numpy as np
import pytest

from conftest import load_experiment
from lumiere_jax import sample
from lumiere_jax import train
from lumiere_jax.models import unet


def test_train_writes_checkpoints_metrics_and_samples(trained):
  config, workdir, summary = trained
  assert summary["end_step"] == config.train.steps
  steps = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
  assert steps == [2, 4]
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl", encoding="utf-8")]
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == [2, 4]
  assert all(np.isfinite(r["loss"]) and r["step_time"] > 0 for r in train_rows)
  alignment = [r for r in rows if "eval/t2v/color_acc" in r]
  assert len(alignment) == 1 and 0.0 <= alignment[0]["eval/t2v/color_acc"] <= 1.0
  out = workdir / "samples" / "4"
  names = sorted(os.listdir(out))
  assert "grid.png" in names and "prompts.txt" in names
  heldout = sorted(os.listdir(out / "heldout"))
  assert "grid.png" in heldout and len([n for n in heldout if n.endswith(".mp4")]) == 8
  assert len([n for n in names if n.endswith(".mp4")]) == len(config.sample.prompts)
  assert len([n for n in names if n.endswith(".gif")]) == len(config.sample.prompts)
  assert os.path.exists(workdir / "tensorboard")
  assert os.path.exists(workdir / train.TOKENIZER_FILE)


def test_text_encoder_params_train(trained):
  """The text pathway learns: every text-encoder leaf moves between the two checkpoints."""
  config, workdir, _ = trained
  steps = (2, 4)
  trees = [flax.traverse_util.flatten_dict(
      sample.load_params(str(workdir), config, step, use_ema=False)[1]) for step in steps]
  text = [p for p in trees[0] if p[0] == "text_encoder"]
  assert len(text) > 4
  for path in text:
    assert not np.array_equal(np.asarray(trees[0][path]), np.asarray(trees[1][path])), (
        "/".join(path) + f" did not change from step {steps[0]} to {steps[1]}")


def test_rerun_resumes_from_checkpoint_and_reproduces_the_losses(trained, tmp_path):
  """The shared run as a crash after step 2 leaves it (checkpoint 4 and later metrics gone):
  a rerun resumes at step 2 and logs step 4's loss exactly as the uninterrupted run did."""
  config, workdir, _ = trained
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)  # Other tests use the shared run as it is.
  shutil.rmtree(copy / "checkpoints" / "4")
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl", encoding="utf-8")]
  (copy / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 2), encoding="utf-8")
  config = config.copy_and_resolve_references()
  config.train.sample_at_end = False
  summary = train.train_and_evaluate(config, str(copy))
  assert summary["start_step"] == 2 and summary["end_step"] == 4
  resumed = [json.loads(l) for l in open(copy / "metrics.jsonl", encoding="utf-8")]
  losses = lambda rs: [(r["step"], r["loss"]) for r in rs if "loss" in r]
  assert losses(resumed) == losses(rows)


def test_resume_under_a_changed_model_config_names_the_change(trained, tmp_path):
  """Not "corrupt, delete it": the step is intact, the --config is what changed; the run's own
  config.json is kept."""
  config, workdir, _ = trained
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  own_config = (copy / "config.json").read_text()
  changed = config.copy_and_resolve_references()
  changed.model.channels = (16, 48)
  with changed.unlocked():
    changed.model.new_key = 1  # A key the checkpoint's config does not have at all.
  changed.train.steps = 6
  with pytest.raises(train.ckpt_lib.CheckpointError) as error:
    train.train_and_evaluate(changed, str(copy))
  message = str(error.value)
  assert "step 4" in message and "written with another config" in message, message
  assert "model.channels: [16, 32] in the checkpoint, [16, 48] now" in message, message
  assert "model.new_key: None in the checkpoint, 1 now" in message, message
  assert "delete" not in message
  assert (copy / "config.json").read_text() == own_config


def test_two_stage_t2i_then_inflated_stunet_trains_only_temporal_params(tmp_path, data_dir):
  """Stage 1 trains the T2I U-Net; stage 2 inflates it and trains only temporal params."""
  del data_dir
  t2i = load_experiment("tiny", "test")
  t2i.model.temporal = False
  t2i.train.sample_at_end = False
  train.train_and_evaluate(t2i, str(tmp_path / "t2i"))
  stunet = load_experiment("tiny", "inflate")
  test = load_experiment("tiny", "test")
  for section in ("data", "model", "text", "train", "sample"):
    stunet[section] = test[section]
  stunet.init_from = str(tmp_path / "t2i")
  stunet.train.sample_at_end = False
  train.train_and_evaluate(stunet, str(tmp_path / "stunet"))

  source = flax.traverse_util.flatten_dict(
      sample.load_sampler(str(tmp_path / "t2i")).params)  # EMA params: what init_from copies.
  trained_params = flax.traverse_util.flatten_dict(
      sample.load_sampler(str(tmp_path / "stunet"), use_ema=False).params)
  temporal = {p for p in trained_params if unet.is_temporal_path(p)}
  assert temporal and set(trained_params) - temporal == set(source)
  for path, value in source.items():
    np.testing.assert_array_equal(np.asarray(trained_params[path]), np.asarray(value),
                                  err_msg="/".join(path))
  kernel = np.asarray(trained_params[("unet", "temporal_down_0", "conv", "kernel")])
  identity = np.zeros_like(kernel)
  identity[1] = np.eye(kernel.shape[1])
  assert not np.array_equal(kernel, identity), "temporal params did not train"


def test_ema_update_follows_its_formula():
  ema = {"a": np.array([1.0, -2.0], np.float32), "b": {"c": np.float32(4.0)}}
  params = {"a": np.array([3.0, 0.0], np.float32), "b": {"c": np.float32(0.0)}}
  for step, max_decay in ((0, 0.99), (5, 0.99), (1000, 0.99), (1000, 0.9)):
    decay = min(max_decay, (1.0 + step) / (10.0 + step))
    out = train.ema_update(ema, params, np.int32(step), max_decay)
    np.testing.assert_allclose(out["a"], decay * ema["a"] + (1 - decay) * params["a"], rtol=1e-6)
    np.testing.assert_allclose(out["b"]["c"], decay * 4.0, rtol=1e-6)
  np.testing.assert_allclose(train.ema_update(ema, params, np.int32(0), 0.99)["a"],
                             [2.8, -0.2], rtol=1e-6)  # Decay 0.1 at step 0: mostly the params.


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="not writable"):
    train.check_workdir(str(blocker / "sub"))


def test_nan_loss_stops_keeping_the_last_good_checkpoint_and_closes_writer_and_manager(
    tmp_path, data_dir, monkeypatch):
  """A NaN batch at step 3 of 4 (checkpoints every 2): the run raises, step 2's checkpoint stays
  and nothing later is saved. The batch, not the config, is poisoned, so the train step is the
  program the `trained` run compiled (a cache hit)."""
  del data_dir
  closed = []
  for cls in (train.metrics_lib.MetricWriter, train.ckpt_lib.ocp.CheckpointManager):
    original = cls.close
    monkeypatch.setattr(cls, "close", lambda self, original=original, cls=cls: (
        closed.append(cls.__name__), original(self)))
  make_global_batch, calls = train.pipeline.make_global_batch, []

  def poisoned(batch, *args):
    calls.append(1)
    if len(calls) == 3:
      batch = dict(batch, video=np.full_like(batch["video"], np.nan))
    return make_global_batch(batch, *args)

  monkeypatch.setattr(train.pipeline, "make_global_batch", poisoned)
  config = load_experiment("tiny", "test")
  config.train.sample_at_end = False
  with pytest.raises(FloatingPointError, match="non-finite loss nan at step 3.*checkpoint: 2"):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(s for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == ["2"]
  assert sorted(closed) == ["CheckpointManager", "MetricWriter"]


def test_precomputed_text_features_train_and_sample(tmp_path, data_dir):
  """`text.kind='precomputed'`: the dataset's stored caption features feed the train step and
  the same frozen encoder turns prompts into features at sampling time."""
  del data_dir
  config = load_experiment("tiny", "test")
  config.data.text_embedding_dim = 8
  config.text.update(kind="precomputed", precomputed_dim=8)
  config.train.update(steps=2, eval_prompts=0)
  config.sample.prompts = config.sample.prompts[:1]
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["end_step"] == 2
  assert not os.path.exists(tmp_path / train.TOKENIZER_FILE)  # Nothing to tokenize with.
  assert len([n for n in os.listdir(tmp_path / "samples" / "2") if n.endswith(".mp4")]) == 1
  sampler = sample.load_sampler(str(tmp_path))
  videos = sampler(["a red square moves up"], seed=0)
  assert videos.shape == (1, 4, 16, 16, 3)
  np.testing.assert_array_equal(videos, sampler(["a red square moves up"], seed=0))
  config.text.precomputed_dim = 16
  with pytest.raises(ValueError, match="set both equal"):
    train.train_and_evaluate(config, str(tmp_path / "bad"))
