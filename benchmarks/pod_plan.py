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
import importlib.metadata
import json
import os
import re
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-1")  # Quiets libtpu's host probing.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # Compiling only: no TPU is claimed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
from jax.experimental import topologies

import experiments
from lumiere_jax import modeling
from lumiere_jax import sample as sample_lib
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import train as train_lib
from lumiere_jax.diffusion import multidiffusion
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
  ici_bw: float  # Bidirectional inter-chip interconnect bytes/s per chip.


CHIPS = {
    # v4's page gives 2400 Gbps one way; the others give the bidirectional figure.
    "v4": Chip("v4", 275e12, 32 * GIB, 1200e9, 3, 4096, 2 * 2400e9 / 8),
    "v5e": Chip("v5e", 197e12, 16 * GIB, 819e9, 2, 256, 400e9),
    "v5p": Chip("v5p", 459e12, 95 * GIB, 2765e9, 3, 6144, 1200e9),
    "v6e": Chip("v6e", 918e12, 32 * GIB, 1638e9, 2, 256, 800e9),
}
# Slice shapes of the Cloud TPU docs, by chip count.
SHAPES_3D = {8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8",
             512: "8x8x8", 1024: "8x8x16"}
SHAPES_2D = {8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
STRATEGIES = {"dp": "dp", "fsdp": "fsdp", "fsdp+remat": "remat"}
# ... and `fsdp+remat+framesK` / `fsdp+remat+heightK`: each clip split across K chips
# (`experiments/base.py:framesK`); batch sizes of these rows count clips per K-chip group.
_SPLIT_STRATEGY = re.compile(r"fsdp\+remat\+((?:frames|height)([1-9][0-9]*))")


def strategy_variant(strategy: str) -> str:
  """The `experiments/base.py` variant of a strategy name; ValueError if there is none."""
  split = _SPLIT_STRATEGY.fullmatch(strategy)
  if strategy not in STRATEGIES and not split:
    raise ValueError(f"unknown strategy {strategy!r}: use {sorted(STRATEGIES)} or "
                     "fsdp+remat+framesK / fsdp+remat+heightK")
  return split.group(1) if split else STRATEGIES[strategy]


def clip_split(strategy_or_variant: str) -> int:
  """K of a strategy or variant that splits each clip across K chips, else 1."""
  m = re.search(r"(?:frames|height)([1-9][0-9]*)$", strategy_or_variant)
  return int(m.group(1)) if m else 1

_QUICK = flags.DEFINE_bool("quick", False, "A ~20-minute subset instead of the full sweep.")
_OUT_MD = flags.DEFINE_string("out_md", os.path.join(REPO, "docs/pod_plan.md"), "Markdown out.")
_OUT_JSON = flags.DEFINE_string("out_json", os.path.join(REPO, "benchmarks/results/pod_plan.json"),
                                "JSON out.")
_MAX_BATCH = flags.DEFINE_integer("max_per_chip_batch", 16, "Upper end of the batch search.")
_JOBS = flags.DEFINE_list(
    "jobs", None, "Train jobs to compile instead of the preset list, as chip/chips/strategy[/search],"
    " e.g. v5p/256/fsdp+remat/search. Sampling and SSR rows are skipped unless --with_extras.")
_WITH_EXTRAS = flags.DEFINE_bool("with_extras", True, "Also compile the sampler and SSR rows.")
_SAMPLE_ON = flags.DEFINE_list(
    "sample_on", None, "chip/chips slices for the sampling rows (default: v5p/256 with --quick, "
    "else 256 chips of each chip, 64 of v4).")
_RESUME = flags.DEFINE_bool("resume", True, "Keep the rows of an earlier run in --out_json and "
                            "skip the compiles they already hold.")


def required_libtpu() -> str:
  """The libtpu release that `jax[tpu]` pins for the installed jax, e.g. "0.0.42.*"."""
  for requirement in importlib.metadata.requires("jax") or ():
    m = re.fullmatch(r'libtpu\s*==\s*([0-9.*]+)\s*;\s*extra\s*==\s*"tpu"', requirement)
    if m:
      return m.group(1)
  raise ValueError(f"jax {jax.__version__} does not pin libtpu in its tpu extra")


def libtpu_matches(version: str, pin: str) -> bool:
  """Whether `version` satisfies `==pin` ("0.0.42.*" matches "0.0.42" and "0.0.42.1")."""
  if pin.endswith(".*"):
    return version == pin[:-2] or version.startswith(pin[:-1])
  return version == pin


def installed_libtpu() -> str:
  """The installed libtpu's version; a one-line error if it is not the one jax[tpu] pins (the
  plan must describe the compiler that `pip install -e .[tpu]` gives)."""
  try:
    version = importlib.metadata.version("libtpu")
  except importlib.metadata.PackageNotFoundError:
    sys.exit("error: libtpu is not installed: pip install -e .[tpu] -c constraints.txt")
  if not libtpu_matches(version, required_libtpu()):
    sys.exit(f"error: libtpu {version} is installed but jax[tpu]=={jax.__version__} pins "
             f"libtpu=={required_libtpu()}: pip install -e .[tpu] -c constraints.txt")
  return version


class NotOneDevicePerChip(ValueError):
  """libtpu describes the topology with a device count the per-chip model cannot use."""


def topology_devices(chip: str, num_chips: int):
  shapes = SHAPES_3D if CHIPS[chip].dims == 3 else SHAPES_2D
  name = f"{CHIPS[chip].prefix}:{shapes[num_chips]}"
  devices = topologies.get_topology_desc(platform="tpu", topology_name=name).devices
  if len(devices) != num_chips:
    # libtpu gives v4 one device per TensorCore (128 for 4x4x4), not per megacore chip.
    raise NotOneDevicePerChip(f"libtpu describes {name} ({num_chips} chips) with "
                              f"{len(devices)} devices; the plan needs one per chip")
  return name, devices


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
  """The variant's config on `num_chips` chips: its own mesh shape with the -1 axis resolved
  (`fsdp`: (1, chips), `dp`: (chips, 1), a K-chip clip split: (chips / K, K))."""
  config = experiments.load(name, variant)
  k = clip_split(variant)
  if num_chips % k:
    raise ValueError(f"{num_chips} chips cannot be split into groups of {k}")
  config.mesh.shape = sharding_lib.mesh_shape(config.mesh.shape, num_chips)
  config.train.batch_size = per_chip_batch * num_chips // k
  return config


def lower_train(config, devices) -> tuple:
  """Lowers `train.make_train_step` exactly as `train_and_evaluate` jits it: (lowered, params)."""
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  model = modeling.build(config, config.data.vocab_size)
  _, abstract_state, state_sh, (tx, schedule) = train_lib.create_train_state(model, config, mesh)
  batch_sh = sharding_lib.batch_sharding(mesh, config.mesh)
  step = jax.jit(train_lib.make_train_step(model, tx, schedule, config, mesh),
                 in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                 donate_argnums=(0,))
  batch = abstract_batch(config, config.train.batch_size, batch_sh)
  return step.lower(abstract_state, batch), model_lib.count_params(abstract_state.params)


def compile_train(config, devices) -> dict:
  t0 = time.perf_counter()
  lowered, params = lower_train(config, devices)
  compiled = lowered.compile()
  cost = _cost(compiled)
  return dict(compile_s=time.perf_counter() - t0, memory=_memory(compiled),
              flops=float(cost.get("flops", 0.0)),
              bytes=float(cost.get("bytes accessed", 0.0)), params=params)


def model_flops_per_clip(name: str, variant: str) -> float:
  """Train-step FLOPs of one clip without remat recompute: the numerator of MFU.

  Counted by XLA's cost analysis on the lowered, unpartitioned program for one CPU device and
  batch 1 (seconds, no compile). Remat is switched off, so recomputed activations do not count.
  """
  config = config_for(name, variant, 1, 1)
  config.model.remat = False
  lowered, _ = lower_train(config, jax.devices("cpu")[:1])
  return float(lowered.cost_analysis()["flops"])


def compile_sample_step(config, devices, num_frames: int = 0) -> dict:
  """One denoising step of the CFG sampler on `num_frames`-frame videos (default the training
  length): the real `sample.Sampler` function (its jit over the config's mesh, params placed by
  the logical-axis rules) with `num_steps=1`, for `config.train.batch_size` videos. An SSR
  config runs MultiDiffusion over its `ssr.window`-frame windows, as the Sampler does."""
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  model = modeling.build(config, config.data.vocab_size)
  sampler = sample_lib.Sampler(config, model, sample_lib.abstract_params(model, config, mesh),
                               tokenizer=None, mesh=mesh)
  t0 = time.perf_counter()
  compiled = sampler.lower(config.train.batch_size, num_frames or None, sampler="ddim",
                           num_steps=1, eta=0.0, clip_x0=True).compile()
  cost = _cost(compiled)
  # XLA's cost analysis counts a loop body once, and windows split over model calls run in a
  # `lax.scan`: scale by the calls (the work outside the loop, counted that many times too, is
  # the sampler's elementwise update, well under 1% of a U-Net pass at the paper's sizes).
  frames = num_frames or config.data.num_frames
  windows = sampler.windows(frames)
  calls = multidiffusion.call_split(len(multidiffusion.window_starts(frames, *windows)),
                                    sampler.windows_per_call)[1] if windows else 1
  return dict(compile_s=time.perf_counter() - t0, memory=_memory(compiled), model_calls=calls,
              params=model_lib.count_params(sampler.params),
              flops=calls * float(cost.get("flops", 0.0)),
              bytes=calls * float(cost.get("bytes accessed", 0.0)))


def roofline(chip: Chip, flops: float, bytes_accessed: float, model_flops: float,
             ici_bytes: float = 0.0) -> dict:
  """Step time: max(compute, HBM traffic) plus the ICI time of the weight collectives, taken as
  not overlapped with compute (conservative); activation halos of split clips are not counted."""
  ici_s = ici_bytes / chip.ici_bw
  t = max(flops / chip.peak_flops, bytes_accessed / chip.hbm_bw) + ici_s
  return dict(step_s=t, ici_s=ici_s, mfu=model_flops / (t * chip.peak_flops) if t else 0.0,
              bound="compute" if flops / chip.peak_flops >= bytes_accessed / chip.hbm_bw
              else "memory")


def weight_collective_bytes(params: int, num_chips: int) -> float:
  """Bytes through each chip's links per step for float32 weights: an FSDP step all-gathers the
  params and reduce-scatters the grads, a data-parallel step all-reduces the grads (the same
  2 (N-1)/N x 4 bytes per parameter on a ring)."""
  return 2.0 * 4.0 * params * (num_chips - 1) / num_chips


def try_train(name, variant, chip, num_chips, per_chip_batch, log) -> dict:
  config = config_for(name, variant, num_chips, per_chip_batch)
  row = dict(config=f"{name}:{variant}", chip=chip, chips=num_chips, topology=chip,
             per_chip_batch=per_chip_batch, global_batch=config.train.batch_size)
  try:
    row["topology"], devices = topology_devices(chip, num_chips)
  except NotOneDevicePerChip as e:
    row.update(fits=False, not_compiled=str(e))
    log(row)
    return row
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
    chip, n, strategy = parts[0], parts[1], parts[2]
    try:
      n = int(n)
      strategy_variant(strategy)
    except ValueError as e:
      raise ValueError(f"--jobs entry {spec!r}: {e}") from None
    if chip not in CHIPS:
      raise ValueError(f"--jobs entry {spec!r}: chip in {sorted(CHIPS)}")
    if n not in (SHAPES_3D if CHIPS[chip].dims == 3 else SHAPES_2D):
      raise ValueError(f"--jobs entry {spec!r}: no {chip} slice of {n} chips in this table")
    if n % clip_split(strategy):
      raise ValueError(f"--jobs entry {spec!r}: {n} chips do not split into groups of "
                       f"{clip_split(strategy)}")
    jobs.append((chip, n, strategy, len(parts) == 4))
  return jobs


def plan_train(jobs: list, results: dict, log, save) -> None:
  """Compiles each job at 1 clip/chip (then searches the batch if asked), saving as it goes."""
  for chip, n, strategy, search in jobs:
    key = f"{chip}/{n}/{strategy}"
    variant = strategy_variant(strategy)
    first = results["train"].get(key, {}).get("first") or try_train("base", variant, chip, n, 1,
                                                                     log)
    best = 1 if first["fits"] else 0
    if search and first["fits"]:
      best, _ = largest_batch("base", variant, chip, n, log, first)
    results["train"][key] = dict(first=first, largest_per_chip_batch=best, searched=search)
    save()


# libtpu words its HBM OOM two ways: "... required for HLO temporaries (334.05G) exceeds ..."
# and, when it gets as far as buffer assignment, "... Used 16.16G of 15.75G hbm ...".
_OOM_NEED = re.compile(r"HLO temporaries \(([\d.]+)([KMGT])\)"
                       r"|Used ([\d.]+)([KMGT]) of [\d.]+[KMGT] hbm")


def oom_temporaries_gib(error: str) -> float | None:
  """The HBM the compiler said the program needs; None if its message does not say."""
  m = _OOM_NEED.search(error or "")
  if not m:
    return None
  value, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
  return float(value) * 2.0**(10 * ("KMGT".index(unit) + 1)) / GIB


def summarize(results: dict) -> list:
  """Roofline per (chip, chips, strategy) at batch 1/chip; MFU counts model FLOPs (no remat)."""
  rows = []
  model_flops = results.get("model_flops_per_clip")
  for key, r in results["train"].items():
    chip, n, strategy = key.split("/")
    first = r["first"]
    k = clip_split(strategy)
    row = dict(chip=chip, chips=int(n), strategy=strategy, topology=first["topology"],
               fits_at_1=first["fits"], searched=r["searched"], clip_split=k,
               largest_per_chip_batch=r["largest_per_chip_batch"],
               max_global_batch=r["largest_per_chip_batch"] * int(n) // k)
    if "memory" in first:
      row.update(peak_gib=first["memory"]["peak"] / GIB,
                 args_gib=first["memory"]["arguments"] / GIB,
                 temp_gib=first["memory"]["temporaries"] / GIB,
                 flops_per_chip=first["flops"], compile_s=first["compile_s"])
      # Remat recomputes part of the forward pass, so compiled FLOPs overstate the model's:
      # MFU counts the model's FLOPs (`model_flops_per_clip`) against the roofline time.
      row.update(roofline(CHIPS[chip], first["flops"], first["bytes"],
                          (model_flops or 0.0) * first["per_chip_batch"] / k,
                          weight_collective_bytes(first["params"], int(n))))
      if not model_flops:
        row["mfu"] = None
    elif "not_compiled" in first:
      row["not_compiled"] = first["not_compiled"]
    else:
      row["needed_temp_gib"] = oom_temporaries_gib(first.get("error_detail",
                                                             first.get("error")))
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


def _clips(per_chip_batch: int, k: int, searched: bool = True) -> str:
  """Clips per chip as the table shows them: `2`, `1/4` for a clip split over 4 chips."""
  text = str(per_chip_batch) if k == 1 else f"{per_chip_batch}/{k}"
  return text if searched else ">=" + text


def recommendations(rows: list, rec: dict) -> dict:
  """A verdict per compiled slice: its recommended strategy, or why none fits."""
  out = {}
  for key in dict.fromkeys(f"{r['chip']}/{r['chips']}" for r in rows):
    chip, n = key.split("/")
    slice_rows = [r for r in rows if r["chip"] == chip and r["chips"] == int(n)]
    if key in rec:
      r = next(r for r in slice_rows if r["strategy"] == rec[key])
      mfu = "" if r["mfu"] is None else f", roofline MFU {r['mfu']:.0%}"
      out[key] = (f"**{rec[key]}** ({r['peak_gib']:.1f} GiB/chip at "
                  f"{_clips(1, r['clip_split'])} clip/chip{mfu})")
      continue
    skipped = [r["not_compiled"] for r in slice_rows if "not_compiled" in r]
    if len(skipped) == len(slice_rows):
      out[key] = f"not compiled: {skipped[0]}."
      continue
    needs = [r["needed_temp_gib"] for r in slice_rows if r.get("needed_temp_gib")]
    tried = ", ".join(r["strategy"] for r in slice_rows)
    out[key] = (f"nothing compiled within {CHIPS[chip].hbm_bytes / GIB:.0f} GiB (tried {tried}"
                + (f"; the least needed {min(needs):.1f} GiB" if needs else "")
                + "). Next: split each clip over more chips (fsdp+remat+framesK / heightK).")
  return out


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
      f"128x128, bfloat16 compute, float32 params/optimizer; model FLOPs per clip and train "
      "step " + (f"{extra['model_flops_per_clip'] / 1e12:.1f} TFLOP (forward + backward "
                 "without remat recompute; XLA cost analysis of the lowered step for one clip)."
                 if extra["model_flops_per_clip"] else "not counted in this run."),
      "",
      "Roofline: step time = max(FLOPs / peak, bytes / HBM bandwidth) + ICI time of the weight "
      "collectives (float32 all-gather of the params + reduce-scatter of the grads, 8 bytes per "
      "parameter through each chip's bidirectional ICI, counted as not overlapped), at 1 clip per "
      "chip (1/K for `+framesK`/`+heightK`, which split each clip across K chips; their "
      "activation halos are not counted); MFU = model FLOPs (without remat recompute) / (step "
      "time x peak). Launch overheads, imperfect overlap and stragglers are not modelled: MFU is "
      "an upper bound, and a compute-bound row without remat sits near 100% by construction. "
      "\"max b/chip\" is the largest "
      "per-chip batch that compiled within HBM (doubling + bisection up to "
      f"{_MAX_BATCH.value}; `-` = not searched in this run).",
      "",
      "| chip | chips | topology | strategy | fits @1 (1/K) | peak GiB/chip (args + temp) | HBM GiB "
      "| TFLOP/chip/step | roofline s/step (ICI s) | bound | MFU | max b/chip | max global batch "
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
          f"{r['step_s']:.2f} ({r['ici_s']:.3f}) | {r['bound']} | "
          f"{'-' if r['mfu'] is None else format(r['mfu'], '.0%')} | "
          f"{_clips(r['largest_per_chip_batch'], r['clip_split'], searched)} | "
          f"{r['max_global_batch'] if searched else '>=' + str(r['chips'] // r['clip_split'])}"
          " | "
          f"{r['compile_s']:.0f} | {rec_mark} |")
    elif "not_compiled" in r:
      lines.append(f"| {r['chip']} | {r['chips']} | {r['topology']} | {r['strategy']} | "
                   f"not compiled: {r['not_compiled']} | - | {hbm:.0f} | - | - | - | - | - "
                   "| - | - | |")
    else:
      need = r.get("needed_temp_gib")
      lines.append(f"| {r['chip']} | {r['chips']} | {r['topology']} | {r['strategy']} | no "
                   f"(compiler: out of HBM) | "
                   f"{'-' if need is None else format(need, '.1f') + ' needed'} | "
                   f"{hbm:.0f} | - | - | - | - | 0 | 0 | - | |")
  lines += ["", "## Recommendation per slice", ""] + [
      f"- {slice_}: {verdict}" for slice_, verdict in recommendations(rows, rec).items()]
  lines += ["", "## Sampling (one denoising step of the CFG sampler, batch doubled)", ""]
  lines += ["| chip | chips | topology | strategy | clips/chip | peak GiB/chip | TFLOP/chip/step "
            "| roofline s/step | x N steps (s) | compile s |", "|---|---|---|---|---|---|---|---|---|---|"]
  for s in extra["sample"]:
    if "memory" not in s:
      need = oom_temporaries_gib(s.get("error_detail", s["error"]))
      lines.append(f"| {s['chip']} | {s['chips']} | {s['topology']} | {s['strategy']} | "
                   f"{s['per_chip_batch']} | out of HBM"
                   + (f" ({need:.1f} needed)" if need else "") + " | - | - | - | - |")
      continue
    lines.append(f"| {s['chip']} | {s['chips']} | {s['topology']} | {s['strategy']} | "
                 f"{s['per_chip_batch']} | {s['memory']['peak'] / GIB:.1f} | "
                 f"{s['flops'] / 1e12:.2f} | {s['step_s']:.3f} | {s['scan_s']:.0f} "
                 f"(N={s['num_steps']}) | {s['compile_s']:.0f} |")
  lines += ["", "## SSR", "", extra["ssr_note"], ""]
  lines += extra["notes"]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def sample_targets() -> list:
  if _SAMPLE_ON.value:
    jobs = parse_jobs([f"{spec}/fsdp" for spec in _SAMPLE_ON.value])  # Checks the names.
    return [(chip, n) for chip, n, _, _ in jobs]
  if _QUICK.value:
    return [("v5p", 256)]
  return [(c, 256 if c != "v4" else 64) for c in CHIPS]


def sample_rows(targets: list, log) -> list:
  """The base model's sampling step at 1 video per chip on each (chip, chips) of `targets`."""
  out = []
  for chip, n in targets:
    try:
      topo, devices = topology_devices(chip, n)
    except NotOneDevicePerChip as e:
      print(f"sampling row {chip}/{n} not compiled: {e}", flush=True)
      continue
    config = config_for("base", "fsdp", n, 1)
    r = dict(chip=chip, chips=n, topology=topo, strategy="fsdp", per_chip_batch=1,
             num_steps=config.sample.num_steps)
    try:
      r.update(compile_sample_step(config, devices))
      r["fits"] = r["memory"]["peak"] <= CHIPS[chip].hbm_bytes
      rf = roofline(CHIPS[chip], r["flops"], r["bytes"], r["flops"])
      r.update(step_s=rf["step_s"], scan_s=rf["step_s"] * config.sample.num_steps)
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e):
        raise
      r.update(fits=False, error=str(e).splitlines()[0][:300], error_detail=str(e)[:6000])
    log(r)
    out.append(r)
  return out


