r"""CPU efficiency of the train step and the sampler, relative to this machine's matmul peak.

  python benchmarks/cpu.py [--out=benchmarks/results/cpu.json] [--configs=tiny,mid]

Machines differ (docs/benchmarks.md), so the float32 matmul peak is measured in the same run and
every step rate is reported as a fraction of it. FLOPs per step come from XLA's own count
(`compiled.cost_analysis()`), not from a hand formula.
"""
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import experiments
from lumiere_jax import modeling
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import train as train_lib
from lumiere_jax.diffusion import samplers
from lumiere_jax.models import model as model_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"tiny": ("tiny", ""), "mid": ("base", "mid")}

_OUT = flags.DEFINE_string("out", os.path.join(REPO, "benchmarks/results/cpu.json"),
                           "Where to write the JSON results.")
_CONFIGS = flags.DEFINE_list("configs", ["tiny", "mid"], f"Configs to time: {sorted(CONFIGS)}.")
_SECONDS = flags.DEFINE_float("seconds", 15.0, "Minimum timed wall time per measurement.")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 8, "Denoising steps N of the timed sampler.")


def time_fn(fn, min_seconds: float, min_reps: int = 3) -> float:
  """Median seconds per call after one warm-up; repeats until `min_seconds` have passed."""
  jax.block_until_ready(fn())
  times, start = [], time.perf_counter()
  while len(times) < min_reps or time.perf_counter() - start < min_seconds:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def flops_of(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else 0.0


def compile_timed(jitted, *args):
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


def matmul_peak(min_seconds: float, n: int = 2048) -> float:
  """float32 FLOP/s of a jitted n x n matmul: what XLA's CPU backend reaches at best here."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  return 2.0 * n**3 / time_fn(lambda: f(a, b), min_seconds, min_reps=10)


def random_batch(config, batch_size: int) -> dict:
  x, _, tokens, mask, _ = modeling.dummy_inputs(config, batch_size)
  rng = np.random.default_rng(0)
  video = rng.uniform(-1, 1, x.shape).astype(np.float32)
  tokens = rng.integers(1, config.data.vocab_size, tokens.shape).astype(np.int32)
  return dict(video=jnp.asarray(video), tokens=jnp.asarray(tokens),
              text_mask=jnp.ones(mask.shape, bool))


def train_setup(config):
  """(jitted train step, initial state, random batch, parameter count) of `config`."""
  mesh = sharding_lib.create_mesh(config.mesh)
  model = modeling.build(config, config.data.vocab_size)
  init_fn, abstract, state_sh, (tx, schedule) = train_lib.create_train_state(model, config, mesh)
  state = init_fn(jax.random.PRNGKey(0))
  batch = random_batch(config, config.train.batch_size)
  step = jax.jit(train_lib.make_train_step(model, tx, schedule, config, mesh),
                 in_shardings=(state_sh, sharding_lib.batch_sharding(mesh, config.mesh)),
                 out_shardings=(state_sh, None), donate_argnums=(0,))
  return step, state, batch, model_lib.count_params(abstract.params)


def bench_train(config, peak: float, min_seconds: float) -> dict:
  step, state, batch, params = train_setup(config)
  compiled, compile_s = compile_timed(step, state, batch)
  flops = flops_of(compiled)
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], batch)
    return metrics["loss"]

  sec = time_fn(run, min_seconds)
  return dict(params=params, batch=config.train.batch_size,
              compile_s=compile_s, flops_per_step=flops, step_s=sec, steps_per_s=1.0 / sec,
              flops_per_s=flops / sec, fraction_of_peak=flops / sec / peak)


def bench_sample(config, num_steps: int, min_seconds: float) -> dict:
  """Scanned sampler vs. N calls of one jitted guided forward pass (same batch, CFG doubling)."""
  model = modeling.build(config, config.data.vocab_size)
  batch = random_batch(config, config.sample.batch_size)
  params = jax.jit(lambda r: model.init(r, *modeling.dummy_inputs(config))["params"])(
      jax.random.PRNGKey(0))
  sample_cfg = ml_collections.ConfigDict(dict(
      sampler="ddim", num_steps=num_steps, guidance=config.sample.guidance, eta=0.0,
      clip_x0=True))
  shape = batch["video"].shape

  def denoiser(p):
    return lambda x, t, e, m, c: model.apply({"params": p}, x, t, e, m, c, method=model.denoise)

  def encode(p, tokens, mask):
    return model.apply({"params": p}, tokens, mask, method=model.encode_text)

  @jax.jit
  def sample(p, tokens, mask, rng):
    return samplers.sample(denoiser(p), rng, shape, encode(p, tokens, mask), mask,
                           config.diffusion, sample_cfg)

  @jax.jit
  def forward(p, x, emb, mask):
    fn = samplers.guided_denoise(denoiser(p), sample_cfg.guidance)
    return fn(x, jnp.full((shape[0],), 0.5), emb, mask, None)

  rng = jax.random.PRNGKey(1)
  sample_c, sample_compile_s = compile_timed(sample, params, batch["tokens"],
                                             batch["text_mask"], rng)
  emb = jax.jit(encode)(params, batch["tokens"], batch["text_mask"])
  forward_c, forward_compile_s = compile_timed(forward, params, batch["video"], emb,
                                               batch["text_mask"])
  scan_s = time_fn(lambda: sample_c(params, batch["tokens"], batch["text_mask"], rng),
                   min_seconds)
  fwd_s = time_fn(lambda: forward_c(params, batch["video"], emb, batch["text_mask"]),
                  min_seconds)
  return dict(batch=shape[0], num_steps=num_steps, guidance=sample_cfg.guidance,
              sample_compile_s=sample_compile_s, forward_compile_s=forward_compile_s,
              sample_s=scan_s, videos_per_s=shape[0] / scan_s, forward_s=fwd_s,
              forward_flops=flops_of(forward_c),
              scan_overhead=scan_s / (num_steps * fwd_s) - 1.0)


def main(argv):
  del argv
  unknown = set(_CONFIGS.value) - set(CONFIGS)
  if unknown:
    raise ValueError(f"unknown --configs {sorted(unknown)}; use {sorted(CONFIGS)}")
  peak = matmul_peak(_SECONDS.value)
  print(f"float32 2048^2 matmul peak: {peak / 1e9:.1f} GFLOP/s", flush=True)
  results = dict(devices=str(jax.devices()), jax=jax.__version__, cpu_count=os.cpu_count(),
                 matmul_peak_flops_per_s=peak, configs={})
  for name in _CONFIGS.value:
    config = experiments.load(*CONFIGS[name])
    train = bench_train(config, peak, _SECONDS.value)
    print(f"{name} train: {train}", flush=True)
    sample = bench_sample(config, _SAMPLE_STEPS.value, _SECONDS.value)
    print(f"{name} sample: {sample}", flush=True)
    results["configs"][name] = dict(train=train, sample=sample)

  print(f"\nmatmul peak {peak / 1e9:.1f} GFLOP/s (float32, 2048^2, jit)")
  print("| config | params | batch | GFLOP/step | s/step | GFLOP/s | of peak | compile s "
        "| videos/s | scan overhead |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for name, r in results["configs"].items():
    t, s = r["train"], r["sample"]
    print(f"| {name} | {t['params'] / 1e6:.2f}M | {t['batch']} | {t['flops_per_step'] / 1e9:.1f} "
          f"| {t['step_s']:.3f} | {t['flops_per_s'] / 1e9:.1f} | {t['fraction_of_peak']:.1%} "
          f"| {t['compile_s']:.1f} | {s['videos_per_s']:.3f} | {s['scan_overhead']:+.1%} |")
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
