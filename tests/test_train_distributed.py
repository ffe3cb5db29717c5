"""Distributed training: sharded == single device, kill/SIGTERM/resume, corrupt checkpoints,
restore onto a smaller mesh, and a 2-process multi-host run on localhost.

The runs share the test session's compilation cache (conftest.py), so each program compiles once.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import flax
import jax
import numpy as np
import portpicker
import pytest

from conftest import REPO, load_experiment
from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import modeling
from lumiere_jax import sample
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import train
from lumiere_jax.data import synthetic

STEPS, CKPT_EVERY = 16, 4
OVERRIDES = dict(steps=STEPS, ckpt_every=CKPT_EVERY, log_every=1, async_checkpointing=True,
                 sample_at_end=False)
# Sharded and single-device steps sum in different orders: float32 rounding only.
RTOL = 1e-5


def _config():
  config = load_experiment("tiny", "test")
  config.train.update(OVERRIDES)
  return config


def _cli_args(workdir, *extra):
  return ["--config=experiments/tiny.py:test", f"--workdir={workdir}", "--mode=train",
          *[f"--config.train.{k}={v}" for k, v in OVERRIDES.items()], *extra]


@pytest.fixture(scope="module")
def subprocess_env(tmp_path_factory, data_dir):
  """Environment for subprocess runs: same data dir and devices as here, and (from conftest.py)
  the same compilation cache."""
  del tmp_path_factory
  return dict(os.environ, LUMIERE_DATA_DIR=str(data_dir), JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
  """(workdir, {step: loss}) of one uninterrupted in-process run on 8 devices."""
  del data_dir  # Sets $LUMIERE_DATA_DIR.
  workdir = tmp_path_factory.mktemp("reference")
  train.train_and_evaluate(_config(), str(workdir))
  return workdir, _losses(workdir)


def _rows(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _rows(workdir) if "loss" in r}


def _checkpoints(workdir):
  path = pathlib.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []


def _start(workdir, env, *extra):
  return subprocess.Popen([sys.executable, "-m", "lumiere_jax.main", *_cli_args(workdir, *extra)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _wait_for(condition, proc, what, timeout=300):
  deadline = time.monotonic() + timeout
  while not condition():
    if proc.poll() is not None:
      err = proc.stderr.read()[-3000:] if proc.stderr else "(logged to a file)"
      pytest.fail(f"run ended (rc {proc.returncode}) before {what}:\n{err}")
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"timed out waiting for {what}")
    time.sleep(0.02)


def _state(config, mesh):
  """(initial train state, jitted step) on `mesh`, as `train_and_evaluate` builds them."""
  model = modeling.build(config, vocab_size=64)
  init_fn, _, state_sh, (tx, schedule) = train.create_train_state(model, config, mesh)
  step = jax.jit(train.make_train_step(model, tx, schedule, config, mesh),
                 in_shardings=(state_sh, sharding_lib.batch_sharding(mesh, config.mesh)),
                 out_shardings=(state_sh, None))
  return init_fn(jax.random.PRNGKey(0)), step


def _batches(config, n):
  """Random batches of the config's shapes (no dataset needed)."""
  rng = np.random.default_rng(0)
  d, b = config.data, config.train.batch_size
  for _ in range(n):
    mask = np.arange(d.max_text_len)[None] < rng.integers(2, d.max_text_len, (b, 1))
    yield dict(video=rng.uniform(-1, 1, (b, d.num_frames, d.resolution, d.resolution, 3)
                                 ).astype(np.float32),
               tokens=np.where(mask, rng.integers(1, 64, mask.shape), 0).astype(np.int32),
               text_mask=mask)


def _assert_close_to_leaf_scale(tree_a, tree_b, what):
  """Leafwise equal to float32 rounding: atol is RTOL times the leaf's largest magnitude, since
  a sum in another order differs by rounding of its largest terms, not of the result."""
  flat_b = dict(jax.tree_util.tree_flatten_with_path(tree_b)[0])
  for path, a in jax.tree_util.tree_flatten_with_path(tree_a)[0]:
    a, b = np.asarray(a), np.asarray(flat_b[path])
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale,
                               err_msg=f"{what}{jax.tree_util.keystr(path)}")