def ssr_rows(log, results: dict, save, kinds=("sample", "train"), chips: int = 256) -> None:
  """`experiments/ssr.py:paper` on v5e: one MultiDiffusion sampling step over the base model's
  80-frame videos, and the train step (with remat if it does not fit without), as `kinds` asks.
  Appends to `results["ssr"]` and saves after each compile; rows already there are not compiled
  again."""
  config = experiments.load("ssr", "paper")
  topo, devices = topology_devices("v5e", chips)
  config.mesh.shape = (1, chips)
  config.train.batch_size = chips
  video_frames = experiments.load("base", "fsdp").data.num_frames
  window, overlap = config.ssr.window, config.ssr.overlap
  windows = len(multidiffusion.window_starts(video_frames, window, overlap))
  rows = results["ssr"]

  def describe(r):
    if r["what"] == "train":
      head = (f"- SSR train step{' with remat' if r['remat'] else ''} on v5e {topo}, 1 clip "
              f"({config.data.num_frames} frames at {config.data.resolution}^2) per chip: ")
    else:
      per_call, num_calls = multidiffusion.call_split(windows, r.get("windows_per_call", 0))
      calls = ("in one batch" if num_calls == 1 else
               f"{per_call} per model call ({num_calls} calls per step, "
               "`sample.windows_per_call`)")
      head = (f"- SSR sampling step on v5e {topo}, one {video_frames}-frame "
              f"{config.data.resolution}^2 video per chip as {windows} MultiDiffusion windows of "
              f"{window} frames (overlap {overlap}), {calls}: ")
    if "memory" not in r:
      need = oom_temporaries_gib(r.get("error_detail", r["error"]))
      return head + ("out of HBM" + (f" ({need:.1f} GiB needed)" if need else "")
                     + f" of {CHIPS['v5e'].hbm_bytes / GIB:.0f} GiB.")
    t = max(r["flops"] / CHIPS["v5e"].peak_flops, r["bytes"] / CHIPS["v5e"].hbm_bw)
    return head + (f"peak {r['memory']['peak'] / GIB:.1f} GiB of "
                   f"{CHIPS['v5e'].hbm_bytes / GIB:.0f} ({'fits' if r['fits'] else 'does not fit'}"
                   f"), {r['flops'] / 1e12:.2f} TFLOP/chip/step, roofline {t:.3f} s/step, "
                   f"compile {r['compile_s']:.0f} s.")

  def same(r, what, remat):  # A sampling row compiled with other windows per call is stale.
    return r["what"] == what and r["remat"] == remat and (
        what == "train" or r.get("windows_per_call", 0) == config.sample.windows_per_call)

  def done(what, remat):
    return next((r for r in rows if same(r, what, remat)), None)

  for what, remat in (("sample", False), ("train", False), ("train", True)):
    if what not in kinds or done(what, remat) or (remat and done("train", False)["fits"]):
      continue
    config.model.remat = remat
    rows[:] = [r for r in rows if (r["what"], r["remat"]) != (what, remat)]
    row = dict(what=what, remat=remat, topology=topo, chips=chips, per_chip_batch=1)
    if what == "sample":
      row["windows_per_call"] = int(config.sample.windows_per_call)
    try:
      if what == "train":
        row.update(compile_train(config, devices))
      else:
        row.update(compile_sample_step(config, devices, video_frames))
      row["fits"] = row["memory"]["peak"] <= CHIPS["v5e"].hbm_bytes
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e):
        raise
      row.update(fits=False, error=str(e).splitlines()[0][:300], error_detail=str(e)[:6000])
    log(row)
    rows.append(row)
    results["ssr_note"] = "\n".join(describe(r) for r in rows)
    save()


