"""The XLA flags lumiere_jax sets on import, and that they keep the model the same function."""
import os
import subprocess
import sys

import numpy as np

from lumiere_jax import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = "xla_cpu_experimental_ynn_fusion_type"


def test_defaults_are_appended_to_other_flags():
  out = xla_flags.with_defaults("--xla_force_host_platform_device_count=8")
  assert out == f"--xla_force_host_platform_device_count=8 --{FLAG}=-individual_convolution"
  assert xla_flags.with_defaults("") == f"--{FLAG}=-individual_convolution"


def test_other_defaults_such_as_the_test_runs_are_appended_the_same_way():
  out = xla_flags.with_defaults("--a=1", {"a": "2", "b": "3"})
  assert out == "--a=1 --b=3"


def test_a_flag_the_user_set_wins_and_applying_twice_changes_nothing():
  assert xla_flags.with_defaults(f"--{FLAG}=default") == f"--{FLAG}=default"
  once = xla_flags.with_defaults("")
  assert xla_flags.with_defaults(once) == once


# Weight and input gradients of a 3x3 and a temporal 1D convolution: the ops the flag moves from
# YNNPACK to XLA's own kernels. Written as .npy to the path in argv[1].
_GRADS = r"""
import sys
import numpy as np
{imports}
import jax, jax.numpy as jnp
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(2, 8, 16, 16, 32)), jnp.float32)
w2 = jnp.asarray(rng.normal(size=(3, 3, 32, 32)) / 17, jnp.float32)
w1 = jnp.asarray(rng.normal(size=(3, 32, 32)) / 10, jnp.float32)
def loss(x, w2, w1):
  b, t, h, w, c = x.shape
  y = jax.lax.conv_general_dilated(x.reshape(b * t, h, w, c), w2, (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = y.reshape(b, t, h, w, c).transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, c)
  y = jax.lax.conv_general_dilated(y, w1, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
  return jnp.sum(jnp.tanh(y) ** 2)
grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, w2, w1)
np.save(sys.argv[1], np.concatenate([np.ravel(g) for g in grads]))
"""


def _grads(tmp_path, name, imports, env):
  path = str(tmp_path / f"{name}.npy")
  code = _GRADS.format(imports=imports)
  subprocess.run([sys.executable, "-c", code, path], check=True, cwd=REPO, env=env)
  return np.load(path)


def test_importing_the_package_sets_the_flag_and_keeps_convolution_gradients(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-c", "import os, lumiere_jax; print(os.environ['XLA_FLAGS'])"],
                       check=True, cwd=REPO, env=env, capture_output=True, text=True).stdout
  assert f"--{FLAG}=-individual_convolution" in out
  with_flag = _grads(tmp_path, "with", "import lumiere_jax", env)
  # YNNPACK's own convolutions, as XLA picks them without the flag.
  without = _grads(tmp_path, "without", "", env)
  assert with_flag.shape == without.shape and np.abs(without).max() > 1.0
  # Both are float32 sums over <= 3*3*32*... terms in different orders: agree to float32
  # rounding relative to the largest gradient, not bitwise.
  np.testing.assert_allclose(with_flag, without, rtol=0, atol=1e-5 * np.abs(without).max())
