"""Image-to-video text alignment: from a clip's first frame, does the video move as told?

Two prompt sets per clip of a split:
  own      the clip's caption: the first frame fits the named motion (the data's own pairing);
  changed  the same first frame with a caption naming a perpendicular direction, for clips
           where the object has room to travel that way: it asks the model to follow the text
           against what the first frame suggests (in the synthetic data an object starts at the
           edge opposite to where it goes).
Both are scored by the analytic detector (`alignment.alignment_scores`).
"""
import numpy as np

from lumiere_jax import errors
from lumiere_jax import video_io
from lumiere_jax.diffusion import conditioning
from lumiere_jax.evaluate import alignment
from lumiere_jax.evaluate import detector

_PERPENDICULAR = {"left": ("up", "down"), "right": ("up", "down"), "up": ("left", "right"),
                  "down": ("left", "right")}


def perpendicular_caption(caption: str, first_frame: np.ndarray, min_room: float = 0.4):
  """`caption` with its direction word turned 90 degrees towards the side of the first frame
  with the most room for the object, or None if neither side has `min_room` * resolution."""
  direction = alignment.parse_prompt(caption)["direction"]
  if direction is None:
    raise ValueError(f"Caption {caption!r} names no direction.")
  tr = detector.track(first_frame[None])
  if not tr.found[0]:
    return None
  x, y = tr.centroid[0]
  size = max(first_frame.shape[:2])
  room = {"left": x, "right": size - x, "up": y, "down": size - y}
  best = max(_PERPENDICULAR[direction], key=room.get)
  if room[best] < min_room * size:
    return None
  return alignment.replace_word(caption, direction, best)


def i2v_alignment(sampler, videos: np.ndarray, captions, seeds=(0,)) -> dict:
  """Alignment of image-to-video samples from each clip's first frame.

  Args:
    sampler: a `sample.Sampler` of a conditional model (`model.cond_channels=4`).
    videos: uint8 (N, T, H, W, 3) clips whose first frames are animated.
    captions: their N captions.
    seeds: sampling seeds; every prompt set is sampled once per seed.

  Returns:
    {"own": scores, "changed": scores}: `alignment.alignment_scores` without the rows;
    "changed" covers the clips with room for a perpendicular move (its num_samples says how many).
  """
  if sampler.kind != "masked":
    raise errors.UserError("image-to-video alignment needs a conditional model "
                           f"(model.cond_channels=4), got cond_channels={sampler.cond_channels}.")
  if len(videos) != len(captions) or not len(captions):
    raise ValueError(f"Need as many clips as captions (> 0), got {len(videos)} and "
                     f"{len(captions)}.")
  first = video_io.to_float(np.asarray(videos)[:, 0])
  changed = [perpendicular_caption(c, v[0]) for c, v in zip(captions, videos)]
  keep = [i for i, c in enumerate(changed) if c is not None]
  out = {}
  for name, index, prompts in (("own", list(range(len(captions))), list(captions)),
                               ("changed", keep, [changed[i] for i in keep])):
    if not index:
      continue
    cond = np.asarray(conditioning.image_to_video(first[index], videos.shape[1]))
    samples = np.concatenate([
        sampler(prompts, seed, cond=cond, known=conditioning.split_cond(cond)) for seed in seeds])
    scores = alignment.alignment_scores(samples, prompts * len(seeds))
    out[name] = {k: v for k, v in scores.items() if k != "rows"}
  return out
