"""A small video classifier of the synthetic clips, whose features give a domain Frechet distance.

I3D features (FVD) mean little on 32x32 synthetic shapes, so the project trains its own feature
extractor: factorized space-time convolutions (spatial 1x3x3, then temporal 3x1x1, as in STUNet)
with pooling, predicting the clip's color, shape and direction (the dataset's ClassLabel
features). It trains in about a minute on 2 CPU cores on first use and is saved next to the
dataset (`<dataset dir>/eval_classifier_<settings hash>.msgpack` + `.json`), so every sweep
compares generated and real clips in the same feature space. Features = the penultimate layer.
"""
import hashlib
import json
import os

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import serialization

from lumiere_jax import errors
from lumiere_jax import progress as progress_lib
from lumiere_jax import video_io
from lumiere_jax.data import datasets
from lumiere_jax.evaluate import frechet

DEFAULTS = dict(labels=("color", "shape", "direction"), space_to_depth=4, channels=(32, 64),
                feature_dim=64,
                steps=300, batch_size=32, lr=3e-3, max_train_examples=2048, seed=0)


class VideoClassifier(nn.Module):
  """uint8-range float video (B, T, H, W, 3) in [-1, 1] -> (features (B, D), {label: logits})."""
  num_classes: tuple[tuple[str, int], ...]
  space_to_depth: int = DEFAULTS["space_to_depth"]
  channels: tuple[int, ...] = DEFAULTS["channels"]
  feature_dim: int = DEFAULTS["feature_dim"]

  @nn.compact
  def __call__(self, x):
    # Pixels to channels first: XLA's CPU convolutions are slow, and colors survive the fold.
    x = einops.rearrange(x, "b t (h p) (w q) c -> b t h w (p q c)", p=self.space_to_depth,
                         q=self.space_to_depth)
    for i, channels in enumerate(self.channels):
      x = nn.relu(nn.Conv(channels, (1, 3, 3), name=f"spatial_{i}")(x))
      x = nn.relu(nn.Conv(channels, (3, 1, 1), name=f"temporal_{i}")(x))
      if i < len(self.channels) - 1 and min(x.shape[2:4]) >= 2:
        x = nn.avg_pool(x, (1, 2, 2), (1, 2, 2))
    x = x.mean(axis=(1, 2, 3))
    features = nn.relu(nn.Dense(self.feature_dim, name="features")(x))
    logits = {name: nn.Dense(n, name=f"head_{name}")(features) for name, n in self.num_classes}
    return features, logits


def settings(cfg=None):
  """Classifier settings: DEFAULTS updated with `cfg` (a dict or ConfigDict, unknown keys fail)."""
  cfg = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg or {})
  unknown = set(cfg) - set(DEFAULTS)
  if unknown:
    raise errors.UserError(f"Unknown classifier settings {sorted(unknown)}; known: "
                           f"{sorted(DEFAULTS)}.")
  out = dict(DEFAULTS, **cfg)
  out["labels"], out["channels"] = tuple(out["labels"]), tuple(out["channels"])
  return out


def _normalize(videos):
  return jnp.asarray(video_io.to_float(videos))


class Classifier:
  """A trained `VideoClassifier` with its label names; `features` feeds the Frechet distance."""

  def __init__(self, module, params, label_names, meta=None, batch_size=64):
    self.module = module
    self.params = params
    self.label_names = label_names
    self.meta = meta or {}
    self.batch_size = batch_size
    self._apply = jax.jit(lambda p, v: module.apply({"params": p}, _normalize(v)))

  def _run(self, videos):
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.dtype != np.uint8:
      raise ValueError(f"Expected uint8 videos (B, T, H, W, 3), got {videos.dtype} "
                       f"{videos.shape}.")
    outs = [self._apply(self.params, videos[i:i + self.batch_size])
            for i in range(0, len(videos), self.batch_size)]
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outs)

  def features(self, videos):
    """Penultimate-layer features (N, D) float64 of uint8 videos (N, T, H, W, 3)."""
    return self._run(videos)[0].astype(np.float64)

  def predict(self, videos):
    """{label: predicted class names (N,)} of uint8 videos."""
    logits = self._run(videos)[1]
    return {k: [self.label_names[k][i] for i in np.argmax(v, -1)] for k, v in logits.items()}


def read_split(builder, split, labels, limit=None):
  """(uint8 videos (N, T, H, W, 3), {label: int (N,)}, captions) of the first `limit` examples."""
  source = builder.as_data_source(split)
  num = len(source) if limit is None else min(limit, len(source))
  examples = [source[i] for i in range(num)]
  videos = np.stack([e["video"] for e in examples])
  targets = {k: np.array([e[k] for e in examples], np.int32) for k in labels}
  captions = [e["caption"].decode("utf-8") if isinstance(e["caption"], bytes) else e["caption"]
              for e in examples]
  return videos, targets, captions


