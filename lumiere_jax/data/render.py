"""Procedural captioned clips of colored shapes moving across a plain background.

Pure numpy, so the same constants and geometry can back an analytic evaluation detector: a
sample's color, shape and direction can be scored against the caption without a learned model.

Geometry (pixel units, image rows grow downwards): an object is a square, circle or upward
triangle of side/diameter `size`, centred at `(x, y)` for each frame. "up" means decreasing `y`.
"""
import numpy as np

COLORS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
# Every object color has one or two channels at 255 and the others at 0; no background does, so
# a pixel's color tells object from background.
BACKGROUNDS = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "white": (255, 255, 255),
}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
SIZES = ("small", "large")
SPEEDS = ("slowly", "quickly")
PATHS = ("straight", "bounce", "circle", "zoom")
VARIANTS = ("simple", "slow", "full")
# One object on black, large, straight path: the variants whose captions name only color, shape
# and direction, and their one speed.
ONE_OBJECT_SPEED = {"simple": "quickly", "slow": "slowly"}

# Unit vectors (dx, dy) in image coordinates.
DIRECTION_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0),
                     "down": (0.0, 1.0)}
# Object size as a fraction of the resolution: "large" (the "simple" size) is ~11 px at 32 px.
SIZE_FRACTIONS = {"small": 0.22, "large": 0.34}
# Distance the object centre travels over the clip, as a fraction of the free range
# (resolution - size): "quickly" (the "simple" speed) crosses the whole frame.
SPEED_TRAVEL = {"slowly": 0.45, "quickly": 1.0}
# Path modifiers, as fractions of the resolution / object size.
BOUNCE_HEIGHT = 0.15
CIRCLE_RADIUS = 0.1
ZOOM_RANGE = (0.6, 1.3)


def heldout_combinations():
  """The (color, shape, direction) triples reserved for the test split.

  Half of the color-shape pairs (even index sum) lose exactly one direction: 9 of 72 triples
  (12.5%). Every color-shape, color-direction and shape-direction pair still occurs in training,
  so the test split measures composition, not unseen words.
  """
  combos = []
  for ci, color in enumerate(COLORS):
    for si, shape in enumerate(SHAPES):
      if (ci + si) % 2 == 0:
        combos.append((color, shape, DIRECTIONS[(ci + 2 * si) % len(DIRECTIONS)]))
  return tuple(combos)

