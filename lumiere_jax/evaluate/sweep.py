"""Evaluation sweeps: metrics of samples over checkpoints x sampler settings, as tables and plots.

  run_eval(config, workdir, step)   # one checkpoint with config.sample's settings (--mode=eval)
  run_sweep(config, workdir)        # the grid of config.eval (--mode=sweep)

Every cell (checkpoint, guidance, sampler, steps, seed, prompt set) samples its prompts once and
appends one row to `workdir/eval/results.jsonl`; a restarted sweep skips the cells already there.
Samples go to `workdir/eval/samples/<cell>/` (grid.png of all, mp4 + gif of a few); the table
(`results.md`, `results.csv`) and the plots (`plot_vs_<axis>.png`, `samples_<prompt set>.png`)
are rewritten from all rows at the end.

Metrics on synthetic_clips: text alignment per attribute (analytic detector), the same read by
the learned domain classifier (`clf_*`), temporal consistency, and the domain Frechet distance
(`fd`) between classifier features of the samples and of real clips (the test split for the
held-out test prompts, else validation). With `eval.i3d_weights`, `fvd` uses Kinetics I3D, and
`i3d_is` is the Inception Score of the I3D's Kinetics-400 class probabilities.
The model and data settings are the workdir's own (config.json); `config` gives the eval spec.
"""
import csv
import json
import os
import time
import warnings

import numpy as np
from absl import logging
from scipy import special

from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import errors
from lumiere_jax import progress as progress_lib
from lumiere_jax import sample as sample_lib
from lumiere_jax import video_io
from lumiere_jax import workdir as workdir_lib
from lumiere_jax.data import datasets
from lumiere_jax.diffusion import samplers as samplers_lib
from lumiere_jax.evaluate import alignment
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.evaluate import i3d

RESULTS = "results.jsonl"
PROMPT_SETS = ("grid", "test", "validation")
KEY_FIELDS = ("step", "guidance", "sampler", "num_steps", "seed", "prompt_set")
# Columns of the table and panels of the plots, in order; missing ones are skipped.
METRICS = ("all_acc", "color_acc", "shape_acc", "direction_acc", "present_rate", "clf_color_acc",
           "clf_shape_acc", "clf_direction_acc", "fd", "fvd", "i3d_is", "background_error",
           "color_stability", "motion_smoothness", "flicker")
# Higher is better except for these.
LOWER_IS_BETTER = ("fd", "fvd", "background_error", "motion_smoothness", "flicker")
# The settings plotted on the x axis, each when it takes more than one value.
_AXES = ("guidance", "num_steps", "step")


def cell_name(cell):
  """Directory name and resume key of a cell, e.g. 'step1000_g3_ddim_n32_s0_grid'."""
  return (f"step{cell['step']}_g{cell['guidance']:g}_{cell['sampler']}_n{cell['num_steps']}_"
          f"s{cell['seed']}_{cell['prompt_set']}")


def available_steps(workdir):
  mngr = ckpt_lib.create_manager(workdir, {}, read_only=True)
  return sorted(int(s) for s in mngr.all_steps())


def resolve_steps(workdir, spec):
  """Checkpoint steps of `spec`: 'all', 'latest', a comma-separated string or a list of ints."""
  available = available_steps(workdir)
  if not available:
    raise FileNotFoundError(f"no checkpoint in {workdir_lib.checkpoints_dir(workdir)}")
  if spec in ("all", "", None):
    return available
  if spec in ("latest", "last"):
    return [available[-1]]
  try:
    steps = [int(s) for s in (spec.split(",") if isinstance(spec, str) else spec)]
  except ValueError as e:
    raise errors.UserError(f"eval.checkpoints must be 'all', 'latest' or steps like '500,1000', "
                           f"got {spec!r}.") from e
  missing = [s for s in steps if s not in available]
  if missing:
    raise FileNotFoundError(f"checkpoint steps {missing} not found in {workdir}; available "
                            f"steps: {available}")
  return steps


def _as_list(value, cast):
  """A config value given as a scalar, a list or a comma-separated string -> list of `cast`."""
  if isinstance(value, str):
    value = [v for v in value.split(",") if v.strip()]
  elif not isinstance(value, (list, tuple)):
    value = [value]
  return [cast(v.strip() if isinstance(v, str) else v) for v in value]