def _label_names(builder, labels):
  features = builder.info.features
  missing = [k for k in labels if k not in features or not hasattr(features[k], "names")]
  if missing:
    raise errors.UserError(f"Dataset {builder.info.full_name} has no ClassLabel features "
                           f"{missing}: the domain classifier needs the synthetic_clips labels.")
  return {k: list(features[k].names) for k in labels}


def _module(cfg, names):
  return VideoClassifier(tuple((k, len(names[k])) for k in cfg["labels"]), cfg["space_to_depth"],
                         cfg["channels"], cfg["feature_dim"])


def train(builder, cfg=None, show_progress=True):
  """Trains a `VideoClassifier` on the train split; returns a `Classifier` with val accuracy."""
  cfg = settings(cfg)
  names = _label_names(builder, cfg["labels"])
  videos, targets, _ = read_split(builder, "train", cfg["labels"], cfg["max_train_examples"])
  module = _module(cfg, names)
  rng = jax.random.PRNGKey(cfg["seed"])
  params = module.init(rng, _normalize(videos[:1]))["params"]
  tx = optax.adam(optax.cosine_decay_schedule(cfg["lr"], cfg["steps"]))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      _, logits = module.apply({"params": p}, _normalize(x))
      return sum(optax.softmax_cross_entropy_with_integer_labels(logits[k], y[k]).mean()
                 for k in logits)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  order = np.random.default_rng(cfg["seed"])
  bs = min(cfg["batch_size"], len(videos))
  prog = progress_lib.Progress("eval classifier", cfg["steps"], unit="steps") \
      if show_progress else None
  loss = float("nan")
  for i in range(cfg["steps"]):
    idx = order.choice(len(videos), bs, replace=False)
    params, opt_state, loss = step(params, opt_state, videos[idx],
                                   {k: v[idx] for k, v in targets.items()})
    if prog:
      prog.update(i + 1, f"loss {float(loss):.3f}")
  classifier = Classifier(module, params, names)
  val_videos, val_targets, _ = read_split(builder, "validation", cfg["labels"])
  logits = classifier._run(val_videos)[1]  # pylint: disable=protected-access
  accuracy = {f"{k}_acc": float(np.mean(np.argmax(logits[k], -1) == val_targets[k]))
              for k in names}
  classifier.meta = dict(settings=cfg, label_names=names, final_loss=float(loss),
                         validation=accuracy)
  if prog:
    prog.close(" ".join(f"{k} {v:.2f}" for k, v in accuracy.items()))
  return classifier


def cache_path(builder, cfg=None):
  """Where the classifier of `cfg` for this dataset is saved (its settings are hashed in)."""
  digest = hashlib.sha256(json.dumps(settings(cfg), sort_keys=True).encode()).hexdigest()[:10]
  return os.path.join(builder.data_dir, f"eval_classifier_{digest}.msgpack")


def save(classifier, path):
  with open(path + ".tmp", "wb") as f:
    f.write(serialization.to_bytes(classifier.params))
  os.replace(path + ".tmp", path)
  with open(path[:-len(".msgpack")] + ".json", "w", encoding="utf-8") as f:
    json.dump(classifier.meta, f, indent=2)


def load(path):
  """A classifier saved by `save`: the msgpack params and the json meta (settings, labels)."""
  meta_path = path[:-len(".msgpack")] + ".json"
  for p in (path, meta_path):
    if not os.path.isfile(p):
      raise FileNotFoundError(f"classifier file not found: {p}")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  cfg = settings(meta["settings"])
  names = meta["label_names"]
  module = _module(cfg, names)
  with open(path, "rb") as f:
    params = serialization.msgpack_restore(f.read())
  return Classifier(module, params, names, meta)


def load_or_train(data_cfg, cfg=None, data_dir=None, show_progress=True):
  """The dataset's classifier for `cfg`: loaded if saved, else trained (and saved) now."""
  builder = datasets.build_dataset(data_cfg, data_dir)
  path = cache_path(builder, cfg)
  if os.path.isfile(path):
    return load(path)
  classifier = train(builder, cfg, show_progress)
  save(classifier, path)
  logging.info("Saved the evaluation classifier to %s (validation %s)", path,
               classifier.meta["validation"])
  return classifier


def frechet_distance(classifier, videos, real_features):
  """Domain FD between uint8 `videos` and precomputed real features (N, D)."""
  if len(videos) < 2:
    raise ValueError(f"The Frechet distance needs at least 2 videos, got {len(videos)}.")
  mu, sigma = frechet.stats(classifier.features(videos))
  mu_real, sigma_real = frechet.stats(real_features)
  return frechet.frechet_distance(mu, sigma, mu_real, sigma_real)
