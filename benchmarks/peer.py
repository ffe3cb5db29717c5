r"""lumiere_jax's train step side by side with the PyTorch Lumiere (lumiere-pytorch), in one run.

  python benchmarks/peer.py --peer_python=<peer venv>/bin/python [--rounds=3] [--seconds=15] \
      [--min_reps=3] [--out=benchmarks/results/peer.json]

This script installs nothing: the peer (torch, lumiere-pytorch, denoising-diffusion-pytorch) lives
in its own venv, made as docs/benchmarks.md ("Side by side with lumiere-pytorch") says, where
`peer_torch.py` builds it and times it on request. Both sides train at base.py:mid's frames, size
and batch; rounds alternate jax and torch (matmul peak, then train step) so a change of machine
load hits both, and each number is the median over the rounds.

FLOPs are counted the same way on both sides: torch's FlopCounterMode counts only the matmuls and
convolutions (2 per multiply-add, the backward pass included), so the jax step's are counted the
same way from its HLO (`conv_dot_flops`); XLA's own count, which adds elementwise work, is
reported beside it. `--out`, `--seconds` are benchmarks/cpu.py's flags (imported with its helpers).
"""
import json
import math
import os
import re
import statistics
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax

import cpu
import experiments

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_SCRIPT = os.path.join(HERE, "peer_torch.py")

_PEER_PYTHON = flags.DEFINE_string("peer_python", None,
                                   "Python of the peer's venv (docs/benchmarks.md).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of (jax, torch) measurements.")
_MIN_REPS = flags.DEFINE_integer("min_reps", 3, "Minimum timed train steps per side and round.")
flags.FLAGS.set_default("out", os.path.join(cpu.REPO, "benchmarks/results/peer.json"))

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*\w+\[(?P<shape>[\d,]*)\]\S*\s+"
    r"(?P<op>[\w\-]+)\((?P<operands>[^)]*)\)(?P<attrs>.*)$")


def _dims(shape: str) -> list[int]:
  return [int(d) for d in shape.split(",") if d]


def conv_dot_flops(hlo_text: str) -> float:
  """2 x output elements x contracted size, summed over the convolutions and dots of HLO text.

  What torch's FlopCounterMode counts: padded positions included, elementwise work not. Each
  instruction counts once (a while loop's body is not multiplied by its trip count).
  """
  shapes, total = {}, 0.0
  instructions = [m for m in map(_INSTRUCTION.match, hlo_text.splitlines()) if m]
  for m in instructions:
    shapes[m["name"]] = _dims(m["shape"])
  for m in instructions:
    if m["op"] not in ("convolution", "dot"):
      continue
    operands = [o.split()[-1].lstrip("%") for o in m["operands"].split(",")]
    out = math.prod(_dims(m["shape"]))
    if m["op"] == "dot":
      lhs = shapes[operands[0]]
      dims = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", m["attrs"])
      contracted = math.prod(lhs[d] for d in _dims(dims.group(1))) if dims else 1
    else:
      kernel = shapes[operands[1]]
      kernel_labels = re.search(r"dim_labels=\w+_(\w+)->", m["attrs"]).group(1)
      contracted = math.prod(kernel) // kernel[kernel_labels.index("o")]
    total += 2.0 * out * contracted
  return total