def test_sharded_step_equals_single_device_step():
  """data=4 x fsdp=2 on 8 devices vs. one device: same loss, gradients and optimizer moments.

  Adam's update m / (sqrt(v) + eps) turns a rounding difference in a gradient near eps into an
  update difference of up to 2 lr, and the next gradients are then taken at different params.
  So the moments are compared after the steps whose gradients are taken at identical params
  (step 0 has lr 0), and the updated params only through the loss they give.
  """
  config = _config()
  config.mesh.shape = (4, 2)
  mesh8 = sharding_lib.create_mesh(config.mesh)
  state8, step8 = _state(config, mesh8)
  single = config.copy_and_resolve_references()
  single.mesh.shape = (1, 1)
  state1, step1 = _state(single, sharding_lib.create_mesh(single.mesh, jax.devices()[:1]))

  # Rule ("conv_out", "fsdp"): spatial conv kernels (3, 3, in, out) split out-channels over fsdp.
  kernel = state8.params["unet"]["down_1_res_0"]["conv_2"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert kernel.addressable_shards[0].data.shape == (3, 3, 32, 16)

  for i, batch in enumerate(_batches(config, 3)):
    if i < 2:  # Init, and after the lr-0 warmup step: the same params exactly.
      jax.tree.map(np.testing.assert_array_equal, jax.device_get(state8.params),
                   jax.device_get(state1.params))
    state8, m8 = step8(state8, batch)
    state1, m1 = step1(state1, batch)
    np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=RTOL)
    np.testing.assert_allclose(float(m8["grad_norm"]), float(m1["grad_norm"]), rtol=RTOL)
    if i == 1:  # Moments of the two gradients taken at identical params.
      _assert_close_to_leaf_scale(jax.device_get(state8.opt_state),
                                  jax.device_get(state1.opt_state), "opt_state")


def test_kill_sigterm_and_resume_reproduce_the_uninterrupted_losses(reference, subprocess_env,
                                                                     tmp_path):
  """SIGKILL after a checkpoint, resume, SIGTERM mid-run (saves, exits 0), resume to the end."""
  _, expected = reference
  assert sorted(expected) == list(range(1, STEPS + 1))
  workdir = tmp_path / "run"
  proc = _start(workdir, subprocess_env)
  _wait_for(lambda: _checkpoints(workdir), proc, "the first checkpoint")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(_losses(workdir))
  assert killed_at < STEPS, "the run finished before it was killed"

  resumed_from = max(_checkpoints(workdir))  # Async saves in flight were never finalized.
  rows_before = len(_rows(workdir))
  proc = _start(workdir, subprocess_env)
  _wait_for(lambda: len(_rows(workdir)) > rows_before, proc, "a step after resuming")
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  preempted_at = _rows(workdir)[-1]["step"]
  assert resumed_from < preempted_at < STEPS
  assert max(_checkpoints(workdir)) == preempted_at  # Saved at the step it stopped.

  proc = _start(workdir, subprocess_env)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  rows = _rows(workdir)
  assert sorted({r["step"] for r in rows}) == list(range(1, STEPS + 1))
  # Bitwise: same data order (iterator state in the checkpoint), RNG folded with the step and
  # the same compiled program; steps run twice (after the kill) must match too.
  assert [(r["step"], r["loss"]) for r in rows] == [(r["step"], expected[r["step"]])
                                                      for r in rows]


def test_corrupt_latest_checkpoint_names_step_and_previous_one(reference, subprocess_env, tmp_path):
  workdir = tmp_path / "corrupt"
  shutil.copytree(reference[0], workdir)
  latest, previous = _checkpoints(workdir)[-1], _checkpoints(workdir)[-2]
  # Truncate the array data files (`.../d/*`); metadata such as `_sharding` is not always read.
  for path in (workdir / "checkpoints" / str(latest) / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])

  config = _config()
  config.train.steps = STEPS + 1
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=rf"step {latest} .*resume from step {previous}"):
    train.train_and_evaluate(config, str(workdir))

  proc = _start(workdir, subprocess_env, f"--config.train.steps={STEPS + 1}")
  _, err = proc.communicate(timeout=300)
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert proc.returncode == 1 and len(errors) == 1, err[-3000:]
  assert f"checkpoint step {latest}" in errors[0] and f"step {previous}" in errors[0]
  assert "Traceback" not in err


def test_restore_onto_a_smaller_mesh(reference):
  """A checkpoint saved from 8 devices restores onto 4 (e.g. a smaller slice after preemption)."""
  workdir, _ = reference
  config = _config()
  model = modeling.build(config, sample.load_text_input(str(workdir), config).vocab_size)
  mngr = ckpt_lib.create_manager(str(workdir), config.train, read_only=True)
  restored = {}
  for n in (8, 4):
    mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:n])
    _, abstract, _, _ = train.create_train_state(model, config, mesh)
    restored[n] = ckpt_lib.restore(mngr, mngr.latest_step(), abstract)
    leaf = restored[n].params["unet"]["conv_in"]["kernel"]
    assert leaf.sharding.device_set == set(jax.devices()[:n])
  assert int(restored[4].step) == STEPS
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               restored[8], restored[4])


