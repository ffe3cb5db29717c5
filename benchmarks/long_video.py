r"""Long videos from the base model: temporal MultiDiffusion past the training length.

  python benchmarks/long_video.py --t2v_workdir=<tiny t2v run> [--frames=8,16,32,64] \
      [--num_videos=8] [--overlap=K] [--out_file=benchmarks/results/long_video.json]

For each length N the same grid prompts are sampled with `--num_frames=N` (windows of the
training length, overlapping by `config.sample.overlap`), and it reports:
- the analytic detector (`alignment.alignment_scores`) on every window, and on a clip of the
  training length centred on every border between two windows: does the object keep moving
  the named way through the borders?
- the seam metric (`multidiffusion.seam_metric`: mean frame difference across window borders
  / inside windows, 1 = no seam), also for independent windows (overlap 0) at the largest N
  that they tile, the naive way to make a long video from a short-clip model;
- wall time per call (the second call of each N; the first compiles) against N.
"""
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from lumiere_jax import sample
from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.evaluate import alignment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKDIR = flags.DEFINE_string("t2v_workdir", None, "Text-to-video run (e.g. the default job's).")
_FRAMES = flags.DEFINE_list("frames", ["8", "16", "32", "64"], "Video lengths to sample.")
_NUM = flags.DEFINE_integer("num_videos", 8, "Grid prompts per call.")
_SEED = flags.DEFINE_integer("sample_seed", 0, "Sampling seed.")
_OVERLAP = flags.DEFINE_integer("overlap", None, "Frames shared by neighbouring windows "
                                "(default: the run's config.sample.overlap).")
_OUT = flags.DEFINE_string("out_file", os.path.join(REPO, "benchmarks/results/long_video.json"),
                           "Where to write the JSON results.")

SCORES = ("color_acc", "shape_acc", "direction_acc")


def window_clips(num_frames: int, window: int, overlap: int) -> dict:
  """Start frames of the training-length clips to score: every MultiDiffusion window, and one
  clip centred on each overlap between neighbouring windows (clamped to the video)."""
  starts = multidiffusion.window_starts(num_frames, window, overlap)
  centred = [min(max(b + (a + window - b) // 2 - window // 2, 0), num_frames - window)
             for a, b in zip(starts, starts[1:])]
  return {"windows": starts, "across_borders": centred}


def with_overlap(sampler: sample.Sampler, overlap: int) -> sample.Sampler:
  """The same model and params, sampling long videos with windows overlapping by `overlap`."""
  config = sampler.config.copy_and_resolve_references()
  config.sample.overlap = overlap
  return sample.Sampler(config, sampler.model, sampler.params, sampler.tokenizer, sampler.step,
                        sampler.mesh)


def measure(sampler: sample.Sampler, prompts: list, num_frames: int, seed: int) -> dict:
  """Scores, seams and wall time of `num_frames`-frame videos of `prompts` (see the module)."""
  sampler(prompts, seed=seed, num_frames=num_frames)  # Compiles.
  t0 = time.perf_counter()
  videos = sampler(prompts, seed=seed, num_frames=num_frames)
  seconds = time.perf_counter() - t0
  window = sampler.video_shape[0]
  tiling = sample.check_num_frames(sampler.config, num_frames)
  clips = window_clips(num_frames, *tiling) if tiling else {"windows": [0], "across_borders": []}
  out = dict(num_frames=num_frames, seconds=seconds, num_windows=len(clips["windows"]))
  for name, starts in clips.items():
    out[name] = [dict(start=s, **{k: alignment.alignment_scores(
        videos[:, s:s + window], prompts)[k] for k in SCORES}) for s in starts]
  out["seams"] = multidiffusion.seam_metric(videos, *tiling) if tiling else None
  return out


def _span(scores: list, key: str) -> str:
  values = [s[key] for s in scores]
  return f"{min(values):.2f}..{max(values):.2f}" if values else "-"


def main(argv):
  del argv
  if not _WORKDIR.value:
    sys.exit("error: --t2v_workdir is required")
  sampler = sample.load_sampler(_WORKDIR.value)
  if _OVERLAP.value is not None:
    sampler = with_overlap(sampler, _OVERLAP.value)
  prompts = alignment.grid_prompts(_NUM.value)
  frames = [int(f) for f in _FRAMES.value]
  try:
    for n in frames:  # Every length is checked before the first (slow) one runs.
      sample.check_num_frames(sampler.config, n)
  except ValueError as e:
    sys.exit(f"error: {e}")
  rows = []
  for n in frames:
    rows.append(measure(sampler, prompts, n, _SEED.value))
    print(json.dumps(rows[-1]), flush=True)
  # Independent windows (overlap 0) at the largest length they tile: the seams to compare with.
  window = sampler.video_shape[0]
  naive_n = max((n for n in frames if n > window and n % window == 0), default=None)
  naive = None
  if naive_n:
    naive = measure(with_overlap(sampler, 0), prompts, naive_n, _SEED.value)
    naive["independent_windows"] = True
    print(json.dumps(naive), flush=True)
  print(f"\n{_WORKDIR.value} step {sampler.step}: {len(prompts)} grid prompts, seed "
        f"{_SEED.value}, window {window}, overlap {sampler.config.sample.overlap}\n")
  print(f"| frames | windows | s/call | time / time at {rows[0]['num_frames']} | direction acc "
        "per window (min..max) | across borders (min..max) | seam border / inside (ratio) |")
  print("|---|---|---|---|---|---|---|")
  for r in rows + ([naive] if naive else []):
    seams = r["seams"]
    print(f"| {r['num_frames']}{' independent windows' if r is naive else ''} | "
          f"{r['num_windows']} | {r['seconds']:.1f} | {r['seconds'] / rows[0]['seconds']:.2f} | "
          f"{_span(r['windows'], 'direction_acc')} | {_span(r['across_borders'], 'direction_acc')}"
          " | " + (f"{seams['border']:.2f} / {seams['inside']:.2f} ({seams['ratio']:.2f})"
                   if seams else "-") + " |")
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(dict(workdir=_WORKDIR.value, step=sampler.step, prompts=prompts, seed=_SEED.value,
                   window=window, overlap=sampler.config.sample.overlap, rows=rows,
                   independent_windows=naive), f, indent=2)


if __name__ == "__main__":
  app.run(main)
