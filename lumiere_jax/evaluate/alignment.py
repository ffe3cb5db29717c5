"""Text-video alignment and temporal consistency of samples, scored by the analytic detector.

Captions name color, shape and direction as whole words (`render.make_caption`), so a prompt's
intended attributes are read back by word lookup and compared with `detector.detect`. With two
objects in a caption the first one named is scored, while the detector reports the majority color
object: use single-object prompts for a clean number.
"""
import re

import numpy as np

from lumiere_jax.data import render
from lumiere_jax.evaluate import detector

ATTRIBUTES = ("color", "shape", "direction")
VOCAB = {"color": tuple(render.COLORS), "shape": render.SHAPES, "direction": render.DIRECTIONS}


def parse_prompt(prompt):
  """The first color, shape and direction word of `prompt` (None when it names none)."""
  words = re.findall(r"[a-z]+", prompt.lower())
  return {attr: next((w for w in words if w in vocab), None) for attr, vocab in VOCAB.items()}


def replace_word(text, old, new):
  """`text` with the first whole-word `old` replaced by `new`."""
  return re.sub(rf"\b{re.escape(old)}\b", new, text, count=1)


def _rate(flags):
  return float(np.mean(flags)) if flags else float("nan")


def alignment_scores(videos, prompts, threshold=100.0, min_motion=0.1):
  """Per-attribute agreement between uint8 clips (B, T, H, W, 3) and their prompts.

  An attribute's accuracy counts only the prompts that name it (NaN if none does); `all_acc` needs
  every named attribute right. A clip without a detected object fails every attribute.
  `threshold` and `min_motion` are `detector.detect`'s.

  Returns:
    {"color_acc", "shape_acc", "direction_acc", "all_acc", "present_rate", "background_error",
    "num_samples", "rows"}, where `background_error` is the mean `detector.background_error` (grey
    levels of residual noise away from the object) and `rows` holds one dict per sample with the
    prompt, the expected and detected attributes and `correct`.
  """
  if len(videos) != len(prompts) or not len(videos):
    raise ValueError(f"Need as many videos as prompts (> 0), got {len(videos)} and {len(prompts)}.")
  rows = []
  hits = {attr: [] for attr in ATTRIBUTES}
  background = []
  for video, prompt in zip(videos, prompts):
    expected = parse_prompt(prompt)
    video = detector.check_video(video)
    tr = detector.track(video, threshold)
    found = detector.summarize(tr, max(video.shape[1:3]), min_motion)
    background.append(detector.background_error(video, tr))
    correct = {attr: getattr(found, attr) == want for attr, want in expected.items()
               if want is not None}
    for attr, ok in correct.items():
      hits[attr].append(ok)
    rows.append({"prompt": prompt, "expected": expected, "detected": found,
                 "correct": correct, "all": all(correct.values())})
  scores = {f"{attr}_acc": _rate(hits[attr]) for attr in ATTRIBUTES}
  scores["all_acc"] = _rate([row["all"] for row in rows])
  scores["present_rate"] = _rate([row["detected"].present for row in rows])
  scores["background_error"] = _nanmean(background)
  scores["num_samples"] = len(rows)
  scores["rows"] = rows
  return scores


def _clip_consistency(video):
  """(color stability, motion smoothness, flicker) of one clip; NaN where undefined."""
  video = detector.check_video(video)
  tr = detector.track(video)
  seen = tr.frame_color >= 0
  stability = float(np.mean(tr.frame_color[seen] == tr.color)) if seen.any() else np.nan
  # Second differences only over runs of three consecutive frames with the object.
  triple = tr.found[:-2] & tr.found[1:-1] & tr.found[2:]
  accel = tr.centroid[2:] - 2 * tr.centroid[1:-1] + tr.centroid[:-2]
  smoothness = float(np.mean(np.hypot(*accel[triple].T))) if triple.any() else np.nan
  # Background pixels of both frames; the object's own motion is not flicker.
  still = ~(tr.foreground[1:] | tr.foreground[:-1])
  step = np.abs(np.diff(video.astype(np.float32), axis=0)).mean(-1)
  flicker = float(step[still].mean()) if still.any() else np.nan
  return stability, smoothness, flicker


def _nanmean(values):
  values = np.asarray(values, np.float64)
  values = values[~np.isnan(values)]
  return float(values.mean()) if values.size else float("nan")


def temporal_consistency(videos):
  """Temporal consistency of uint8 clips (B, T, H, W, 3), averaged over the clips that define it.

  Returns:
    color_stability: fraction of frames whose majority color is the clip's (1 = no color drift).
    motion_smoothness: mean |second difference| of the object centroid in pixels (0 = constant
      velocity; lower is smoother).
    flicker: mean absolute frame-to-frame change of background pixels, in 0..255 units.
  """
  if not len(videos):
    raise ValueError("temporal_consistency needs at least one video, got 0.")
  per_clip = np.array([_clip_consistency(v) for v in videos], np.float64)
  names = ("color_stability", "motion_smoothness", "flicker")
  return {name: _nanmean(per_clip[:, i]) for i, name in enumerate(names)}


def grid_prompts(num=None):
  """Single-object prompts covering every color x direction, shapes cycling: for alignment checks.

  Phrased like the synthetic captions ("a red square moves to the left"), so a model trained on
  them is evaluated in distribution; `num` takes the first prompts of the grid.
  """
  phrases = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
  prompts = []
  for i, color in enumerate(render.COLORS):
    for j, direction in enumerate(render.DIRECTIONS):
      shape = render.SHAPES[(i + j) % len(render.SHAPES)]
      prompts.append(f"a {color} {shape} moves {phrases[direction]}")
  return prompts[:num] if num else prompts
