r"""Pod planning without a pod: AOT-compile the paper-scale configs for TPU topologies.

  python benchmarks/pod_plan.py [--quick] [--out_md=docs/pod_plan.md] \
      [--out_json=benchmarks/results/pod_plan.json]

Needs `libtpu` (`pip install -e .[tpu]`): the real TPU compiler runs on this CPU machine
(`jax.experimental.topologies`). Per topology and sharding strategy it reports what the compiler
says: per-chip memory (`memory_analysis`) against the chip's HBM, FLOPs and bytes per step
(`cost_analysis`, per chip after SPMD partitioning), a roofline step time and MFU from the
published chip figures, and the largest per-chip batch that compiles (the TPU compiler itself
rejects programs that do not fit in HBM, so "fits" means "compiled").
"""
import dataclasses
import importlib.util
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-1")  # Quiets libtpu's host probing.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # Compiling only: no TPU is claimed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import flax
import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import topologies

from lumiere_jax import modeling
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import train as train_lib
from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.diffusion import samplers
from lumiere_jax.models import model as model_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """Published per-chip figures (cloud.google.com/tpu/docs/{v4,v5e,v5p-training,v6e})."""
  prefix: str  # Topology-name prefix understood by libtpu.
  peak_flops: float  # bf16 FLOP/s.
  hbm_bytes: float
  hbm_bw: float  # Bytes/s.
  dims: int  # Torus dimensions of the topology name.
  max_chips: int  # Largest single slice.


CHIPS = {
    "v4": Chip("v4", 275e12, 32 * GIB, 1200e9, 3, 4096),
    "v5e": Chip("v5e", 197e12, 16 * GIB, 819e9, 2, 256),
    "v5p": Chip("v5p", 459e12, 95 * GIB, 2765e9, 3, 6144),
    "v6e": Chip("v6e", 918e12, 32 * GIB, 1638e9, 2, 256),
}
# Slice shapes of the Cloud TPU docs, by chip count.
SHAPES_3D = {8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8",
             512: "8x8x8", 1024: "8x8x16"}
