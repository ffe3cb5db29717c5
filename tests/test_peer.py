"""benchmarks/peer.py without the peer: the torch-style FLOP count of HLO, the rounds, the errors.

The torch side (benchmarks/peer_torch.py) needs the peer's own venv; a fake stands in for it.
"""
import importlib.util
import os
import statistics
import subprocess
import sys

import jax
from jax import lax
import jax.numpy as jnp
import pytest

from conftest import REPO, load_experiment

sys.path.insert(0, str(REPO / "benchmarks"))
import peer  # pylint: disable=g-import-not-at-top,wrong-import-position

PEER_INSTALLED = all(importlib.util.find_spec(m) for m in ("torch", "lumiere_pytorch"))


def hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).as_text(dialect="hlo")


def test_dots_count_two_flops_per_multiply_add():
  a, b = jnp.ones((8, 16)), jnp.ones((16, 32))
  assert peer.conv_dot_flops(hlo(jnp.matmul, a, b)) == 2 * 8 * 32 * 16
  x, y = jnp.ones((5, 6, 7)), jnp.ones((5, 7, 9))
  batched = hlo(lambda x, y: jnp.einsum("bij,bjk->bik", x, y), x, y)
  assert peer.conv_dot_flops(batched) == 2 * (5 * 6 * 9) * 7


def conv(x, w, groups=1):
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=groups)


def test_convolutions_count_padded_positions_and_both_gradients():
  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  forward = 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)  # Every output position sees 3x3x3 inputs.
  assert peer.conv_dot_flops(hlo(conv, x, w)) == forward
  loss = lambda x, w: jnp.sum(conv(x, w) ** 2)
  # The input and the weight gradient are one convolution each of the forward's size, as torch's
  # FlopCounterMode counts a convolution's backward.
  assert peer.conv_dot_flops(hlo(jax.grad(loss, argnums=(0, 1)), x, w)) == 3 * forward
  assert peer.conv_dot_flops(hlo(jax.grad(loss, argnums=1), x, w)) == 2 * forward


def test_grouped_convolution_contracts_over_one_group():
  x, w = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 2, 6))
  assert peer.conv_dot_flops(hlo(lambda x, w: conv(x, w, groups=2), x, w)) == (
      2 * (6 * 6 * 6) * (3 * 3 * 2))


def test_elementwise_work_is_not_counted():
  assert peer.conv_dot_flops(hlo(lambda x: jnp.sin(x) * 2 + x, jnp.ones((64, 64)))) == 0


class FakePeer:
  """peer.Peer's interface with fixed answers; records the order of all measurements."""

  def __init__(self, order):
    self.order = order
    self.info = dict(model="fake", wrapping={}, params=10, temporal_params=2, threads=2,
                     flops_per_step=6e9, versions={"torch": "0", "lumiere-pytorch": "0",
                                                   "denoising-diffusion-pytorch": "0"})
    self.step_s = iter([3.0, 5.0])

  def ask(self, **cmd):
    self.order.append(f"torch_{cmd['cmd']}")
    if cmd["cmd"] == "peak":
      return dict(matmul_peak_flops_per_s=1e10)
    return dict(step_s=next(self.step_s))


def fake_train_setup(config):
  """cpu.train_setup's interface: a one-convolution regression step on the config's clip size."""
  del config
  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))

  @jax.jit
  def step(w, batch):
    loss, grad = jax.value_and_grad(lambda w: jnp.mean(conv(batch["video"], w) ** 2))(w)
    return w - 0.1 * grad, {"loss": loss}

  return step, w, {"video": x}, w.size


def test_rounds_alternate_the_sides_and_ratios_use_the_medians(monkeypatch):
  order, jax_step_s, ran = [], iter([0.5, 0.25]), []

  def fake_time_fn(fn, min_seconds, min_reps):
    del min_seconds, min_reps
    ran.append(float(fn()))  # The compiled step runs and returns its loss.
    order.append("jax_step")
    return next(jax_step_s)

  def fake_peak(min_seconds):
    del min_seconds
    order.append("jax_peak")
    return 2e10

  monkeypatch.setattr(peer.cpu, "time_fn", fake_time_fn)
  monkeypatch.setattr(peer.cpu, "matmul_peak", fake_peak)
  monkeypatch.setattr(peer.cpu, "train_setup", fake_train_setup)
  config = load_experiment("tiny")
  r = peer.run(FakePeer(order), config, rounds=2, seconds=0.0, min_reps=1)
  assert order == ["jax_peak", "torch_peak", "jax_step", "torch_step"] * 2
  assert ran[1] < ran[0]  # The state carries over: the second step starts from updated weights.
  assert r["jax"]["step_s"] == statistics.median([0.5, 0.25])
  assert r["torch"]["step_s"] == 4.0
  flops = 2 * 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)  # Forward and weight-gradient convolution.
  assert r["jax"]["flops_per_step"] == flops
  assert r["jax"]["xla_flops_per_step"] > 0
  assert r["achieved_flops_ratio"] == pytest.approx((flops / 0.375) / (6e9 / 4.0))
  assert r["step_time_ratio"] == pytest.approx(0.375 / 4.0)
  assert r["jax"]["fraction_of_peak"] == pytest.approx(flops / 0.375 / 2e10)
  assert r["setup"]["frames"] == config.data.num_frames
  assert f"| achieved GFLOP/s | {flops / 0.375 / 1e9:.1f} | 1.5 |" in peer.table(r)


def test_peer_python_that_is_not_a_file_is_refused(tmp_path):
  with pytest.raises(ValueError, match="is not an executable file"):
    peer.Peer(str(tmp_path / "missing" / "python"), 16, 32, 4)


@pytest.mark.skipif(PEER_INSTALLED, reason="this venv has the peer")
def test_peer_python_without_the_peer_packages_is_refused():
  with pytest.raises(ValueError, match=r"cannot import the peer \(No module named"):
    peer.Peer(sys.executable, 16, 32, 4)


@pytest.mark.skipif(PEER_INSTALLED, reason="this venv has the peer")
@pytest.mark.parametrize("args, message", [
    ([], "error: --peer_python is required"),
    ([f"--peer_python={sys.executable}"], "error: the peer failed: cannot import the peer"),
    ([f"--peer_python={sys.executable}", "--configs=tiny"], "error: --configs and --sample_steps"),
])
def test_script_errors_are_one_line(args, message):
  proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "peer.py"), *args],
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr
