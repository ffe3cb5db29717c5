"""Per-process grain input pipeline: TFDS array_record source -> batches of numpy arrays.

Each process reads its own shard (`ShardByJaxProcess`) and yields its slice of the global
batch; `make_global_batch` assembles the global `jax.Array`s. The returned iterator's state goes
into the Orbax checkpoint (`grain.python.PyGrainCheckpointSave/Restore` inside
`ocp.args.Composite`), so a resumed run continues with exactly the next batch.
"""
import dataclasses
import re

import grain.python as grain
import jax
import numpy as np

from lumiere_jax import errors
from lumiere_jax import video_io
from lumiere_jax.data import render

_NON_LABEL_KEYS = ("video", "caption", "text_embedding", "text_mask")


@dataclasses.dataclass(frozen=True)
class DecodeVideo(grain.MapTransform):
  """uint8 video -> float32 in [-1, 1]; caption -> str; integer features (labels) -> int32.

  Other features (e.g. a video_folder clip's `source` path) are dropped: they do not batch.
  """

  def map(self, element):
    out = {k: np.int32(v) for k, v in element.items()
           if k not in _NON_LABEL_KEYS and np.issubdtype(np.asarray(v).dtype, np.integer)}
    out["video"] = video_io.to_float(element["video"])
    caption = element["caption"]
    out["caption"] = caption.decode("utf-8") if isinstance(caption, bytes) else caption
    for key in ("text_embedding", "text_mask"):
      if key in element:
        out[key] = element[key]
    return out


@dataclasses.dataclass(frozen=True)
class RandomTemporalCrop(grain.RandomMapTransform):
  """Random window of `num_frames` frames from a longer stored clip."""
  num_frames: int

  def random_map(self, element, rng):
    start = rng.integers(element["video"].shape[0] - self.num_frames + 1)
    element["video"] = element["video"][start:start + self.num_frames]
    return element


# Direction words a flip turns into each other: a mirror image (width) swaps left and right, a
# reversed clip (time) runs every motion the other way.
_FLIPPED_WORDS = {2: {"left": "right", "right": "left"},
                  0: {"left": "right", "right": "left", "up": "down", "down": "up"}}
# Integer direction labels of synthetic clips (`synthetic.label_names`).
_DIRECTION_LABELS = {"direction": render.DIRECTIONS, "direction_2": ("none",) + render.DIRECTIONS}


@dataclasses.dataclass(frozen=True)
class RandomFlip(grain.RandomMapTransform):
  """Flips the video along `axis` (0: time, 2: width) with probability 1/2.

  The caption's direction words (and a `direction` label, if any) are flipped with it, so "moves
  left" stays true of the clip. Off by default: the synthetic data covers every direction anyway.
  """
  axis: int

  def random_map(self, element, rng):
    if rng.integers(2):
      element["video"] = np.flip(element["video"], axis=self.axis)
      swap = _FLIPPED_WORDS[self.axis]
      if "caption" in element:
        element["caption"] = re.sub(r"\b(" + "|".join(swap) + r")\b",
                                    lambda m: swap[m.group(1)], element["caption"])
      for key, names in _DIRECTION_LABELS.items():
        if key in element:
          name = names[element[key]]
          element[key] = np.int32(names.index(swap.get(name, name)))
    return element


@dataclasses.dataclass(frozen=True)
class Tokenize(grain.MapTransform):
  """caption -> `tokens` int32 (L,), `text_mask` bool (L,); the string itself is dropped."""
  tokenizer: object
  max_len: int

  def map(self, element):
    element.pop("text_embedding", None)  # A dataset may store features the run does not use.
    tokens, mask = self.tokenizer.encode([element.pop("caption")], self.max_len)
    element["tokens"], element["text_mask"] = tokens[0], mask[0]
    return element


@dataclasses.dataclass(frozen=True)
class ReadTextEmbedding(grain.MapTransform):
  """Stored caption features -> `tokens` float32 (L, D), `text_mask` bool (L,), padded or cut to
  `max_len`; the caption string is dropped (`text.kind='precomputed'`)."""
  max_len: int

  def map(self, element):
    feats = np.asarray(element.pop("text_embedding"), np.float32)[:self.max_len]
    mask = np.asarray(element.pop("text_mask"), bool)[:self.max_len]
    pad = self.max_len - feats.shape[0]
    element["tokens"] = np.pad(feats, ((0, pad), (0, 0)))
    element["text_mask"] = np.pad(mask, (0, pad))
    element.pop("caption")
    return element