def sweep_cells(eval_cfg, steps):
  """All cells of the grid, checkpoint-major (one restore per checkpoint)."""
  prompt_sets = _as_list(eval_cfg.prompt_sets, str)
  unknown = sorted(set(prompt_sets) - set(PROMPT_SETS))
  if unknown:
    raise errors.UserError(f"Unknown eval.prompt_sets {unknown}; expected some of {PROMPT_SETS}.")
  samplers = _as_list(eval_cfg.samplers, str)
  bad = sorted(set(samplers) - set(samplers_lib.SAMPLERS))
  if bad:
    raise errors.UserError(f"Unknown eval.samplers {bad}; expected some of "
                           f"{samplers_lib.SAMPLERS}.")
  return [dict(step=step, guidance=g, sampler=s, num_steps=n, seed=seed, prompt_set=p)
          for step in steps
          for g in _as_list(eval_cfg.guidance, float)
          for s in samplers
          for n in _as_list(eval_cfg.num_steps, int)
          for seed in _as_list(eval_cfg.seeds, int)
          for p in prompt_sets]


class _Evaluator:
  """Prompts, real-clip features and scorers shared by every cell of a run."""

  def __init__(self, eval_cfg, data_cfg):
    self.cfg = eval_cfg
    self.data_cfg = data_cfg
    self.synthetic = data_cfg.name == "synthetic_clips"
    self.num_samples = int(eval_cfg.num_samples)
    if self.num_samples < 1:
      raise errors.UserError(f"eval.num_samples must be >= 1, got {self.num_samples}.")
    if (eval_cfg.fvd or eval_cfg.i3d_weights) and self.num_samples < 2:
      raise errors.UserError(f"eval.num_samples={self.num_samples}, but a Frechet distance needs "
                             "at least 2 samples; raise it or set eval.fvd=False.")
    self.builder = datasets.build_dataset(data_cfg)
    self._prompts, self._real = {}, {}
    self.classifier = None
    if eval_cfg.fvd and self.synthetic:
      self.classifier = classifier_lib.load_or_train(data_cfg, eval_cfg.classifier)
    self.i3d = i3d.I3D.from_file(eval_cfg.i3d_weights) if eval_cfg.i3d_weights else None

  def prompts(self, prompt_set):
    """The first `num_samples` prompts of a set (the grid cycles if asked for more than 24)."""
    if prompt_set not in self._prompts:
      if prompt_set == "grid":
        if not self.synthetic:
          raise errors.UserError("prompt set 'grid' describes synthetic clips; use 'validation' "
                                 f"for {self.data_cfg.name} data.")
        grid = alignment.grid_prompts()
        prompts = [grid[i % len(grid)] for i in range(self.num_samples)]
      else:
        split = "test" if prompt_set == "test" else "validation"
        if split not in self.builder.info.splits:
          raise errors.UserError(f"Dataset {self.builder.info.full_name} has no {split!r} split "
                                 f"for prompt set {prompt_set!r}.")
        prompts = classifier_lib.read_split(self.builder, split, (), self.num_samples)[2]
      self._prompts[prompt_set] = prompts
    return self._prompts[prompt_set]

  def _real_videos(self, prompt_set):
    """Real clips the samples of a prompt set are compared with (FD reference)."""
    split = "test" if prompt_set == "test" else "validation"
    if split not in self._real:
      self._real[split] = classifier_lib.read_split(self.builder, split, ())[0]
    return self._real[split]

  def metrics(self, videos, prompts, prompt_set):
    out = {}
    if self.synthetic:
      scores = alignment.alignment_scores(videos, prompts)
      out.update({k: v for k, v in scores.items() if k not in ("rows", "num_samples")})
      out.update(alignment.temporal_consistency(videos))
    if self.classifier is not None:
      predicted = self.classifier.predict(videos)
      expected = [alignment.parse_prompt(p) for p in prompts]
      for attr, names in predicted.items():
        hits = [n == e[attr] for n, e in zip(names, expected) if e.get(attr)]
        out[f"clf_{attr}_acc"] = float(np.mean(hits)) if hits else float("nan")
      real = self._real_features(prompt_set)
      out["fd"] = classifier_lib.frechet_distance(self.classifier, videos, real)
    if self.i3d is not None:
      logits = self.i3d(videos)
      out["fvd"] = i3d.frechet_distance_of_logits(logits, self._real_i3d_logits(prompt_set))
      # The Inception Score from the I3D's Kinetics-400 classes: the classifier this has. The
      # paper's UCF101 IS uses a C3D trained on UCF101 (docs/metrics.md), so it is not that.
      out["i3d_is"] = i3d.inception_score(special.softmax(logits, axis=1))[0]
    return out

  def _real_i3d_logits(self, prompt_set):
    key = ("i3d", prompt_set == "test")
    if key not in self._real:
      self._real[key] = self.i3d(self._real_videos(prompt_set))
    return self._real[key]

  def _real_features(self, prompt_set):
    key = ("features", prompt_set == "test")
    if key not in self._real:
      self._real[key] = self.classifier.features(self._real_videos(prompt_set))
    return self._real[key]


