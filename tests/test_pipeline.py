"""Tests for the grain input pipeline."""
import grain.python as grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lumiere_jax.data import pipeline
from lumiere_jax.data import render
from lumiere_jax.evaluate import alignment
from lumiere_jax.evaluate import detector
from conftest import small_data_cfg
from lumiere_jax.data import synthetic
from lumiere_jax.data import text_features
from lumiere_jax.data import tokenizer as tokenizer_lib


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  data_cfg = small_data_cfg()
  builder = synthetic.build_dataset(data_cfg, str(tmp_path_factory.mktemp("tfds")))
  return data_cfg, builder, tokenizer_lib.get_or_train_tokenizer(builder, data_cfg)


def _iterator(data, batch=8, seed=0, **kwargs):
  data_cfg, builder, tok = data
  return pipeline.create_data_iterator(data_cfg, builder, tok, "train", batch, seed, **kwargs)


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batch_contents(data):
  batch = next(_iterator(data))
  assert batch["video"].shape == (8, 4, 16, 16, 3) and batch["video"].dtype == np.float32
  assert -1.0 <= batch["video"].min() and batch["video"].max() <= 1.0
  assert batch["video"].min() == -1.0 and batch["video"].max() == 1.0  # Black bg, pure colors.
  assert batch["tokens"].shape == (8, 16) and batch["tokens"].dtype == np.int32
  assert batch["text_mask"].dtype == bool and batch["text_mask"].any(1).all()
  names = synthetic.label_names("simple")
  for i, caption in enumerate(data[2].decode(batch["tokens"])):
    for key in ("color", "shape", "direction"):
      assert batch[key].dtype == np.int32
      assert names[key][batch[key][i]] in caption.split()


def test_deterministic_by_seed(data):
  a, b, c = _iterator(data, seed=1), _iterator(data, seed=1), _iterator(data, seed=2)
  first_a = next(a)
  _assert_batches_equal(first_a, next(b))
  _assert_batches_equal(next(a), next(b))
  assert not np.array_equal(first_a["video"], next(c)["video"])


def test_two_processes_read_disjoint_shards_covering_the_split(data):
  def keys(batch):
    return [v.tobytes() for v in batch["video"]]

  shards = []
  for index in range(2):
    it = _iterator(data, shuffle=False, num_epochs=1,
                   shard_options=grain.ShardOptions(shard_index=index, shard_count=2))
    batches = list(it)
    assert len(batches) == 5 and batches[0]["video"].shape[0] == 4  # 40 / 2 processes / 4.
    shards.append({k for b in batches for k in keys(b)})
  assert not shards[0] & shards[1]
  whole = _iterator(data, batch=40, shuffle=False, num_epochs=1,
                    shard_options=grain.NoSharding())
  assert shards[0] | shards[1] == set(keys(next(whole)))


def test_iterator_state_round_trips_through_orbax(data, tmp_path):
  it = _iterator(data)
  next(it)
  manager = ocp.CheckpointManager(tmp_path / "ckpt")
  manager.save(1, args=ocp.args.Composite(data=grain.PyGrainCheckpointSave(it)))
  manager.wait_until_finished()
  expected = [next(it) for _ in range(2)]
  resumed = _iterator(data)
  manager.restore(1, args=ocp.args.Composite(data=grain.PyGrainCheckpointRestore(resumed)))
  for want in expected:
    _assert_batches_equal(next(resumed), want)
  manager.close()


def test_temporal_crop_and_flips(data):
  _, builder, tok = data
  cfg = small_data_cfg(num_frames=2, random_flip=True, random_temporal_flip=True)
  batch = next(pipeline.create_data_iterator(cfg, builder, tok, "train", 8, 0))
  assert batch["video"].shape == (8, 2, 16, 16, 3)
  video = np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3, 1)
  seen = set()
  for seed in range(16):
    out = pipeline.RandomFlip(axis=2).random_map({"video": video}, np.random.default_rng(seed))
    seen.add(out["video"].tobytes())
    assert out["video"].tobytes() in (video.tobytes(), video[:, :, ::-1].tobytes())
  assert len(seen) == 2
  with pytest.raises(ValueError, match="fewer than num_frames"):
    pipeline.create_data_iterator(small_data_cfg(num_frames=5), builder, tok, "train", 8, 0)


