"""The command line: bad input gives one clear error line, not a traceback."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_experiment


def run_main(*args, env=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  proc = subprocess.run([sys.executable, "-m", "lumiere_jax.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  return proc.returncode, proc.stderr.strip().splitlines()


@pytest.mark.parametrize("args, message", [
    (["--config=experiments/tiny.py", "--config.train.stepz=3", "--workdir=/tmp/x"],
     "error: unknown config key 'stepz' in --config.train.stepz; did you mean 'steps'?"),
    (["--config=experiments/tiny.py:bogus", "--workdir=/tmp/x"], "unknown tiny variant 'bogus'"),
    (["--config=experiments/tiny.py", "--mode=sample"], "error: --workdir is required"),
    (["--workdir=/tmp/x"], "error: --config is required"),
    (["--workdir=/tmp/no_such_run", "--mode=sample"],
     "error: /tmp/no_such_run/config.json not found: is /tmp/no_such_run a lumiere_jax training"),
    (["--config=experiments/tiny.py", "--workdir=/proc/forbidden"], "is not writable"),
    (["--workdir=/tmp/x", "--mode=sample", "--sampler=euler"],
     "error: --sampler must be one of ddim, ddpm, dpmpp_2m, got 'euler'"),
    (["--workdir=/tmp/x", "--mode=sample", "--num_steps=0"], "error: --num_steps must be >= 1"),
    # tiny:test trains on 4 frames and halves them once in time; windows overlap by 2.
    (["--config=experiments/tiny.py:test", "--workdir=/tmp/x", "--mode=sample", "--num_frames=7"],
     "error: num_frames=7 does not fit the temporal downsampling"),
    (["--config=experiments/tiny.py:test", "--workdir=/tmp/x", "--mode=sample", "--num_frames=10",
      "--config.sample.overlap=0"],
     "error: num_frames=10 cannot be tiled by 4-frame windows overlapping by 0 (stride 4): use 8 "
     "or 12"),
    (["--config=experiments/tiny.py:test", "--workdir=/tmp/x", "--mode=sample", "--num_frames=8",
      "--image=x.png"], "error: --num_frames is for text-to-video"),
    (["--config=experiments/tiny.py:test", "--workdir=/tmp/x", "--num_frames=8"],
     "error: --num_frames is for --mode=sample, not --mode=train"),
])
def test_bad_flags_give_one_error_line(args, message):
  code, lines = run_main(*args)
  assert code != 0
  assert len(lines) == 1, lines
  assert message in lines[0]


@pytest.mark.parametrize("config_flag", [["--config=experiments/tiny.py:test"], []])
def test_sample_with_empty_prompt_is_one_line(trained, config_flag):
  """Also without --config: the workdir's config.json is read (the prompt check needs it)."""
  _, workdir, _ = trained
  code, lines = run_main(*config_flag, f"--workdir={workdir}", "--mode=sample", "--prompt= ")
  assert code == 1
  assert lines[-1].startswith("error: Empty prompt"), lines
  assert not any("Traceback" in l for l in lines)


@pytest.mark.parametrize("error, one_line", [("errors.UserError", True), ("ValueError", False)])
def test_only_user_errors_lose_their_traceback(error, one_line):
  """A ValueError from a bug (not bad input) reaches the user with its traceback."""
  code = ("import sys\n"
          "from lumiere_jax import checkpoint, errors, main\n"
          "def load_config(workdir):\n"
          f"  raise {error}('the message')\n"
          "checkpoint.load_config = load_config\n"
          "sys.argv = ['main', '--workdir=/tmp/x', '--mode=sample']\n"
          "main.main()\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0
  if one_line:
    assert lines == ["error: the message"], lines
  else:
    assert "Traceback (most recent call last):" in lines, lines
    assert lines[-1] == "ValueError: the message", lines
    assert not any(l.startswith("error:") for l in lines), lines


def test_sampler_flags_reach_the_sample_and_sweep_settings():
  from absl.testing import flagsaver  # pylint: disable=g-import-not-at-top
  from lumiere_jax import main  # pylint: disable=g-import-not-at-top
  from lumiere_jax.evaluate import sweep  # pylint: disable=g-import-not-at-top
  main.FLAGS.mark_as_parsed()
  config = load_experiment("tiny", "test")
  with flagsaver.flagsaver(sampler="dpmpp_2m", num_steps=8, mode="sample"):
    sampled = main._with_sampler_flags(config)
  assert (sampled.sample.sampler, sampled.sample.num_steps) == ("dpmpp_2m", 8)
  assert sampled.eval.num_steps == config.eval.num_steps  # Only --mode=sweep sets the grid.
  with flagsaver.flagsaver(sampler="dpmpp_2m", num_steps=8, mode="sweep"):
    swept = main._with_sampler_flags(config)
  assert config.sample.sampler == "ddim"  # The flags' config is a copy.
  cells = sweep.sweep_cells(swept.eval, [4])
  assert {(c["sampler"], c["num_steps"]) for c in cells} == {("dpmpp_2m", 8)}
