"""Kinetics-400 Inflated 3D ConvNet (I3D) in Flax, for FVD on real video data.

The architecture is the reference's (deepmind/kinetics-i3d `i3d.py`, the network behind the
TF-Hub module `i3d-kinetics-400` that FVD uses, Unterthiner et al. 2018): Inception-v1 inflated to
3D, every unit a bias-free SAME conv + BatchNorm (offset only, eps 1e-3) + ReLU. Weights come
from a local `.npz` whose keys are the checkpoint's variable names without the
`RGB/inception_i3d/` prefix (docs/metrics.md shows the conversion); `expected_shapes()` lists them.

FVD follows the reference: frames resized to 224x224 (bilinear), scaled to [-1, 1], and the
400-way logits (averaged over time) are the features.
"""
import functools
import os
import re
import warnings
import zipfile

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax import errors
from lumiere_jax import video_io
from lumiere_jax.evaluate import frechet

NUM_CLASSES = 400
RESOLUTION = 224
# The reference needs 2 temporal positions at the last level for its (2, 7, 7) logits pool.
MIN_FRAMES = 9
# (name, Branch_0, Branch_1 (1x1, 3x3), Branch_2 (1x1, 3x3), Branch_3) output channels.
_MIXED = {
    "Mixed_3b": (64, (96, 128), (16, 32), 32),
    "Mixed_3c": (128, (128, 192), (32, 96), 64),
    "Mixed_4b": (192, (96, 208), (16, 48), 64),
    "Mixed_4c": (160, (112, 224), (24, 64), 64),
    "Mixed_4d": (128, (128, 256), (24, 64), 64),
    "Mixed_4e": (112, (144, 288), (32, 64), 64),
    "Mixed_4f": (256, (160, 320), (32, 128), 128),
    "Mixed_5b": (256, (160, 320), (32, 128), 128),
    "Mixed_5c": (384, (192, 384), (48, 128), 128),
}
# npz suffix -> (flax collection, flax leaf name).
_LEAVES = {"conv_3d/w": ("params", "kernel"), "conv_3d/b": ("params", "bias"),
           "batch_norm/beta": ("params", "bias"), "batch_norm/moving_mean": ("batch_stats", "mean"),
           "batch_norm/moving_variance": ("batch_stats", "var")}


class Unit3D(nn.Module):
  """Conv3D (SAME, no bias) -> BatchNorm (inference statistics) -> ReLU, as the reference."""
  channels: int
  kernel: tuple[int, int, int] = (1, 1, 1)
  stride: tuple[int, int, int] = (1, 1, 1)
  logits: bool = False  # The final unit: bias, no BatchNorm, no activation.

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.channels, self.kernel, self.stride, padding="SAME", use_bias=self.logits,
                name="conv_3d")(x)
    if self.logits:
      return x
    x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3,
                     name="batch_norm")(x)
    return nn.relu(x)


def _max_pool(x, window, stride):
  return nn.max_pool(x, window, stride, padding="SAME")


class _Branch(nn.Module):
  """One branch of a Mixed block: optional 3x3x3 max pool, then units (name, channels, kernel)."""
  units: tuple
  pool_first: bool = False

  @nn.compact
  def __call__(self, x):
    if self.pool_first:
      x = _max_pool(x, (3, 3, 3), (1, 1, 1))
    for name, channels, kernel in self.units:
      x = Unit3D(channels, (kernel,) * 3, name=name)(x)
    return x


class Mixed(nn.Module):
  """Inception block: four branches concatenated on channels."""
  b0: int
  b1: tuple[int, int]
  b2: tuple[int, int]
  b3: int
  b2_second_name: str = "Conv3d_0b_3x3"

  @nn.compact
  def __call__(self, x):
    branches = [
        _Branch((("Conv3d_0a_1x1", self.b0, 1),), name="Branch_0"),
        _Branch((("Conv3d_0a_1x1", self.b1[0], 1), ("Conv3d_0b_3x3", self.b1[1], 3)),
                name="Branch_1"),
        _Branch((("Conv3d_0a_1x1", self.b2[0], 1), (self.b2_second_name, self.b2[1], 3)),
                name="Branch_2"),
        _Branch((("Conv3d_0b_1x1", self.b3, 1),), pool_first=True, name="Branch_3"),
    ]
    return jnp.concatenate([b(x) for b in branches], axis=-1)