def test_batch_not_divisible_by_process_count(data):
  with pytest.raises(ValueError, match="process count 3"):
    _iterator(data, batch=8, shard_options=grain.ShardOptions(shard_index=0, shard_count=3))


def test_make_global_batch_shards_the_batch_dimension():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "fsdp"))
  batch = {"video": np.zeros((8, 2, 4, 4, 3), np.float32),
           "tokens": np.arange(8 * 5, dtype=np.int32).reshape(8, 5)}
  out = pipeline.make_global_batch(batch, mesh)
  assert out["video"].shape == (8, 2, 4, 4, 3)
  assert out["tokens"].sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
  assert {s.data.shape[0] for s in out["tokens"].addressable_shards} == {1}
  np.testing.assert_array_equal(np.asarray(out["tokens"]), batch["tokens"])
  data_only = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("data",))
  assert pipeline.make_global_batch(batch, data_only)["tokens"].sharding.spec == (
      jax.sharding.PartitionSpec(("data",)))
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.make_global_batch({"tokens": batch["tokens"][:6]}, mesh)
  with pytest.raises(ValueError, match="batch axes"):
    pipeline.make_global_batch(batch, jax.sharding.Mesh(np.array(jax.devices()[:2]), ("model",)))


def test_precomputed_caption_features_are_read_from_the_dataset(tmp_path):
  data_cfg = small_data_cfg(text_embedding_dim=8, max_text_len=12)
  builder = synthetic.build_dataset(data_cfg, str(tmp_path))
  assert builder.builder_config.name.endswith("_e8x12")
  it = pipeline.create_data_iterator(data_cfg, builder, None, "train", 4, seed=0, shuffle=False)
  batch = next(it)
  assert batch["tokens"].shape == (4, 12, 8) and batch["tokens"].dtype == np.float32
  assert batch["text_mask"].shape == (4, 12) and batch["text_mask"].any(1).all()
  assert "caption" not in batch and "text_embedding" not in batch
  source = builder.as_data_source("train")
  captions = [source[i]["caption"] for i in range(4)]
  captions = [c.decode() if isinstance(c, bytes) else c for c in captions]
  want, want_mask = text_features.HashedWordEncoder(8).encode(captions, 12)
  np.testing.assert_allclose(batch["tokens"], want, atol=1e-2)  # Stored as float16.
  np.testing.assert_array_equal(batch["text_mask"], want_mask)


def test_precomputed_text_needs_stored_features(data):
  data_cfg, builder, _ = data
  with pytest.raises(ValueError, match="stores no caption features"):
    pipeline.create_data_iterator(data_cfg, builder, None, "train", 8, seed=0)


@pytest.mark.parametrize("flips", [False, True])
def test_every_caption_names_the_direction_its_clip_moves(data, flips):
  """Caption-clip pairing end to end: the detector reads each clip's motion from its pixels."""
  data_cfg, builder, tok = data
  cfg = small_data_cfg(random_flip=flips, random_temporal_flip=flips)
  batch = next(pipeline.create_data_iterator(cfg, builder, tok, "train", 32, seed=3))
  videos = np.round((batch["video"] + 1.0) * 127.5).astype(np.uint8)
  names = synthetic.label_names("simple")["direction"]
  captions = tok.decode(batch["tokens"])
  for video, caption, label in zip(videos, captions, batch["direction"]):
    moved = detector.detect(video).direction
    assert alignment.parse_prompt(caption)["direction"] == moved, caption
    assert names[label] == moved


def test_flip_rewrites_the_direction_words_and_label():
  element = {"video": np.zeros((2, 4, 4, 3)), "caption": "a red square moves to the left",
             "direction": np.int32(render.DIRECTIONS.index("left"))}
  flipped = [pipeline.RandomFlip(axis=2).random_map(dict(element), np.random.default_rng(s))
             for s in range(8)]
  captions = {f["caption"] for f in flipped}
  assert captions == {"a red square moves to the left", "a red square moves to the right"}
  for f in flipped:
    assert render.DIRECTIONS[f["direction"]] in f["caption"].split()
  up = dict(element, caption="a cyan circle drifts straight up", direction=np.int32(2))
  outs = {pipeline.RandomFlip(axis=0).random_map(dict(up), np.random.default_rng(s))["caption"]
          for s in range(8)}
  assert outs == {"a cyan circle drifts straight up", "a cyan circle drifts straight down"}