SHAPES_2D = {8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
STRATEGIES = {"dp": "dp", "fsdp": "fsdp", "fsdp+remat": "remat"}

_QUICK = flags.DEFINE_bool("quick", False, "A ~20-minute subset instead of the full sweep.")
_OUT_MD = flags.DEFINE_string("out_md", os.path.join(REPO, "docs/pod_plan.md"), "Markdown out.")
_OUT_JSON = flags.DEFINE_string("out_json", os.path.join(REPO, "benchmarks/results/pod_plan.json"),
                                "JSON out.")
_MAX_BATCH = flags.DEFINE_integer("max_per_chip_batch", 16, "Upper end of the batch search.")
_JOBS = flags.DEFINE_list(
    "jobs", None, "Train jobs to compile instead of the preset list, as chip/chips/strategy[/search],"
    " e.g. v5p/256/fsdp+remat/search. Sampling and SSR rows are skipped unless --with_extras.")
_WITH_EXTRAS = flags.DEFINE_bool("with_extras", True, "Also compile the sampler and SSR rows.")
_RESUME = flags.DEFINE_bool("resume", True, "Keep the rows of an earlier run in --out_json and "
                            "skip the compiles they already hold.")


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
  path = os.path.join(REPO, "experiments", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"lumiere_{name}_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def topology_devices(chip: str, num_chips: int):
  shapes = SHAPES_3D if CHIPS[chip].dims == 3 else SHAPES_2D
  name = f"{CHIPS[chip].prefix}:{shapes[num_chips]}"
  return name, topologies.get_topology_desc(platform="tpu", topology_name=name).devices


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  out = dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes,
             aliased=m.alias_size_in_bytes, temporaries=m.temp_size_in_bytes,
             code=m.generated_code_size_in_bytes)
  out["peak"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  return out


def _is_oom(err: Exception) -> bool:
  text = str(err)
  return "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text or "exceeds" in text


def abstract_batch(config, batch: int, sharding) -> dict:
  x, _, tokens, mask, _ = modeling.dummy_inputs(config)
  sds = lambda a: jax.ShapeDtypeStruct((batch,) + a.shape[1:], a.dtype, sharding=sharding)
  return dict(video=sds(x), tokens=sds(tokens), text_mask=sds(mask))


def config_for(name: str, variant: str, num_chips: int, per_chip_batch: int):
  config = load_config(name, variant)
  config.mesh.shape = (num_chips, 1) if variant == "dp" else (1, num_chips)
  config.train.batch_size = per_chip_batch * num_chips
  return config


def compile_train(config, devices) -> dict:
  """AOT-compiles `train.make_train_step` exactly as `train_and_evaluate` jits it."""
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  model = modeling.build(config, config.data.vocab_size)
  _, abstract_state, state_sh, (tx, schedule) = train_lib.create_train_state(model, config, mesh)
  batch_sh = sharding_lib.batch_sharding(mesh, config.mesh)
  step = jax.jit(train_lib.make_train_step(model, tx, schedule, config, mesh),
                 in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                 donate_argnums=(0,))
  batch = abstract_batch(config, config.train.batch_size, batch_sh)
  t0 = time.perf_counter()
  lowered = step.lower(abstract_state, batch)
  compiled = lowered.compile()
  cost = _cost(compiled)
  return dict(compile_s=time.perf_counter() - t0, memory=_memory(compiled),
              flops=float(cost.get("flops", 0.0)),
              bytes=float(cost.get("bytes accessed", 0.0)),
              params=model_lib.count_params(abstract_state.params))


def compile_sample_step(config, devices, window: int = 0, overlap: int = 0) -> dict:
  """One denoising step of the CFG sampler (the scan body); MultiDiffusion windows if `window`."""
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  model = modeling.build(config, config.data.vocab_size)
  boxed = modeling.abstract_params(model, config)
  p_sh = sharding_lib.logical_to_shardings(boxed, mesh, config.mesh)
  params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        flax.linen.meta.unbox(boxed), p_sh)
  batch_sh = sharding_lib.batch_sharding(mesh, config.mesh)
  batch = abstract_batch(config, config.train.batch_size, batch_sh)
  sample_cfg = ml_collections.ConfigDict(dict(sampler="ddim", num_steps=1,
                                              guidance=config.sample.guidance, eta=0.0,
                                              clip_x0=True))
  shape = batch["video"].shape
  cond = None
  if config.model.cond_channels:
    cond = jax.ShapeDtypeStruct(shape[:-1] + (config.model.cond_channels,), jnp.float32,
                                sharding=batch_sh)

  def fn(p, tokens, mask, c):
    emb = model.apply({"params": p}, tokens, mask, method=model.encode_text)
    denoise = lambda x, t, e, m, cc: model.apply({"params": p}, x, t, e, m, cc,
                                                 method=model.denoise)
    if window:
      denoise = multidiffusion.multidiffusion(denoise, shape[1], window, overlap)
    return samplers.sample(denoise, jax.random.PRNGKey(0), shape, emb, mask, config.diffusion,
                           sample_cfg, cond=c)

  t0 = time.perf_counter()
  fn = sharding_lib.under_rules(fn, mesh, config.mesh)
  compiled = jax.jit(fn, out_shardings=batch_sh).lower(params, batch["tokens"],
                                                        batch["text_mask"], cond).compile()
  cost = _cost(compiled)
  return dict(compile_s=time.perf_counter() - t0, memory=_memory(compiled),
              flops=float(cost.get("flops", 0.0)), bytes=float(cost.get("bytes accessed", 0.0)))


def roofline(chip: Chip, flops: float, bytes_accessed: float, model_flops: float) -> dict:
  """Step time bound by compute or HBM traffic (ICI traffic and overlap are not modelled)."""
  t = max(flops / chip.peak_flops, bytes_accessed / chip.hbm_bw)
  return dict(step_s=t, mfu=model_flops / (t * chip.peak_flops) if t else 0.0,
              bound="compute" if flops / chip.peak_flops >= bytes_accessed / chip.hbm_bw
              else "memory")


def try_train(name, variant, chip, num_chips, per_chip_batch, log) -> dict:
  topo, devices = topology_devices(chip, num_chips)
  config = config_for(name, variant, num_chips, per_chip_batch)
  row = dict(config=f"{name}:{variant}", chip=chip, chips=num_chips, topology=topo,
             per_chip_batch=per_chip_batch, global_batch=config.train.batch_size)
  try:
    row.update(compile_train(config, devices))
    row["fits"] = row["memory"]["peak"] <= CHIPS[chip].hbm_bytes
  except Exception as e:  # pylint: disable=broad-except
    if not _is_oom(e):
      raise
    # The compiler lists the largest allocations after its first line: what to shard next.
    row.update(fits=False, error=str(e).splitlines()[0][:300], error_detail=str(e)[:6000])
  log(row)
  return row


def largest_batch(name, variant, chip, num_chips, log, first=None) -> tuple[int, list]:
  """Doubling then bisection over the per-chip batch; returns (largest that fits, rows)."""
  rows = [first] if first else []
  cache = {first["per_chip_batch"]: first} if first else {}

  def fits(b):
    if b not in cache:
      cache[b] = try_train(name, variant, chip, num_chips, b, log)
      rows.append(cache[b])
    return cache[b]["fits"]

  if not fits(1):
    return 0, rows
  lo, hi = 1, 2
  while hi <= _MAX_BATCH.value and fits(hi):
    lo, hi = hi, hi * 2
  hi = min(hi, _MAX_BATCH.value + 1)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if fits(mid) else (lo, mid)
  return lo, rows


def train_jobs(quick: bool) -> list:
  """(chip, chips, strategy, search the batch?) in priority order: the v5p target comes first."""
  if quick:
    return [("v5p", 256, "fsdp", False), ("v5e", 256, "fsdp+remat", False),
            ("v5p", 256, "dp", False), ("v6e", 256, "fsdp+remat", False),
            ("v4", 64, "fsdp+remat", False), ("v5p", 256, "fsdp", True)]
  return [(c, n, s, True) for c in CHIPS
          for n in sorted(SHAPES_3D if CHIPS[c].dims == 3 else SHAPES_2D)
          if n <= CHIPS[c].max_chips for s in STRATEGIES]


def parse_jobs(specs: list) -> list:
  """`chip/chips/strategy[/search]` strings -> train_jobs() tuples, checked against the tables."""
  jobs = []
  for spec in specs:
    parts = spec.split("/")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "search"):
      raise ValueError(f"--jobs entry {spec!r} is not chip/chips/strategy[/search]")
    chip, n, strategy = parts[0], int(parts[1]), parts[2]
    if chip not in CHIPS or strategy not in STRATEGIES:
      raise ValueError(f"--jobs entry {spec!r}: chip in {sorted(CHIPS)}, strategy in "
                       f"{sorted(STRATEGIES)}")
    if n not in (SHAPES_3D if CHIPS[chip].dims == 3 else SHAPES_2D):
      raise ValueError(f"--jobs entry {spec!r}: no {chip} slice of {n} chips in this table")
    jobs.append((chip, n, strategy, len(parts) == 4))
  return jobs