_HELDOUT_LIST = heldout_combinations()
_HELDOUT = frozenset(_HELDOUT_LIST)
_ALL = tuple((c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS)
_TRAIN = tuple(combo for combo in _ALL if combo not in _HELDOUT)


def _check_variant(variant):
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")


def is_heldout(attrs):
  """True if any object of the clip has a held-out (color, shape, direction) combination."""
  return any((o["color"], o["shape"], o["direction"]) in _HELDOUT for o in attrs["objects"])


def _sample_object(rng, variant, combos):
  color, shape, direction = combos[rng.integers(len(combos))]
  obj = {"color": color, "shape": shape, "direction": direction,
         # Position across the motion axis and along it (fractions of the free range).
         "offset": float(rng.uniform()), "start": float(rng.uniform())}
  if variant in ONE_OBJECT_SPEED:
    obj.update(size="large", speed=ONE_OBJECT_SPEED[variant], path="straight")
  else:
    obj.update(size=SIZES[rng.integers(len(SIZES))], speed=SPEEDS[rng.integers(len(SPEEDS))],
               path=PATHS[rng.integers(len(PATHS))])
  return obj


def sample_attributes(rng, variant, heldout=None):
  """Draws the attributes of one clip.

  Args:
    rng: numpy Generator; the result depends only on its state.
    variant: "simple" (one object, black background, straight fast path; only color, shape and
      direction vary), "slow" (the same at the "slowly" speed, from a random start: the motion
      can continue past the clip, which long videos need) or "full" (every attribute varies,
      one or two objects).
    heldout: None draws from all combinations; False only training combinations; True makes the
      first object a held-out combination (the second, if any, is a training one).

  Returns:
    {"variant", "background": name, "objects": [object dicts with color, shape, direction,
    size, speed, path, offset, start]}.
  """
  _check_variant(variant)
  first = _ALL if heldout is None else (_HELDOUT_LIST if heldout else _TRAIN)
  others = _ALL if heldout is None else _TRAIN
  if variant in ONE_OBJECT_SPEED:
    return {"variant": variant, "background": "black",
            "objects": [_sample_object(rng, variant, first)]}
  background = tuple(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
  objects = [_sample_object(rng, variant, first)]
  if rng.integers(2):
    objects.append(_sample_object(rng, variant, others))
  return {"variant": variant, "background": background, "objects": objects}


def object_trajectory(obj, num_frames, resolution):
  """Per-frame centres and sizes of an object, float arrays (T,) in pixels.

  Shared with evaluation so a detector can compare a sample with the intended motion. The
  object always stays inside the frame.
  """
  t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
  base = SIZE_FRACTIONS[obj["size"]] * resolution
  size = np.full_like(t, base)
  radius = CIRCLE_RADIUS * resolution if obj["path"] == "circle" else 0.0
  if obj["path"] == "zoom":
    size = base * (ZOOM_RANGE[0] + (ZOOM_RANGE[1] - ZOOM_RANGE[0]) * t)
  # Range of centre positions that keeps the largest extent of the object inside the frame.
  free = resolution - size.max() - 2 * radius
  low = (resolution - free) / 2
  travel = SPEED_TRAVEL[obj["speed"]] * free
  # Along the motion axis: start somewhere in the slack the travel leaves, then move `travel`.
  along = low + obj["start"] * (free - travel) + travel * t
  across = np.full_like(t, low + obj["offset"] * free)
  if obj["path"] == "bounce":
    hop = BOUNCE_HEIGHT * resolution
    across = np.maximum(across, low + hop) - hop * np.abs(np.sin(2 * np.pi * t))
  dx, dy = DIRECTION_VECTORS[obj["direction"]]
  if dx:
    x, y = (along if dx > 0 else resolution - along), across
  else:
    x, y = across, (along if dy > 0 else resolution - along)
  return x + radius * np.sin(2 * np.pi * t), y + radius * np.cos(2 * np.pi * t), size


def shape_mask(shape, x, y, size, resolution):
  """Boolean (T, H, W) coverage of `shape` centred at (x, y) with side `size`, all (T,)."""
  coords = np.arange(resolution) + 0.5
  gx = coords[None, None, :] - np.asarray(x)[:, None, None]
  gy = coords[None, :, None] - np.asarray(y)[:, None, None]
  half = np.asarray(size)[:, None, None] / 2
  if shape == "square":
    return (np.abs(gx) <= half) & (np.abs(gy) <= half)
  if shape == "circle":
    return gx * gx + gy * gy <= half * half
  if shape == "triangle":
    # Apex up, base down: the half-width grows linearly from 0 at the top to `half` at the base.
    depth = (gy + half) / 2
    return (gy <= half) & (np.abs(gx) <= depth)
  raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def render_clip(attrs, num_frames, resolution):
  """Renders the clip described by `attrs` as uint8 (T, H, W, 3)."""
  if num_frames < 1 or resolution < 8:
    raise ValueError(f"Need num_frames >= 1 and resolution >= 8, got {num_frames}, {resolution}.")
  video = np.empty((num_frames, resolution, resolution, 3), np.uint8)
  video[:] = BACKGROUNDS[attrs["background"]]
  for obj in attrs["objects"]:
    x, y, size = object_trajectory(obj, num_frames, resolution)
    video[shape_mask(obj["shape"], x, y, size, resolution)] = COLORS[obj["color"]]
  return video


_VERBS = ("moves", "slides", "glides", "drifts", "travels")
_VERBS_ING = ("moving", "sliding", "gliding", "drifting", "travelling")
_BOUNCE_VERBS = ("bounces", "hops")
_BOUNCE_VERBS_ING = ("bouncing", "hopping")
_DIRECTION_PHRASES = {
    "left": ("left", "to the left", "towards the left"),
    "right": ("right", "to the right", "towards the right"),
    "up": ("up", "straight up", "up the screen"),
    "down": ("down", "straight down", "down the screen"),
}
_PATH_SUFFIXES = {"straight": ("",), "bounce": ("",), "circle": (" in circles", " in loops"),
                  "zoom": (" while growing", " and grows")}


def _choice(rng, options):
  return options[rng.integers(len(options))]


def _object_phrase(obj, rng, variant, with_background, background):
  """One clause, e.g. "a small red square moves quickly to the left"."""
  noun = f"{obj['color']} {obj['shape']}"
  if variant == "full":
    noun = f"{obj['size']} {noun}"
  bounce = obj["path"] == "bounce"
  verb = _choice(rng, _BOUNCE_VERBS if bounce else _VERBS)
  verb_ing = _choice(rng, _BOUNCE_VERBS_ING if bounce else _VERBS_ING)
  motion = _choice(rng, _DIRECTION_PHRASES[obj["direction"]])
  if variant == "full":
    motion = f"{obj['speed']} {motion}"
  motion += _choice(rng, _PATH_SUFFIXES[obj["path"]])
  where = f" on a {background} background" if with_background else ""
  templates = (
      f"a {noun} {verb} {motion}{where}",
      f"the {noun} is {verb_ing} {motion}{where}",
      f"{noun} {verb} {motion}{where}",
      f"a {noun} {verb} {motion}",
  )
  return _choice(rng, templates)


def make_caption(attrs, rng):
  """A varied caption naming each object's color, shape and direction as whole words.

  "simple" and "slow" captions leave out size and speed (constant there) to stay short.
  """
  variant = attrs["variant"]
  with_background = bool(rng.integers(2))
  clauses = [_object_phrase(o, rng, variant, with_background and i == len(attrs["objects"]) - 1,
                            attrs["background"]) for i, o in enumerate(attrs["objects"])]
  return " and ".join(clauses)
