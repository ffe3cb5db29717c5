"""TFDS builder for procedural captioned clips (see render.py), stored as array_record.

Works without TensorFlow: videos are zlib-compressed uint8 `Tensor` features (`Video` needs TF
and is slower, docs/benchmarks.md), read back with `builder.as_data_source` for grain.
"""
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from lumiere_jax import errors
from lumiere_jax import progress as progress_lib
from lumiere_jax.data import render
from lumiere_jax.data import text_features

_SPLITS = ("train", "validation", "test")


class SyntheticClipsConfig(tfds.core.BuilderConfig):
  """Generation settings; the name encodes all of them so settings never share a directory."""

  def __init__(self, *, variant="simple", num_frames=8, resolution=32, fps=8, num_train=8000,
               num_validation=256, num_test=256, seed=0, text_embedding_dim=0, max_text_len=16):
    if variant not in render.VARIANTS:
      raise errors.UserError(f"Unknown variant {variant!r}; expected one of {render.VARIANTS}.")
    if num_frames < 1 or resolution < 8 or fps < 1:
      raise errors.UserError(f"Need num_frames >= 1, resolution >= 8, fps >= 1; "
                             f"got {num_frames}, {resolution}, {fps}.")
    if min(num_train, num_validation, num_test) < 1:
      raise errors.UserError(
          f"Split sizes must be positive, got {num_train}, {num_validation}, {num_test}.")
    if text_embedding_dim < 0 or (text_embedding_dim and max_text_len < 1):
      raise errors.UserError(f"Need text_embedding_dim >= 0 and max_text_len >= 1; got "
                             f"{text_embedding_dim}, {max_text_len}.")
    name = (f"{variant}_t{num_frames}_r{resolution}_f{fps}_"
            f"n{num_train}-{num_validation}-{num_test}_s{seed}")
    if text_embedding_dim:  # Stored caption features (text.kind='precomputed').
      name += f"_e{text_embedding_dim}x{max_text_len}"
    super().__init__(name=name, description=f"{variant} synthetic clips")
    self.variant = variant
    self.num_frames = num_frames
    self.resolution = resolution
    self.fps = fps
    self.num_train = num_train
    self.num_validation = num_validation
    self.num_test = num_test
    self.seed = seed
    self.text_embedding_dim = text_embedding_dim
    self.max_text_len = max_text_len


def label_names(variant):
  """Attribute label -> class names stored with each example (integer labels in batches)."""
  names = {"color": list(render.COLORS), "shape": list(render.SHAPES),
           "direction": list(render.DIRECTIONS)}
  if variant == "full":
    names.update(size=list(render.SIZES), speed=list(render.SPEEDS), path=list(render.PATHS),
                 background=list(render.BACKGROUNDS))
    # The second object's attributes, "none" when the clip has one object.
    names.update({f"{k}_2": ["none"] + names[k]
                  for k in ("color", "shape", "direction", "size", "speed", "path")})
  return names


def attribute_labels(attrs):
  """Integer labels of a clip's attributes, keyed as in `label_names`."""
  names = label_names(attrs["variant"])
  first = attrs["objects"][0]
  labels = {k: names[k].index(first[k]) for k in ("color", "shape", "direction")}
  if attrs["variant"] == "full":
    second = attrs["objects"][1] if len(attrs["objects"]) > 1 else None
    for k in ("size", "speed", "path"):
      labels[k] = names[k].index(first[k])
    labels["background"] = names["background"].index(attrs["background"])
    for k in ("color", "shape", "direction", "size", "speed", "path"):
      labels[f"{k}_2"] = names[f"{k}_2"].index(second[k] if second else "none")
    labels["num_objects"] = len(attrs["objects"])
  return labels


@functools.lru_cache(maxsize=None)
def _encoder(dim):
  """One encoder per dim for the whole build, so its per-word vectors are computed once."""
  return text_features.HashedWordEncoder(dim)