class Peer:
  """The torch side: peer_torch.py in the peer's venv, driven by JSON lines."""

  def __init__(self, python: str, frames: int, size: int, batch: int):
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
      raise ValueError(f"--peer_python={python!r} is not an executable file; make the peer's "
                       "venv as docs/benchmarks.md says")
    self._proc = subprocess.Popen(
        [python, PEER_SCRIPT, f"--frames={frames}", f"--size={size}", f"--batch={batch}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.info = self._answer()

  def _answer(self) -> dict:
    for line in self._proc.stdout:
      try:
        answer = json.loads(line)
      except json.JSONDecodeError:
        continue  # A library's own output.
      if not isinstance(answer, dict):
        continue
      if "error" in answer:
        self.close()
        raise ValueError(f"the peer failed: {answer['error']}")
      return answer
    status = self._proc.wait()
    raise ValueError(f"the peer exited with status {status} before answering (its stderr is above)")

  def ask(self, **cmd) -> dict:
    self._proc.stdin.write(json.dumps(cmd) + "\n")
    self._proc.stdin.flush()
    return self._answer()

  def close(self) -> None:
    if self._proc.stdin and not self._proc.stdin.closed:
      self._proc.stdin.close()
    self._proc.wait()


def machine() -> dict:
  with open("/proc/cpuinfo", encoding="utf-8") as f:
    cpuinfo = f.read()
  model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
  return dict(cpu=model.group(1) if model else "unknown", cpu_count=os.cpu_count(),
              avx512=bool(re.search(r"\bavx512f\b", cpuinfo)), jax_devices=str(jax.devices()))


def run(peer: Peer, config, rounds: int, seconds: float, min_reps: int) -> dict:
  """Both sides' FLOPs, then `rounds` of (jax peak, torch peak, jax step, torch step)."""
  step, state, batch, params = cpu.train_setup(config)
  lowered = step.lower(state, batch)
  flops = conv_dot_flops(lowered.as_text(dialect="hlo"))
  compiled = lowered.compile()
  holder = [state]

  def train():
    holder[0], metrics = compiled(holder[0], batch)
    return metrics["loss"]

  measurements = {
      "jax_peak": lambda: cpu.matmul_peak(seconds),
      "torch_peak": lambda: peer.ask(cmd="peak", seconds=seconds)["matmul_peak_flops_per_s"],
      "jax_step_s": lambda: cpu.time_fn(train, seconds, min_reps),
      "torch_step_s": lambda: peer.ask(cmd="step", seconds=seconds, min_reps=min_reps)["step_s"],
  }
  per_round = {k: [] for k in measurements}
  for r in range(rounds):
    for key, measure in measurements.items():
      per_round[key].append(measure())
      print(f"round {r + 1}/{rounds}: {key} {per_round[key][-1]:.4g}", flush=True)
  med = {k: statistics.median(v) for k, v in per_round.items()}
  jax_side = dict(model="experiments/base.py:mid", params=params, flops_per_step=flops,
                  xla_flops_per_step=cpu.flops_of(compiled), step_s=med["jax_step_s"],
                  matmul_peak_flops_per_s=med["jax_peak"], flops_per_s=flops / med["jax_step_s"])
  info = peer.info
  torch_side = dict(model=info["model"], wrapping=info["wrapping"], params=info["params"],
                    temporal_params=info["temporal_params"], threads=info["threads"],
                    flops_per_step=info["flops_per_step"], step_s=med["torch_step_s"],
                    matmul_peak_flops_per_s=med["torch_peak"],
                    flops_per_s=info["flops_per_step"] / med["torch_step_s"])
  for side in (jax_side, torch_side):
    side["fraction_of_peak"] = side["flops_per_s"] / side["matmul_peak_flops_per_s"]
  return dict(
      machine=machine(), versions=dict(jax=jax.__version__, **info["versions"]),
      setup=dict(frames=config.data.num_frames, size=config.data.resolution,
                 batch=config.train.batch_size, rounds=rounds, seconds=seconds,
                 min_reps=min_reps),
      jax=jax_side, torch=torch_side, rounds=per_round,
      achieved_flops_ratio=jax_side["flops_per_s"] / torch_side["flops_per_s"],
      step_time_ratio=jax_side["step_s"] / torch_side["step_s"])


def table(r: dict) -> str:
  rows = ["| | lumiere_jax `base.py:mid` | lumiere-pytorch "
          f"{r['versions']['lumiere-pytorch']} ({r['torch']['model']}) |", "|---|---|---|"]
  j, t = r["jax"], r["torch"]
  cells = [("params", lambda s: f"{s['params'] / 1e6:.1f}M"),
           ("GFLOP per step (conv + matmul)", lambda s: f"{s['flops_per_step'] / 1e9:.1f}"),
           ("train step, s (median)", lambda s: f"{s['step_s']:.3f}"),
           ("achieved GFLOP/s", lambda s: f"{s['flops_per_s'] / 1e9:.1f}"),
           ("float32 2048^2 matmul peak, GFLOP/s",
            lambda s: f"{s['matmul_peak_flops_per_s'] / 1e9:.1f}"),
           ("fraction of own peak", lambda s: f"{s['fraction_of_peak']:.1%}")]
  rows += [f"| {name} | {fmt(j)} | {fmt(t)} |" for name, fmt in cells]
  rows.append(f"| XLA's own count, GFLOP per step | {j['xla_flops_per_step'] / 1e9:.1f} | |")
  return "\n".join(rows + [
      "", f"achieved FLOP/s, jax / torch: {r['achieved_flops_ratio']:.2f}x; "
      f"step time, jax / torch: {r['step_time_ratio']:.2f}"])


def main(argv):
  del argv
  if _PEER_PYTHON.value is None:
    sys.exit("error: --peer_python is required: the python of the peer's venv "
             "(docs/benchmarks.md)")
  if flags.FLAGS["configs"].present or flags.FLAGS["sample_steps"].present:
    sys.exit("error: --configs and --sample_steps are benchmarks/cpu.py's; peer.py times "
             "base.py:mid's train step only")
  config = experiments.load("base", "mid")
  try:
    peer = Peer(_PEER_PYTHON.value, config.data.num_frames, config.data.resolution,
                config.train.batch_size)
  except ValueError as e:
    sys.exit(f"error: {e}")
  try:
    results = run(peer, config, _ROUNDS.value, flags.FLAGS.seconds, _MIN_REPS.value)
  finally:
    peer.close()
  print("\n" + table(results))
  out = flags.FLAGS.out
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
