"""The workdir layout module names the paths a training run actually writes."""
import os

from lumiere_jax import workdir as workdir_lib


def test_a_trained_run_has_every_documented_path(trained):
  config, workdir, summary = trained
  workdir = str(workdir)
  step = summary["end_step"]
  assert os.path.isfile(workdir_lib.config_path(workdir))
  assert os.path.isfile(workdir_lib.tokenizer_path(workdir))
  assert os.path.isdir(os.path.join(workdir_lib.checkpoints_dir(workdir), str(step)))
  assert os.path.isfile(os.path.join(workdir, workdir_lib.METRICS))
  assert os.path.isdir(os.path.join(workdir, workdir_lib.TENSORBOARD))
  samples = workdir_lib.samples_dir(workdir, step)
  assert samples == os.path.join(workdir, "samples", str(step))
  assert len([n for n in os.listdir(samples) if n.endswith(".mp4")]) == len(config.sample.prompts)
  assert os.path.isdir(workdir_lib.samples_dir(workdir, step, "heldout"))
  assert workdir_lib.eval_dir(workdir) == os.path.join(workdir, "eval")
