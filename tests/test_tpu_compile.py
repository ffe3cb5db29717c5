"""The tiny train step compiles for a real TPU topology (libtpu's compiler, no TPU needed).

CI installs only `.[test]`, so this is skipped there; with `.[tpu]` it guards the pod planner
(`benchmarks/pod_plan.py`) against sharding or lowering regressions.
"""
import importlib.util
import os

import jax
import pytest

from conftest import load_experiment
from lumiere_jax import modeling
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                reason="libtpu is not installed (pip install -e .[tpu])")


def test_tiny_train_step_compiles_for_v5e_2x2():
  # Compiling only: another process (e.g. the pod planner) may hold libtpu's lockfile.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  devices = topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x2").devices
  assert len(devices) == 4
  config = load_experiment("tiny", "test")
  config.mesh.shape = (2, 2)  # Data x FSDP: params and optimizer moments sharded over 2 chips.
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  model = modeling.build(config, config.data.vocab_size)
  _, abstract_state, state_sh, (tx, schedule) = train.create_train_state(model, config, mesh)
  batch_sh = sharding_lib.batch_sharding(mesh, config.mesh)
  x, _, tokens, mask, _ = modeling.dummy_inputs(config, config.train.batch_size)
  batch = {k: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=batch_sh)
           for k, a in dict(video=x, tokens=tokens, text_mask=mask).items()}
  step = jax.jit(train.make_train_step(model, tx, schedule, config, mesh),
                 in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                 donate_argnums=(0,))
  compiled = step.lower(abstract_state, batch).compile()
  memory = compiled.memory_analysis()
  assert 0 < memory.temp_size_in_bytes < 16 * 2**30  # Fits a v5e chip's HBM.
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  assert cost["flops"] > 0