def make_example(config, split, index):
  """Example `index` of `split`: depends only on (config, split, index), hence deterministic."""
  rng = np.random.default_rng([config.seed, _SPLITS.index(split), index])
  attrs = render.sample_attributes(rng, config.variant, heldout=(split == "test"))
  example = {"video": render.render_clip(attrs, config.num_frames, config.resolution),
             "caption": render.make_caption(attrs, rng)}
  example.update(attribute_labels(attrs))
  if config.text_embedding_dim:
    feats, mask = _encoder(config.text_embedding_dim).encode([example["caption"]],
                                                            config.max_text_len)
    example["text_embedding"], example["text_mask"] = feats[0].astype(np.float16), mask[0]
  return example


class SyntheticClips(tfds.core.GeneratorBasedBuilder):
  """Colored shapes moving across a background, captioned, with attribute labels."""

  VERSION = tfds.core.Version("1.0.0")
  # The default job's settings, so `tfds.data_source("synthetic_clips")` finds them by name.
  BUILDER_CONFIGS = [SyntheticClipsConfig()]

  def _info(self):
    cfg = self.builder_config
    features = {
        "video": tfds.features.Tensor(
            shape=(cfg.num_frames, cfg.resolution, cfg.resolution, 3), dtype=np.uint8,
            encoding=tfds.features.Encoding.ZLIB),
        "caption": tfds.features.Text(),
    }
    features.update({k: tfds.features.ClassLabel(names=v)
                     for k, v in label_names(cfg.variant).items()})
    if cfg.variant == "full":
      features["num_objects"] = tfds.features.Scalar(dtype=np.int32)
    if cfg.text_embedding_dim:
      features["text_embedding"] = tfds.features.Tensor(
          shape=(cfg.max_text_len, cfg.text_embedding_dim), dtype=np.float16,
          encoding=tfds.features.Encoding.ZLIB)
      features["text_mask"] = tfds.features.Tensor(shape=(cfg.max_text_len,), dtype=np.bool_)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(fps=cfg.fps),
        # Keep example i at index i; grain shuffles at read time.
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "validation": cfg.num_validation, "test": cfg.num_test}
    return {split: self._generate_examples(split, n) for split, n in sizes.items()}

  def _generate_examples(self, split, num_examples):
    progress = progress_lib.Progress(f"{self.name}/{self.builder_config.name} {split}",
                                     num_examples, unit="clips", interval=2.0)
    for i in range(num_examples):
      yield i, make_example(self.builder_config, split, i)
      progress.update(i + 1, force=i + 1 == num_examples)


def resolve_data_dir(data_cfg):
  """`data_cfg.data_dir`, else $LUMIERE_DATA_DIR, else ~/tensorflow_datasets."""
  data_dir = data_cfg.data_dir or os.environ.get("LUMIERE_DATA_DIR") or "~/tensorflow_datasets"
  return os.path.expanduser(data_dir)


def config_from_data_cfg(data_cfg):
  text = {}
  if data_cfg.get("text_embedding_dim", 0):
    text = dict(text_embedding_dim=data_cfg.text_embedding_dim,
                max_text_len=data_cfg.max_text_len)
  return SyntheticClipsConfig(
      variant=data_cfg.variant, num_frames=data_cfg.num_frames, resolution=data_cfg.resolution,
      fps=data_cfg.fps, num_train=data_cfg.num_train, num_validation=data_cfg.num_validation,
      num_test=data_cfg.num_test, seed=data_cfg.builder_seed, **text)


def build_dataset(data_cfg, data_dir=None):
  """Returns the prepared builder for `data_cfg`, generating it only on the first call."""
  if data_cfg.name != "synthetic_clips":
    raise errors.UserError(f"Unknown dataset name {data_cfg.name!r}; expected 'synthetic_clips'.")
  config = config_from_data_cfg(data_cfg)
  # TFDS refuses a new config object named like a predefined one: use the predefined one then.
  config = SyntheticClips.builder_configs.get(config.name, config)
  builder = SyntheticClips(config=config, data_dir=data_dir or resolve_data_dir(data_cfg),
                           file_format="array_record")
  if not builder.is_prepared():
    builder.download_and_prepare()
  return builder
