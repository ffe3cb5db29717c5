"""Test setup: 8 fake CPU devices, CPU platform, one compilation cache, deterministic and quiet."""
import fcntl
import json
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run and the subprocesses it starts (they inherit
# the environment): the many tests that build the same tiny model compile each program once.
# A cache directory the caller set is kept; the run's own is removed at the end.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lumiere_jax_test_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Quick-to-compile CPU code: the tests run a few steps of tiny models, so compiling is most of
# their time. Without LLVM's optimisation passes and with XLA's older (elemental) fusion
# emitters, a `tiny:test` train step compiled in 0.58x the time (docs/benchmarks.md). The HLO
# program is the same and its numerics too (no fast-math either way: the loss and the params
# after 4 steps were bitwise equal); only the machine code runs slower.
_TEST_FLAGS = {"xla_force_host_platform_device_count": "8", "xla_backend_optimization_level": "0",
               "xla_cpu_use_fusion_emitters": "false"}
from lumiere_jax import xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

os.environ["XLA_FLAGS"] = xla_flags.with_defaults(os.environ.get("XLA_FLAGS", ""), _TEST_FLAGS)

import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # The experiments/ configs, also when pytest is not run from REPO.
import experiments  # pylint: disable=g-import-not-at-top,wrong-import-position


# The slowest test files, slowest first (`--durations` of a CI run): they run before all others.
# pytest-xdist hands a worker a whole file whenever it runs low on work (`--dist loadfile`), in
# collection order (`--no-loadscope-reorder` in pytest.ini; by default it would start with the
# files that have the most tests, leaving these few-test, slow ones for the end, where one of
# them could run alone while the other worker sits idle). test_train.py builds the shared
# `trained` run first; the other worker meanwhile runs test_train_distributed.py, which does not
# need it.
SLOW_FILES_FIRST = ("test_train.py", "test_train_distributed.py", "test_applications.py",
                    "test_tpu_compile.py", "test_unet.py", "test_ssr.py", "test_pod_plan.py",
                    "test_samplers.py", "test_sweep.py", "test_detector.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: keeps file order.


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


load_experiment = experiments.load  # What --config=experiments/<name>.py:<arg> loads.


def normalize_distribution(name: str) -> str:
  """PEP 503 form of a distribution name ("ml_collections" and "ML-Collections" are one)."""
  return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions() -> dict:
  """constraints.txt as {normalized distribution name: pinned version}."""
  pins = {}
  for line in (REPO / "constraints.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
      name, version = line.split("==")
      pins[normalize_distribution(name)] = version
  return pins


def small_data_cfg(**overrides):
  """A tiny `synthetic_clips` data config (4 frames, 16x16, 40 clips) for data-stage tests."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = dict(name="synthetic_clips", variant="simple", data_dir="", num_frames=4, resolution=16,
             fps=8, num_train=40, num_validation=8, num_test=8, builder_seed=0, max_text_len=16,
             vocab_size=128, random_flip=False, random_temporal_flip=False, worker_count=0)
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One synthetic dataset directory shared by the whole session (built on first use)."""
  path = tmp_path_factory.mktemp("tfds")
  os.environ["LUMIERE_DATA_DIR"] = str(path)
  return path


def _run_dir(tmp_path_factory) -> pathlib.Path:
  """The directory all pytest-xdist workers of this run share (pytest's own basetemp if serial)."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(path: pathlib.Path, build):
  """`build(path)`'s JSON-able result, built in `path` by the first of the processes that ask.

  The others wait on a file lock and get the stored result. A failed build leaves no result, so
  the next caller removes what it left in `path` and builds again.
  """
  result_file = path.with_name(path.name + ".json")
  with open(path.with_name(path.name + ".lock"), "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes, also if build raises.
    if not result_file.exists():
      shutil.rmtree(path, ignore_errors=True)
      result_file.write_text(json.dumps(build(path)), encoding="utf-8")
  return json.loads(result_file.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_dir):
  """(config, workdir, summary) of one `tiny:test` training run shared by the whole run.

  Built once per run, not once per pytest-xdist worker (`build_once`). Tests read it only: one
  that writes into a workdir copies it first.
  """
  from lumiere_jax import train  # pylint: disable=g-import-not-at-top
  del data_dir  # Sets $LUMIERE_DATA_DIR.
  config = load_experiment("tiny", "test")
  workdir = _run_dir(tmp_path_factory) / "trained"
  summary = build_once(workdir, lambda path: train.train_and_evaluate(config, str(path)))
  return config, workdir, summary
