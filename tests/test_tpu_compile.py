"""The tiny config's train step and sampler compile for a real TPU topology (libtpu, no TPU).

They go through the pod planner's own compile functions (`benchmarks/pod_plan.py`), so a
sharding or lowering regression fails here before it reaches a pod or a planner sweep. The
`tpu` extra installs libtpu; without it the tests are skipped, except in CI (`CI` set), where
`.ci/run` installs it and a missing libtpu is a failure.
"""
import importlib.util
import os
import sys

import pytest

from conftest import REPO, load_experiment, pinned_versions

sys.path.insert(0, str(REPO / "benchmarks"))
import pod_plan  # pylint: disable=g-import-not-at-top,wrong-import-position

V5E_HBM = 16 * 2**30

if importlib.util.find_spec("libtpu") is None:
  if os.environ.get("CI"):
    raise RuntimeError("CI must run the TPU compile tests: libtpu is not installed "
                       "(.ci/run installs the tpu extra)")
  pytest.skip("libtpu is not installed (pip install -e .[tpu])", allow_module_level=True)


@pytest.fixture(scope="module")
def v5e_2x2():
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  devices = topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x2").devices
  assert len(devices) == 4
  return devices


def tiny_config():
  config = load_experiment("tiny", "test")
  config.mesh.shape = (2, 2)  # Data x FSDP: params and optimizer moments sharded over 2 chips.
  return config


def test_tiny_train_step_compiles_for_v5e_2x2(v5e_2x2):
  row = pod_plan.compile_train(tiny_config(), v5e_2x2)
  assert 0 < row["memory"]["temporaries"] < V5E_HBM  # Fits a v5e chip's HBM.
  assert row["flops"] > 0
  assert row["params"] > 0


def test_tiny_sampler_compiles_for_v5e_2x2(v5e_2x2, monkeypatch):
  """The planner compiles the Sampler's own jitted function (what users run), not a twin."""
  calls = []
  jitted = pod_plan.sample_lib.Sampler.jitted
  record = lambda self, *args: calls.append(self.mesh.devices.size) or jitted(self, *args)
  monkeypatch.setattr(pod_plan.sample_lib.Sampler, "jitted", record)
  row = pod_plan.compile_sample_step(tiny_config(), v5e_2x2)
  assert calls == [4]
  assert 0 < row["memory"]["peak"] < V5E_HBM
  assert row["flops"] > 0


def test_installed_libtpu_is_the_pinned_one():
  assert pod_plan.installed_libtpu() == pinned_versions()["libtpu"]