class InceptionI3d(nn.Module):
  """(B, T, H, W, 3) in [-1, 1] -> time-averaged logits (B, num_classes).

  The final average pool is the reference's (2, 7, 7) VALID window, shrunk to the feature map
  when inputs are smaller than 224x224 x 9 frames (only the tests use such inputs).
  """
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x):
    x = Unit3D(64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7")(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = Unit3D(64, name="Conv3d_2b_1x1")(x)
    x = Unit3D(192, (3, 3, 3), name="Conv3d_2c_3x3")(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    for name in ("Mixed_3b", "Mixed_3c"):
      x = Mixed(*_MIXED[name], name=name)(x)
    x = _max_pool(x, (3, 3, 3), (2, 2, 2))
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
      x = Mixed(*_MIXED[name], name=name)(x)
    x = _max_pool(x, (2, 2, 2), (2, 2, 2))
    # The reference names this one conv differently (a typo kept in its checkpoint).
    x = Mixed(*_MIXED["Mixed_5b"], b2_second_name="Conv3d_0a_3x3", name="Mixed_5b")(x)
    x = Mixed(*_MIXED["Mixed_5c"], name="Mixed_5c")(x)
    window = tuple(min(w, s) for w, s in zip((2, 7, 7), x.shape[1:4]))
    x = nn.avg_pool(x, window, (1, 1, 1), padding="VALID")
    return _Logits(self.num_classes, name="Logits")(x)


class _Logits(nn.Module):
  """1x1x1 conv to class logits, squeezed over space and averaged over time."""
  num_classes: int

  @nn.compact
  def __call__(self, x):
    logits = Unit3D(self.num_classes, logits=True, name="Conv3d_0c_1x1")(x)
    return logits.mean(axis=(2, 3)).mean(axis=1)


def _flax_path(name):
  """npz name -> (collection, flax key path), e.g. 'Conv3d_1a_7x7/conv_3d/w'."""
  for suffix, (collection, leaf) in _LEAVES.items():
    if name.endswith("/" + suffix):
      return collection, tuple(name[:-len(suffix) - 1].split("/")) + (suffix.split("/")[0], leaf)
  raise ValueError(f"I3D variable {name!r} is not a conv or batch-norm variable.")


def expected_shapes(num_classes=NUM_CLASSES):
  """{npz variable name: shape} of the weights file, in the reference's layout."""
  model = InceptionI3d(num_classes)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                             jnp.zeros((1, MIN_FRAMES, 32, 32, 3)))
  shapes = {}
  for (collection, *path), leaf in flax.traverse_util.flatten_dict(variables).items():
    module, layer, kind = "/".join(path[:-2]), path[-2], path[-1]
    suffix = next(s for s, (c, k) in _LEAVES.items()
                  if c == collection and k == kind and s.startswith(layer))
    shapes[f"{module}/{suffix}"] = tuple(leaf.shape)
  return dict(sorted(shapes.items()))


def random_weights(seed=0, num_classes=NUM_CLASSES):
  """A weights dict in the npz layout with random values: for tests and format checks."""
  rng = np.random.default_rng(seed)
  weights = {}
  for name, shape in expected_shapes(num_classes).items():
    if name.endswith("moving_variance"):
      weights[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    elif name.endswith("/w"):
      fan_in = int(np.prod(shape[:-1]))
      weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    else:
      weights[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
  return weights


def variables_from_weights(weights, num_classes=NUM_CLASSES):
  """Checks a {name: array} dict against `expected_shapes` and nests it for `InceptionI3d`.

  Batch-norm vectors may be stored as (C,) or as Sonnet's (1, 1, 1, 1, C).
  """
  expected = expected_shapes(num_classes)
  missing = sorted(set(expected) - set(weights))
  if missing:
    raise errors.UserError(f"I3D weights lack {len(missing)} variables, e.g. {missing[0]!r}: "
                           "see docs/metrics.md for the expected names.")
  flat = {}
  for name, shape in expected.items():
    value = np.asarray(weights[name])
    if "batch_norm" in name and value.shape == (1, 1, 1, 1) + shape:
      value = value.reshape(shape)
    if value.shape != shape:
      raise errors.UserError(f"I3D variable {name!r} has shape {value.shape}, expected {shape}.")
    collection, path = _flax_path(name)
    flat[(collection,) + path] = jnp.asarray(value, jnp.float32)
  return flax.traverse_util.unflatten_dict(flat)


def load_weights(path, num_classes=NUM_CLASSES):
  """Reads and checks an I3D `.npz`; returns the Flax variables of `InceptionI3d`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"I3D weights file not found: {path}")
  try:
    data = np.load(path, allow_pickle=False)
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise errors.UserError(f"I3D weights {path} is not a readable .npz file ({e}).") from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise errors.UserError(f"I3D weights {path} is a single array, expected an .npz of variables.")
  with data:
    weights = {k: data[k] for k in data.files}
  return variables_from_weights(weights, num_classes)


def preprocess(videos, resolution=RESOLUTION):
  """uint8 (B, T, H, W, 3) -> float32 (B, T, 224, 224, 3) in [-1, 1], as the FVD reference.

  jax.image.resize's bilinear uses half-pixel centers, while the reference's TF1
  `resize_bilinear` aligns corners differently: features differ slightly (see docs/metrics.md).
  """
  videos = np.asarray(videos)
  if videos.ndim != 5 or videos.shape[-1] != 3:
    raise ValueError(f"Expected videos of shape (B, T, H, W, 3), got {videos.shape}.")
  if videos.dtype != np.uint8:
    raise ValueError(f"Expected uint8 videos, got {videos.dtype}.")
  b, t = videos.shape[:2]
  x = jnp.asarray(videos, jnp.float32)
  x = jax.image.resize(x, (b, t, resolution, resolution, 3), "bilinear", antialias=False)
  return video_io.to_float(x)


class I3D:
  """Jitted I3D logits of uint8 videos, in batches of `batch_size`."""

  def __init__(self, variables, num_classes=NUM_CLASSES, resolution=RESOLUTION, batch_size=8):
    self.variables = variables
    self.resolution = resolution
    self.batch_size = batch_size
    self._apply = jax.jit(functools.partial(InceptionI3d(num_classes).apply, variables))

  @classmethod
  def from_file(cls, path, **kwargs):
    return cls(load_weights(path, kwargs.get("num_classes", NUM_CLASSES)), **kwargs)

  def __call__(self, videos):
    """uint8 (B, T, H, W, 3) -> float64 logits (B, num_classes)."""
    videos = np.asarray(videos)
    if len(videos) and videos.shape[1] < MIN_FRAMES and self.resolution == RESOLUTION:
      warnings.warn(f"{videos.shape[1]} frames: the reference I3D needs >= {MIN_FRAMES} for its "
                    "temporal pool; logits are not comparable to published FVDs.", stacklevel=2)
    out = [np.asarray(self._apply(preprocess(videos[i:i + self.batch_size], self.resolution)))
           for i in range(0, len(videos), self.batch_size)]
    return np.concatenate(out).astype(np.float64)


def fvd(videos_a, videos_b, weights_path=None, model=None):
  """Frechet video distance between two sets of uint8 videos (B, T, H, W, 3).

  Give `weights_path` (the I3D .npz) or an `I3D` `model` (to reuse its compiled function). The
  reference used 16-frame clips and thousands of videos; fewer than ~400 per set leaves the
  400x400 covariance singular (frechet.stats warns).
  """
  if model is None:
    if weights_path is None:
      raise ValueError("fvd needs weights_path (an I3D .npz) or an I3D model.")
    model = I3D.from_file(weights_path)
  for name, videos in (("videos_a", videos_a), ("videos_b", videos_b)):
    if len(videos) < 2:
      raise ValueError(f"FVD needs at least 2 videos per set, {name} has {len(videos)}.")
  return frechet_distance_of_logits(model(videos_a), model(videos_b))


def frechet_distance_of_logits(logits_a, logits_b):
  """FVD from I3D logits (B, num_classes) of two sets, e.g. with one set's logits computed once."""
  mu_a, sigma_a = frechet.stats(logits_a)
  mu_b, sigma_b = frechet.stats(logits_b)
  return frechet.frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def inception_score(probs, num_splits=1):
  """exp(E_x KL(p(y|x) || p(y))) of class probabilities (N, K); mean and std over splits.

  The classifier is the user's (for UCF101 the reference used a C3D trained on UCF101); this
  takes its softmax outputs. Rows must be distributions.
  """
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[0] < 1:
    raise ValueError(f"Expected probabilities of shape (N, K), got {probs.shape}.")
  if np.any(probs < 0) or not np.allclose(probs.sum(1), 1.0, atol=1e-4):
    raise ValueError("inception_score needs rows of non-negative probabilities summing to 1.")
  if not 1 <= num_splits <= len(probs):
    raise ValueError(f"num_splits must be in [1, {len(probs)}], got {num_splits}.")
  scores = []
  for part in np.array_split(probs, num_splits):
    marginal = part.mean(0, keepdims=True)
    kl = np.sum(part * (np.log(np.maximum(part, 1e-12)) - np.log(np.maximum(marginal, 1e-12))), 1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def ucf101_prompts(class_names):
  """Zero-shot UCF101 prompts from class names: 'ApplyEyeMakeup' -> 'apply eye makeup'.

  Splits CamelCase and acronyms ('YoYo' -> 'yo yo', 'PlayingDaf' -> 'playing daf').
  """
  prompts = []
  for name in class_names:
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", str(name))
    if not words:
      raise ValueError(f"UCF101 class name {name!r} has no words.")
    prompts.append(" ".join(w.lower() for w in words))
  return prompts