_RECORD_FIRST_BATCH = """
import sys
import jax
import numpy as np
from lumiere_jax import main
from lumiere_jax import video_io
from lumiere_jax.data import pipeline
out_dir, make_global_batch, write_mp4 = sys.argv[1], pipeline.make_global_batch, video_io.write_mp4
def record(batch, *args, **kwargs):
  if not hasattr(record, "done"):
    record.done = True
    np.save(f"{out_dir}/first_batch_{jax.process_index()}.npy", batch["video"])
  return make_global_batch(batch, *args, **kwargs)
def record_write(path, *args, **kwargs):
  with open(f"{out_dir}/written_{jax.process_index()}.txt", "a") as f:
    f.write(path + "\\n")
  return write_mp4(path, *args, **kwargs)
pipeline.make_global_batch = record
video_io.write_mp4 = record_write
sys.argv = ["lumiere_jax.main"] + sys.argv[2:]
main.main()
"""


def test_two_process_multihost_run_reads_disjoint_shards_samples_and_stops_on_sigterm(
    subprocess_env, tmp_path):
  """2 processes x 2 CPU devices on localhost (gloo): train, checkpoint, each reads its shard,
  then both sample over the 4-device mesh and every prompt's video is written exactly once.
  Resumed for more steps, SIGTERM to both (a preemption) makes both save the same step (JAX's
  preemption sync point) and exit 0."""
  workdir, port = tmp_path / "multihost", portpicker.pick_unused_port()
  env = dict(subprocess_env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  # Logs go to files: a pipe nobody reads while waiting for a step would fill and block.
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]

  def start(*extra):
    procs = []
    for i, log in enumerate(logs):
      args = [a.replace("sample_at_end=False", "sample_at_end=True") for a in _cli_args(
          workdir, *extra, "--multihost", f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2", f"--process_id={i}")]
      with open(log, "w", encoding="utf-8") as f:
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _RECORD_FIRST_BATCH, str(tmp_path), *args],
            cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, text=True))
    return procs

  def finish(procs):
    for p in procs:
      p.wait(timeout=600)
    errs = [log.read_text(encoding="utf-8") for log in logs]
    for p, err in zip(procs, errs):
      assert p.returncode == 0, err[-3000:]
    return errs

  finish(start("--config.train.steps=2", "--config.train.ckpt_every=2",
               "--config.train.eval_prompts=3"))
  assert _checkpoints(workdir) == [2]
  assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(
      os.listdir(workdir / "checkpoints" / "2" / "data"))  # Each process's iterator state.
  # Only process 0 writes metrics: one row per step, one with the held-out scores.
  assert [r["step"] for r in _rows(workdir) if "loss" in r] == [1, 2]
  assert [r["step"] for r in _rows(workdir) if "eval/t2v/direction_acc" in r] == [2]

  # Which records each process read: its first batch, matched to the dataset by content.
  source = synthetic.build_dataset(_config().data, synthetic.resolve_data_dir(_config().data)
                                   ).as_data_source("train")
  index = {source[i]["video"].tobytes(): i for i in range(len(source))}
  half = len(source) // 2
  for p in range(2):
    videos = np.load(tmp_path / f"first_batch_{p}.npy")
    assert videos.shape[0] == _config().train.batch_size // 2
    read = [index[np.round((v + 1) * 127.5).astype(np.uint8).tobytes()] for v in videos]
    assert all(p * half <= i < (p + 1) * half for i in read), (p, read)  # ShardByJaxProcess.

  # Sampling at the end: the 2 config prompts and 3 held-out prompts x 2 seeds (6 videos, 3
  # names repeated). Each process wrote its own block of each list (1 + 3 files) and nothing
  # twice; together, every video once.
  written = [(tmp_path / f"written_{p}.txt").read_text().split() for p in range(2)]
  samples = workdir / "samples" / "2"
  assert [len(w) for w in written] == [1 + 3, 1 + 3], written
  every = written[0] + written[1]
  assert len(set(every)) == len(every) == 2 + 6
  for out_dir, count in ((samples, 2), (samples / "heldout", 6)):
    slugs = [l.split("\t")[0] for l in (out_dir / "prompts.txt").read_text().splitlines()]
    assert len(slugs) == count
    assert sorted(str(out_dir / f"{s}.mp4") for s in slugs) == sorted(
        w for w in every if os.path.dirname(w) == str(out_dir))
    assert (out_dir / "grid.png").exists()

  # Preemption: resumed for many more steps, SIGTERM to both after the first new step.
  steps = 1000  # Never reached.
  procs = start(f"--config.train.steps={steps}", f"--config.train.ckpt_every={steps}")
  _wait_for(lambda: any(r["step"] > 2 for r in _rows(workdir) if "loss" in r), procs[0],
            "the first resumed step", timeout=600)
  for p in procs:
    p.send_signal(signal.SIGTERM)
  errs = finish(procs)
  saved = _checkpoints(workdir)
  assert len(saved) == 2 and saved[0] == 2 and 2 < saved[1] < steps, saved
  for err in errs:  # Both stopped at the step they saved together.
    assert f"Preempted at step {saved[1]}:" in err, err[-3000:]
  assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(
      os.listdir(workdir / "checkpoints" / str(saved[1]) / "data"))
  assert [r["step"] for r in _rows(workdir) if "loss" in r] == list(range(1, saved[1] + 1))
