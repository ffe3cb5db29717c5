r"""The lumiere-pytorch side of `benchmarks/peer.py`: the peer's model, train step, FLOPs, timings.

Runs in the peer's own venv (docs/benchmarks.md, "Side by side with lumiere-pytorch") and imports
only torch and the peer packages. peer.py starts it and talks to it in JSON lines: once the model
is built it prints {"ready": true, ...} (parameters, FLOPs per step, versions), then answers each
command read from stdin, {"cmd": "peak" | "step", "seconds": s, "min_reps": n}, with one line,
until stdin closes. A failure is one line {"error": "..."} and exit status 1.

The peer is denoising-diffusion-pytorch's KarrasUnet (`--dim`, default 32) inflated by
lumiere-pytorch's MPLumiere (WRAPPING below). lumiere-pytorch has no training code and freezes the
wrapped U-Net; here every parameter trains, as in the jax step, with that step's recipe:
v-prediction MSE under the cosine schedule, gradient clipping to norm 1, Adam, an EMA of the
parameters.
"""
import argparse
import json
import math
import statistics
import sys
import time


def _reply(obj: dict) -> None:
  print(json.dumps(obj), flush=True)


try:
  import importlib.metadata
  import importlib.util
  import types

  import torch
  from torch.utils.flop_counter import FlopCounterMode
  from lumiere_pytorch import MPLumiere
  # denoising_diffusion_pytorch/__init__.py imports its Trainer and with it torchvision, whose
  # PyPI wheel is built against the CUDA torch and does not load beside the CPU one. KarrasUnet
  # needs only torch: its package is entered without running __init__.py.
  _SPEC = importlib.util.find_spec("denoising_diffusion_pytorch")
  if _SPEC is None:
    raise ImportError("No module named 'denoising_diffusion_pytorch'")
  _PKG = types.ModuleType(_SPEC.name)
  _PKG.__path__ = list(_SPEC.submodule_search_locations)
  sys.modules[_SPEC.name] = _PKG
  from denoising_diffusion_pytorch.karras_unet import KarrasUnet
except ImportError as e:
  _reply({"error": f"cannot import the peer ({e}); create its venv as docs/benchmarks.md says"})
  sys.exit(1)

# Where MPLumiere inserts its temporal modules into KarrasUnet(image_size=32, 3 downsamplings):
# a conv inflation block (3x3 spatial + 1D temporal conv) after every block that changes the
# resolution and after both middle blocks, temporal attention at 4x4, and temporal down/upsampling
# at the 16->8 and 8->4 resolution changes, so 16 frames -> 8 -> 4 as in base.py:mid.
WRAPPING = dict(
    conv_module_names=["downs.4", "downs.9", "downs.14", "mids.0", "mids.1", "ups.5", "ups.11",
                       "ups.17"],
    attn_module_names=["mids.0"],
    downsample_module_names=["downs.9", "downs.14"],
    upsample_module_names=["ups.5", "ups.11"])


def time_fn(fn, min_seconds: float, min_reps: int) -> float:
  """benchmarks/cpu.py's rule: one warm-up, median over >= min_seconds and >= min_reps calls."""
  fn()
  times, start = [], time.perf_counter()
  while len(times) < min_reps or time.perf_counter() - start < min_seconds:
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def matmul_peak(min_seconds: float, n: int = 2048) -> float:
  a, b = torch.randn(n, n), torch.randn(n, n)
  return 2.0 * n**3 / time_fn(lambda: torch.matmul(a, b), min_seconds, min_reps=10)


def build_step(frames: int, size: int, batch: int, dim: int):
  """(train step, all parameters) of the wrapped KarrasUnet on a fixed random batch."""
  torch.manual_seed(0)
  unet = KarrasUnet(image_size=size, dim=dim, channels=3)
  model = MPLumiere(unet, image_size=size, unet_time_kwarg="time", **WRAPPING)
  params = list(torch.nn.Module.parameters(model))  # Lumiere.parameters() lists only temporal.
  for p in params:
    p.requires_grad_(True)
  model.train()
  opt = torch.optim.Adam(params, lr=2e-3, betas=(0.9, 0.99))
  ema = [p.detach().clone() for p in params]
  video = torch.rand(batch, 3, frames, size, size) * 2 - 1

  def step():
    t = torch.rand(batch)
    alpha = torch.cos(0.5 * math.pi * t).view(-1, 1, 1, 1, 1)
    sigma = torch.sin(0.5 * math.pi * t).view(-1, 1, 1, 1, 1)
    noise = torch.randn_like(video)
    pred = model(alpha * video + sigma * noise, time=t)
    loss = torch.nn.functional.mse_loss(pred, alpha * noise - sigma * video)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(ema, params, 1 - 0.99)  # pylint: disable=protected-access
    return loss

  return step, model, params


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, required=True)
  parser.add_argument("--size", type=int, required=True)
  parser.add_argument("--batch", type=int, required=True)
  parser.add_argument("--dim", type=int, default=32, help="KarrasUnet base width.")
  args = parser.parse_args()
  step, model, params = build_step(args.frames, args.size, args.batch, args.dim)
  with FlopCounterMode(display=False) as counter:
    step()
  temporal = sum(p.numel() for p in model.parameters())
  versions = {name: importlib.metadata.version(name) for name in
              ("torch", "lumiere-pytorch", "denoising-diffusion-pytorch")}
  _reply(dict(ready=True, params=sum(p.numel() for p in params), temporal_params=temporal,
              flops_per_step=float(counter.get_total_flops()), threads=torch.get_num_threads(),
              versions=versions,
              model=f"KarrasUnet(dim={args.dim}) in MPLumiere", wrapping=WRAPPING))
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["cmd"] == "peak":
      _reply(dict(matmul_peak_flops_per_s=matmul_peak(cmd["seconds"])))
    elif cmd["cmd"] == "step":
      _reply(dict(step_s=time_fn(step, cmd["seconds"], cmd["min_reps"])))
    else:
      _reply({"error": f"unknown command {cmd['cmd']!r}"})
      sys.exit(1)


if __name__ == "__main__":
  main()
