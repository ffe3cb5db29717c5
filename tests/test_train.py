"""End-to-end training on the `test` config: data -> train -> checkpoint -> samples -> resume."""
import json
import os

import numpy as np
import pytest

from conftest import load_experiment
from lumiere_jax import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  del data_dir  # Sets $LUMIERE_DATA_DIR.
  workdir = tmp_path_factory.mktemp("run")
  config = load_experiment("tiny", "test")
  summary = train.train_and_evaluate(config, str(workdir))
  return config, workdir, summary


def test_train_writes_checkpoints_metrics_and_samples(trained):
  config, workdir, summary = trained
  assert summary["end_step"] == config.train.steps
  steps = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
  assert steps == [2, 4]
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl", encoding="utf-8")]
  assert [r["step"] for r in rows] == [2, 4]
  assert all(np.isfinite(r["loss"]) and r["step_time"] > 0 for r in rows)
  out = workdir / "samples" / "4"
  names = sorted(os.listdir(out))
  assert "grid.png" in names and "prompts.txt" in names
  assert len([n for n in names if n.endswith(".mp4")]) == len(config.sample.prompts)
  assert len([n for n in names if n.endswith(".gif")]) == len(config.sample.prompts)
  assert os.path.exists(workdir / "tensorboard")
  assert os.path.exists(workdir / train.TOKENIZER_FILE)


def test_rerun_resumes_from_checkpoint(trained):
  config, workdir, _ = trained
  config = config.copy_and_resolve_references()
  config.train.steps = 6
  summary = train.train_and_evaluate(config, str(workdir))
  assert summary["start_step"] == 4 and summary["end_step"] == 6


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="not writable"):
    train.check_workdir(str(blocker / "sub"))


def test_nan_loss_stops_without_saving(tmp_path, data_dir):
  del data_dir
  config = load_experiment("tiny", "test")
  config.train.lr = float("nan")
  config.train.sample_at_end = False
  with pytest.raises(FloatingPointError, match="non-finite loss"):
    train.train_and_evaluate(config, str(tmp_path))
  saved = os.listdir(tmp_path / "checkpoints") if os.path.exists(tmp_path / "checkpoints") else []
  assert not [s for s in saved if s.isdigit()]