def main(argv):
  del argv
  libtpu_version = installed_libtpu()
  results = dict(train={}, sample=[], ssr=[], rows=[], ssr_note="not compiled yet",
                 libtpu=libtpu_version)
  if _RESUME.value and os.path.exists(_OUT_JSON.value):
    with open(_OUT_JSON.value, encoding="utf-8") as f:
      earlier = json.load(f)["raw"]
    if earlier.get("libtpu") == libtpu_version:
      results.update(earlier)
    else:  # Another compiler's rows would be mixed into this one's table.
      print(f"not resuming {_OUT_JSON.value}: its rows come from libtpu "
            f"{earlier.get('libtpu', 'unknown')}, this is {libtpu_version}", flush=True)

  def log(row):
    mem = row["memory"]["peak"] / GIB if "memory" in row else float("nan")
    print(f"[{time.strftime('%H:%M:%S')}] {row.get('config', row.get('what', 'sample')):<18} "
          f"{row.get('topology')!s:<12} b/chip={row.get('per_chip_batch', 1):<3} "
          f"fits={row.get('fits')!s:<5} peak={mem:6.1f} GiB "
          f"compile={row.get('compile_s', 0):5.1f}s {row.get('error', '')[:80]}", flush=True)
    results["rows"].append(row)

  def compile_hours():
    rows = list(results["train"].values())
    done = [r["first"] for r in rows] + results["sample"] + results["ssr"]
    return sum(r.get("compile_s", 0.0) for r in done) / 3600

  def save():
    """Rewrites both outputs after every compile, so a long sweep leaves partial results."""
    rows = summarize(results)
    rec = recommend(rows)
    compiled = [r["first"] for r in results["train"].values()] + results["sample"]
    params = next((r["params"] for r in compiled if "params" in r), None)
    notes = [
        "## Notes",
        "",
        "- Chip figures (bf16 peak, HBM, HBM bandwidth) are the Cloud TPU documentation's: "
        + ", ".join(f"{c} {v.peak_flops / 1e12:.0f} TFLOP/s / {v.hbm_bytes / GIB:.0f} GiB / "
                    f"{v.hbm_bw / 1e9:.0f} GB/s" for c, v in CHIPS.items()) + ".",
        "- v5p is a megacore chip: one JAX device per chip (2 TensorCores). libtpu "
        f"{libtpu_version} "
        "describes v4 slices with one device per TensorCore instead, which the per-chip model "
        "here does not use, so v4 rows are listed as not compiled.",
        "- The batch is sharded over all chips (over the K-chip groups for `+framesK` / "
        "`+heightK`, whose chips hold one slice of each clip's frames or rows), so the global "
        "batch is a multiple of the chip count (of the group count).",
        "- Gradient accumulation (`train.grad_accum`) multiplies the global batch at the same "
        "per-chip memory.",
        f"- Compile time of the rows above: {compile_hours():.1f} h on a shared 2-core CPU host "
        "(libtpu's compiler on CPU).",
    ]
    if params:
      write_markdown(_OUT_MD.value, rows, rec, dict(
          quick=_QUICK.value, libtpu=libtpu_version, params=params,
          model_flops_per_clip=results.get("model_flops_per_clip"), sample=results["sample"],
          ssr_note=results["ssr_note"], notes=notes))
    os.makedirs(os.path.dirname(os.path.abspath(_OUT_JSON.value)), exist_ok=True)
    with open(_OUT_JSON.value, "w", encoding="utf-8") as f:
      json.dump(dict(summary=rows, recommended=rec, raw=results), f, indent=2, default=str)

  jobs = parse_jobs(_JOBS.value) if _JOBS.value else train_jobs(_QUICK.value)
  if not results.get("model_flops_per_clip"):
    results["model_flops_per_clip"] = model_flops_per_clip("base", "fsdp")
    print(f"model FLOPs per clip (train step, no remat): "
          f"{results['model_flops_per_clip'] / 1e12:.1f} TFLOP", flush=True)
  if _WITH_EXTRAS.value:  # The sampling rows first: what users run, and quicker to compile.
    done = {(r["chip"], r["chips"]) for r in results["sample"]}
    for target in sample_targets():
      if target not in done:
        results["sample"] += sample_rows([target], log)
        save()
    ssr_rows(log, results, save, kinds=("sample",))
  plan_train(jobs[:1], results, log, save)  # The headline train number.
  if _WITH_EXTRAS.value:
    ssr_rows(log, results, save, kinds=("train",))
  plan_train(jobs[1:], results, log, save)
  if os.path.exists(_OUT_MD.value):
    print(open(_OUT_MD.value, encoding="utf-8").read())
  else:  # Nothing compiled within HBM yet: the markdown table needs one fitting compile.
    print(f"No configuration fit; see {_OUT_JSON.value} for what the compiler said.")


if __name__ == "__main__":
  app.run(main)