def plan_train(jobs: list, results: dict, log, save) -> None:
  """Compiles each job at 1 clip/chip (then searches the batch if asked), saving as it goes."""
  for chip, n, strategy, search in jobs:
    key = f"{chip}/{n}/{strategy}"
    variant = STRATEGIES[strategy]
    first = results["train"].get(key, {}).get("first") or try_train("base", variant, chip, n, 1,
                                                                     log)
    best = 1 if first["fits"] else 0
    if search and first["fits"]:
      best, _ = largest_batch("base", variant, chip, n, log, first)
    results["train"][key] = dict(first=first, largest_per_chip_batch=best, searched=search)
    save()


def summarize(results: dict) -> dict:
  """Roofline per (chip, chips, strategy) at batch 1/chip; MFU counts model FLOPs (no remat)."""
  rows = []
  model_flops_per_clip = {}
  for key, r in results["train"].items():
    chip, n, strategy = key.split("/")
    first = r["first"]
    if "flops" in first and strategy != "fsdp+remat":
      model_flops_per_clip.setdefault(chip + n, first["flops"] / first["per_chip_batch"])
  for key, r in results["train"].items():
    chip, n, strategy = key.split("/")
    first = r["first"]
    row = dict(chip=chip, chips=int(n), strategy=strategy, topology=first["topology"],
               fits_at_1=first["fits"], searched=r["searched"],
               largest_per_chip_batch=r["largest_per_chip_batch"],
               max_global_batch=r["largest_per_chip_batch"] * int(n))
    if "memory" in first:
      row.update(peak_gib=first["memory"]["peak"] / GIB,
                 args_gib=first["memory"]["arguments"] / GIB,
                 temp_gib=first["memory"]["temporaries"] / GIB,
                 flops_per_chip=first["flops"], compile_s=first["compile_s"])
      # Remat recomputes part of the forward pass: its compiled FLOPs overstate the model's, so
      # its MFU needs a row compiled without remat on the same slice (else it is left out).
      model = model_flops_per_clip.get(chip + n)
      row.update(roofline(CHIPS[chip], first["flops"], first["bytes"], model or 0.0))
      if model is None:
        row["mfu"] = None
    rows.append(row)
  return rows