def create_data_iterator(data_cfg, builder, tokenizer, split, global_batch_size, seed,
                         shuffle=True, num_epochs=None, shard_options=None):
  """Returns a checkpointable grain `DataLoaderIterator` over this process's batches.

  Args:
    data_cfg: `config.data` (num_frames, max_text_len, random_flip, random_temporal_flip,
      worker_count).
    builder: a prepared TFDS builder with `video` (T, H, W, 3) uint8 and `caption` features.
    tokenizer: `tokenizer.Tokenizer`; None reads the dataset's stored `text_embedding` and
      `text_mask` features instead (`text.kind='precomputed'`).
    split: TFDS split name, e.g. "train".
    global_batch_size: batch over all processes; each yields `global // shard_count` examples.
    seed: shuffle and augmentation seed.
    shuffle: reshuffle every epoch.
    num_epochs: None repeats forever (training); 1 for a single evaluation pass.
    shard_options: grain `ShardOptions`; default one shard per JAX process, dropping the
      remainder so every process yields the same number of batches.

  Returns:
    Iterator of dicts: `video` (b, T, H, W, 3) float32, `tokens` (b, L) int32 (or stored
    features (b, L, D) float32 when `tokenizer` is None), `text_mask`
    (b, L) bool and the dataset's integer features (b,), if any: attribute labels for
    synthetic_clips, `start_frame` for video_folder.
  """
  if shard_options is None:
    shard_options = grain.ShardByJaxProcess(drop_remainder=True)
  if global_batch_size < 1 or global_batch_size % shard_options.shard_count:
    raise errors.UserError(f"Global batch size {global_batch_size} is not a positive multiple of "
                           f"the process count {shard_options.shard_count}.")
  stored_frames = builder.info.features["video"].shape[0]
  if stored_frames < data_cfg.num_frames:
    raise errors.UserError(f"Dataset clips have {stored_frames} frames, fewer than num_frames="
                           f"{data_cfg.num_frames}.")
  features = builder.info.features
  if tokenizer is None and not {"text_embedding", "text_mask"} <= set(features.keys()):
    raise errors.UserError(f"Dataset {builder.name}/{builder.builder_config.name} stores no "
                           "caption features (text_embedding, text_mask) for "
                           "text.kind='precomputed'; build it with data.text_embedding_dim > 0.")
  source = builder.as_data_source(split)
  sampler = grain.IndexSampler(num_records=len(source), shard_options=shard_options,
                               shuffle=shuffle, num_epochs=num_epochs, seed=seed)
  operations = [DecodeVideo()]
  if stored_frames > data_cfg.num_frames:
    operations.append(RandomTemporalCrop(data_cfg.num_frames))
  if data_cfg.random_flip:
    operations.append(RandomFlip(axis=2))
  if data_cfg.random_temporal_flip:
    operations.append(RandomFlip(axis=0))
  operations += [ReadTextEmbedding(data_cfg.max_text_len) if tokenizer is None
                 else Tokenize(tokenizer, data_cfg.max_text_len),
                 grain.Batch(global_batch_size // shard_options.shard_count,
                             drop_remainder=True)]
  loader = grain.DataLoader(data_source=source, sampler=sampler, operations=operations,
                            worker_count=data_cfg.worker_count)
  return iter(loader)


def make_global_batch(batch, mesh, batch_axes=("data", "fsdp")):
  """Process-local numpy batch -> global `jax.Array`s sharded on dim 0 over `batch_axes`.

  Axes missing from `mesh` are skipped, so a data-only mesh works with the default.
  """
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  if not axes:
    raise errors.UserError(f"None of the batch axes {batch_axes} is in the mesh axes "
                           f"{mesh.axis_names}.")
  num_shards = int(np.prod([mesh.shape[a] for a in axes]))
  local = next(iter(jax.tree.leaves(batch))).shape[0]
  if (local * jax.process_count()) % num_shards:
    raise errors.UserError(f"Global batch {local * jax.process_count()} is not divisible by the "
                           f"{num_shards} devices along mesh axes {axes}.")
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