def _read_rows(path):
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _run_cells(config, workdir, cells):
  """Runs the cells not yet in results.jsonl; rewrites tables and plots; returns a summary."""
  workdir = ckpt_lib.absolute(str(workdir))
  eval_dir = workdir_lib.eval_dir(workdir)
  os.makedirs(eval_dir, exist_ok=True)
  results_path = os.path.join(eval_dir, RESULTS)
  done = {r["cell"] for r in _read_rows(results_path)}
  todo = [c for c in cells if cell_name(c) not in done]
  logging.info("Eval: %d cells, %d already done, %d to run", len(cells), len(cells) - len(todo),
               len(todo))
  if todo:
    train_config = ckpt_lib.load_config(workdir)
    evaluator = _Evaluator(config.eval, train_config.data)
    fps = int(train_config.data.fps)
    prog = progress_lib.Progress("eval sweep", len(todo), unit="cells", interval=0.0)
    sampler = None
    for i, cell in enumerate(todo):
      if sampler is None:
        sampler = sample_lib.load_sampler(workdir, cell["step"])
      elif sampler.step != cell["step"]:
        # Same model, new params: the compiled sampling functions are reused.
        sampler = sampler.replace(
            sample_lib.load_params(workdir, train_config, cell["step"])[1], cell["step"])
      prompts = evaluator.prompts(cell["prompt_set"])
      start = time.time()
      videos = sampler(prompts, seed=cell["seed"], guidance=cell["guidance"],
                       sampler=cell["sampler"], num_steps=cell["num_steps"])
      sample_seconds = time.time() - start
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluator.metrics(videos, prompts, cell["prompt_set"])
      for w in {str(w.message) for w in caught}:
        logging.warning("%s: %s", cell_name(cell), w)
      out_dir = os.path.join(eval_dir, "samples", cell_name(cell))
      num_files = int(config.eval.num_videos)
      if num_files:
        sample_lib.write_videos(videos[:num_files], prompts[:num_files], out_dir, fps)
      os.makedirs(out_dir, exist_ok=True)
      video_io.write_png(os.path.join(out_dir, "grid.png"), video_io.frame_grid(videos),
                         min_side=256)
      row = dict(cell=cell_name(cell), **cell, num_samples=len(prompts), **metrics,
                 sample_seconds=round(sample_seconds, 2), time=time.time())
      with open(results_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
      prog.update(i + 1, f"{row['cell']} all_acc={metrics.get('all_acc', float('nan')):.2f} "
                  f"fd={metrics.get('fd', float('nan')):.2f}")
  rows = _read_rows(results_path)
  wanted = {cell_name(c) for c in cells}
  selected = [r for r in rows if r["cell"] in wanted]
  outputs = write_reports(rows, eval_dir, redraw=bool(todo))
  return dict(rows=selected, num_new=len(todo), eval_dir=eval_dir, best=best_settings(selected),
              **outputs)


def run_sweep(config, workdir):
  """The grid of `config.eval` over the workdir's checkpoints; resumable (see module doc)."""
  steps = resolve_steps(str(workdir), config.eval.checkpoints)
  return _run_cells(config, workdir, sweep_cells(config.eval, steps))


def run_eval(config, workdir, step=None):
  """One checkpoint (default: latest) with `config.sample`'s settings, on eval.prompt_sets."""
  steps = resolve_steps(str(workdir), "latest" if step is None else [step])
  s = config.sample
  spec = dict(guidance=s.guidance, samplers=s.sampler, num_steps=s.num_steps, seeds=s.seed,
              prompt_sets=config.eval.prompt_sets)
  return _run_cells(config, workdir, sweep_cells(_Spec(spec), steps))


class _Spec(dict):
  """A dict read with attributes, like the `config.eval` ConfigDict `sweep_cells` takes."""
  __getattr__ = dict.__getitem__


def _group_key(row, fields):
  return tuple(row[f] for f in fields)


def _aggregate(rows, fields):
  """Mean of each metric over the rows sharing `fields` (e.g. over seeds)."""
  groups = {}
  for row in rows:
    groups.setdefault(_group_key(row, fields), []).append(row)
  out = []
  for key, members in sorted(groups.items(), key=lambda kv: [str(k) for k in kv[0]]):
    agg = dict(zip(fields, key), num_seeds=len(members))
    for m in METRICS:
      values = [r[m] for r in members if isinstance(r.get(m), (int, float))]
      if values:
        agg[m] = float(np.nanmean(values)) if not all(np.isnan(values)) else float("nan")
    out.append(agg)
  return out


def best_settings(rows):
  """Per prompt set: the cell with the best all_acc (ties: lower fd), averaged over seeds."""
  best = {}
  settings = [f for f in KEY_FIELDS if f != "seed"]
  for agg in _aggregate(rows, settings):
    score = (_finite(agg.get("all_acc"), -1.0), -_finite(agg.get("fd"), 0.0))
    current = best.get(agg["prompt_set"])
    if current is None or score > current[0]:
      best[agg["prompt_set"]] = (score, agg)
  return {k: v[1] for k, v in best.items()}


def _finite(value, default):
  return default if value is None or not np.isfinite(value) else float(value)


def _fmt(value):
  if isinstance(value, float):
    return "nan" if not np.isfinite(value) else f"{value:.3f}"
  return str(value)


def write_reports(rows, eval_dir, redraw=True):
  """results.md, results.csv and the plots from all rows (metrics averaged over seeds).

  With `redraw` False (a resumed run with nothing new) existing plots are kept, which is what
  makes a finished sweep's rerun fast.
  """
  settings = [f for f in KEY_FIELDS if f != "seed"]
  table = _aggregate(rows, settings)
  metrics = [m for m in METRICS if any(m in r for r in table)]
  columns = settings + ["num_seeds"] + metrics
  csv_path = os.path.join(eval_dir, "results.csv")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(table)
  lines = ["# Evaluation sweep", "",
           f"{len(rows)} cells; metrics averaged over seeds. Higher is better except "
           f"{', '.join(m for m in LOWER_IS_BETTER if m in metrics)}.", "",
           "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in table]
  lines += ["", "Best per prompt set (all_acc, then lower fd):", ""]
  for prompt_set, agg in best_settings(rows).items():
    lines.append(f"- {prompt_set}: " + ", ".join(f"{f}={agg[f]}" for f in settings[:-1]) +
                 f" (all_acc {_fmt(agg.get('all_acc'))}, fd {_fmt(agg.get('fd', float('nan')))})")
  md_path = os.path.join(eval_dir, "results.md")
  with open(md_path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  prompt_sets = sorted({r["prompt_set"] for r in rows})
  plots = [os.path.join(eval_dir, f"plot_vs_{axis}.png") for axis in _AXES]
  plots = [p for p in plots + [os.path.join(eval_dir, f"samples_{ps}.png") for ps in prompt_sets]
           if os.path.exists(p)]
  if redraw or not plots:
    plots = [p for axis in _AXES if (p := _plot_vs(table, axis, metrics, eval_dir))]
    plots += [p for ps in prompt_sets if (p := _plot_samples(rows, ps, eval_dir))]
  return dict(table=md_path, csv=csv_path, plots=plots)


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _plot_vs(table, axis, metrics, eval_dir):
  """One panel per metric against `axis`, one line per other setting; None if axis is fixed."""
  if len({r[axis] for r in table}) < 2:
    return None
  plt = _pyplot()
  others = [f for f in ("step", "guidance", "sampler", "num_steps", "prompt_set") if f != axis
            and len({r[f] for r in table}) > 1]
  cols = 4
  rows_n = -(-len(metrics) // cols)
  fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
  lines = {}
  for r in table:
    lines.setdefault(_group_key(r, others), []).append(r)
  for ax, metric in zip(axes.flat, metrics):
    for key, members in sorted(lines.items(), key=lambda kv: [str(k) for k in kv[0]]):
      members = sorted(members, key=lambda r: r[axis])
      label = ", ".join(f"{f}={v}" for f, v in zip(others, key)) or "all"
      ax.plot([r[axis] for r in members], [r.get(metric, np.nan) for r in members], "o-",
              label=label)
    ax.set_title(metric + (" (lower better)" if metric in LOWER_IS_BETTER else ""))
    ax.set_xlabel(axis)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(metrics):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(eval_dir, f"plot_vs_{axis}.png")
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path


def _plot_samples(rows, prompt_set, eval_dir, num_prompts=6):
  """The first `num_prompts` rows of every cell's grid.png of a prompt set, one panel per cell."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  num_samples = {r["cell"]: r["num_samples"] for r in rows if r["prompt_set"] == prompt_set}
  panels = []
  for cell in sorted(num_samples):
    path = os.path.join(eval_dir, "samples", cell, "grid.png")
    if os.path.exists(path):
      image = np.asarray(Image.open(path).convert("RGB"))
      keep = image.shape[0] * min(1.0, num_prompts / max(1, num_samples[cell]))
      panels.append((cell, image[:int(keep)]))
  if not panels:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), squeeze=False)
  for ax, (cell, image) in zip(axes[:, 0], panels):
    ax.imshow(image)
    ax.set_title(cell, fontsize=8)
    ax.axis("off")
  fig.tight_layout()
  path = os.path.join(eval_dir, f"samples_{prompt_set}.png")
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path