def recommend(rows: list) -> dict:
  """Per topology: the fitting strategy with the best roofline MFU at its largest batch."""
  best = {}
  for r in rows:
    if not r["fits_at_1"]:
      continue
    key = (r["chip"], r["chips"])
    score = (r["mfu"] or 0.0, r["largest_per_chip_batch"])
    if key not in best or score > best[key][0]:
      best[key] = (score, r["strategy"])
  return {f"{c}/{n}": s for (c, n), (_, s) in best.items()}


def write_markdown(path: str, rows: list, rec: dict, extra: dict) -> None:
  lines = [
      "# Pod plan: paper-scale base STUNet on TPU (AOT-compiled on CPU)",
      "",
      "Generated by `python benchmarks/pod_plan.py" + (" --quick" if extra["quick"] else "")
      + "` (libtpu " + extra["libtpu"] + ", jax " + jax.__version__ + "). Every number below "
      "comes from the real TPU compiler: memory from `compiled.memory_analysis()` (per chip), "
      "FLOPs and bytes from `compiled.cost_analysis()` (per chip, after SPMD partitioning).",
      "",
      f"Model `experiments/base.py`: {extra['params'] / 1e9:.2f}B parameters, 80 frames x "
      f"128x128, bfloat16 compute, float32 params/optimizer; train FLOPs per clip "
      + (f"{extra['train_flops_per_clip'] / 1e12:.0f} TFLOP (compiler count, fwd+bwd)."
         if extra["train_flops_per_clip"] else "not known yet (needs a row without remat)."),
      "",
      "Roofline: step time = max(FLOPs / peak, bytes / HBM bandwidth) at 1 clip per chip; MFU = "
      "model FLOPs (without remat recompute) / (step time x peak). ICI collectives and their "
      "overlap are not modelled, so these are upper bounds. \"max b/chip\" is the largest "
      "per-chip batch that compiled within HBM (doubling + bisection up to "
      f"{_MAX_BATCH.value}; `-` = not searched in this run).",
      "",
      "| chip | chips | topology | strategy | fits @1 | peak GiB/chip (args + temp) | HBM GiB "
      "| TFLOP/chip/step | roofline s/step | bound | MFU | max b/chip | max global batch "
      "| compile s | recommended |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    hbm = CHIPS[r["chip"]].hbm_bytes / GIB
    rec_mark = "**yes**" if rec.get(f"{r['chip']}/{r['chips']}") == r["strategy"] else ""
    if "peak_gib" in r:
      searched = r["searched"] or not r["fits_at_1"]
      lines.append(
          f"| {r['chip']} | {r['chips']} | {r['topology']} | {r['strategy']} | "
          f"{'yes' if r['fits_at_1'] else 'no'} | {r['peak_gib']:.1f} ({r['args_gib']:.1f} + "
          f"{r['temp_gib']:.1f}) | {hbm:.0f} | {r['flops_per_chip'] / 1e12:.1f} | "
          f"{r['step_s']:.2f} | {r['bound']} | "
          f"{'-' if r['mfu'] is None else format(r['mfu'], '.0%')} | "
          f"{r['largest_per_chip_batch'] if searched else '>=1'} | "
          f"{r['max_global_batch'] if searched else '>=' + str(r['chips'])} | "
          f"{r['compile_s']:.0f} | {rec_mark} |")
    else:
      lines.append(f"| {r['chip']} | {r['chips']} | {r['topology']} | {r['strategy']} | no "
                   f"(compiler: out of HBM) | - | {hbm:.0f} | - | - | - | - | 0 | 0 | - | |")
  lines += ["", "## Sampling (one denoising step of the CFG sampler, batch doubled)", ""]
  lines += ["| chip | chips | topology | strategy | clips/chip | peak GiB/chip | TFLOP/chip/step "
            "| roofline s/step | x N steps (s) | compile s |", "|---|---|---|---|---|---|---|---|---|---|"]
  for s in extra["sample"]:
    lines.append(f"| {s['chip']} | {s['chips']} | {s['topology']} | {s['strategy']} | "
                 f"{s['per_chip_batch']} | {s['memory']['peak'] / GIB:.1f} | "
                 f"{s['flops'] / 1e12:.2f} | {s['step_s']:.3f} | {s['scan_s']:.0f} "
                 f"(N={s['num_steps']}) | {s['compile_s']:.0f} |")
  lines += ["", "## SSR", "", extra["ssr_note"], ""]
  lines += extra["notes"]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def sample_rows(quick: bool, log) -> list:
  out = []
  targets = [("v5p", 256)] if quick else [(c, 256 if c != "v4" else 64)
                                                         for c in CHIPS]
  for chip, n in targets:
    topo, devices = topology_devices(chip, n)
    config = config_for("base", "fsdp", n, 1)
    r = compile_sample_step(config, devices)
    rf = roofline(CHIPS[chip], r["flops"], r["bytes"], r["flops"])
    r.update(chip=chip, chips=n, topology=topo, strategy="fsdp", per_chip_batch=1,
             num_steps=config.sample.num_steps, step_s=rf["step_s"],
             scan_s=rf["step_s"] * config.sample.num_steps)
    log(r)
    out.append(r)
  return out


def ssr_rows(log) -> tuple[list, str]:
  """SSR train step and MultiDiffusion sampling step on v5e if `experiments/ssr.py:paper` exists."""
  path = os.path.join(REPO, "experiments", "ssr.py")
  if not os.path.exists(path):
    return [], "`experiments/ssr.py` does not exist yet, so the SSR model is not planned here."
  try:
    config = load_config("ssr", "paper")
  except ValueError as e:
    return [], f"`experiments/ssr.py:paper` could not be loaded: {e}"
  rows = []
  n = 256
  topo, devices = topology_devices("v5e", n)
  config.mesh.shape = (1, n)
  config.train.batch_size = n
  for what in ("train", "sample"):
    try:
      if what == "train":
        r = compile_train(config, devices)
      else:
        md = config.get("multidiffusion", ml_collections.ConfigDict(dict(window=16, overlap=2)))
        r = compile_sample_step(config, devices, md.window, md.overlap)
      r["fits"] = r["memory"]["peak"] <= CHIPS["v5e"].hbm_bytes
    except Exception as e:  # pylint: disable=broad-except
      r = dict(fits=False, error=str(e).splitlines()[0][:300])
    r.update(what=what, topology=topo, chips=n)
    log(r)
    rows.append(r)
  note = "\n".join(
      f"- SSR {r['what']} on v5e {topo} (1 clip/chip): "
      + (f"peak {r['memory']['peak'] / GIB:.1f} GiB of 16, fits={r['fits']}, "
         f"{r['flops'] / 1e12:.1f} TFLOP/chip/step" if "memory" in r else f"failed: {r['error']}")
      for r in rows)
  return rows, note


def main(argv):
  del argv
  t0 = time.perf_counter()
  import libtpu  # pylint: disable=g-import-not-at-top,unused-import
  libtpu_version = getattr(libtpu, "__version__", "?")
  results = dict(train={}, sample=[], ssr=[], rows=[], ssr_note="not compiled yet")
  if _RESUME.value and os.path.exists(_OUT_JSON.value):
    with open(_OUT_JSON.value, encoding="utf-8") as f:
      results.update(json.load(f)["raw"])

  def log(row):
    mem = row["memory"]["peak"] / GIB if "memory" in row else float("nan")
    print(f"[{time.strftime('%H:%M:%S')}] {row.get('config', row.get('what', 'sample')):<18} "
          f"{row.get('topology')!s:<12} b/chip={row.get('per_chip_batch', 1):<3} "
          f"fits={row.get('fits')!s:<5} peak={mem:6.1f} GiB "
          f"compile={row.get('compile_s', 0):5.1f}s {row.get('error', '')[:80]}", flush=True)
    results["rows"].append(row)

  def save():
    """Rewrites both outputs after every compile, so a long sweep leaves partial results."""
    rows = summarize(results)
    rec = recommend(rows)
    done = [r["first"] for r in results["train"].values() if "params" in r["first"]]
    flops_clip = next((r["first"]["flops"] for k, r in results["train"].items()
                       if k.endswith("/fsdp") and "flops" in r["first"]), 0.0)
    notes = [
        "## Notes",
        "",
        "- Chip figures (bf16 peak, HBM, HBM bandwidth) are the Cloud TPU documentation's: "
        + ", ".join(f"{c} {v.peak_flops / 1e12:.0f} TFLOP/s / {v.hbm_bytes / GIB:.0f} GiB / "
                    f"{v.hbm_bw / 1e9:.0f} GB/s" for c, v in CHIPS.items()) + ".",
        "- v4 and v5p are megacore chips: one JAX device per chip (2 TensorCores).",
        "- The batch is sharded over all chips, so the global batch is a multiple of the chip "
        "count; fewer clips than chips would need activation (spatial/temporal) sharding, "
        "which the model does not annotate.",
        "- Gradient accumulation (`train.grad_accum`) multiplies the global batch at the same "
        "per-chip memory.",
        f"- Wall time of this run so far: {(time.perf_counter() - t0) / 60:.1f} min on a "
        "shared 2-core CPU host.",
    ]
    if done:
      write_markdown(_OUT_MD.value, rows, rec, dict(
          quick=_QUICK.value, libtpu=libtpu_version, params=done[0]["params"],
          train_flops_per_clip=flops_clip, sample=results["sample"],
          ssr_note=results["ssr_note"], notes=notes))
    os.makedirs(os.path.dirname(os.path.abspath(_OUT_JSON.value)), exist_ok=True)
    with open(_OUT_JSON.value, "w", encoding="utf-8") as f:
      json.dump(dict(summary=rows, recommended=rec, raw=results), f, indent=2, default=str)

  jobs = parse_jobs(_JOBS.value) if _JOBS.value else train_jobs(_QUICK.value)
  plan_train(jobs[:1], results, log, save)  # The headline number first.
  if _WITH_EXTRAS.value:
    results["sample"] = sample_rows(_QUICK.value, log)
    save()
    results["ssr"], results["ssr_note"] = ssr_rows(log)
    save()
  plan_train(jobs[1:], results, log, save)
  if os.path.exists(_OUT_MD.value):
    print(open(_OUT_MD.value, encoding="utf-8").read())
  else:  # Nothing compiled within HBM yet: the markdown table needs one fitting compile.
    print(f"No configuration fit; see {_OUT_JSON.value} for what the compiler said.")


if __name__ == "__main__":
  app.run(main)
