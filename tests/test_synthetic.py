"""Tests for the synthetic-clips TFDS builder."""
import numpy as np
import pytest

from lumiere_jax.data import render
from conftest import small_data_cfg
from lumiere_jax.data import synthetic


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def builder(data_dir):
  return synthetic.build_dataset(small_data_cfg(), data_dir)


def _combo(example, split_names=("color", "shape", "direction")):
  names = synthetic.label_names("simple")
  return tuple(names[k][example[k]] for k in split_names)


def test_config_name_encodes_every_setting():
  cfg = synthetic.config_from_data_cfg(small_data_cfg())
  assert cfg.name == "simple_t4_r16_f8_n40-8-8_s0"
  names = {synthetic.config_from_data_cfg(small_data_cfg(**{k: v})).name for k, v in [
      ("variant", "full"), ("num_frames", 5), ("resolution", 17), ("fps", 9), ("num_train", 41),
      ("num_validation", 9), ("num_test", 9), ("builder_seed", 1)]}
  assert len(names) == 8 and cfg.name not in names


def test_build_writes_array_record_and_is_reused(builder, data_dir, monkeypatch):
  assert builder.info.file_format.value == "array_record"
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
      "train": 40, "validation": 8, "test": 8}
  monkeypatch.setattr(synthetic.SyntheticClips, "download_and_prepare",
                      lambda *a, **k: pytest.fail("rebuilt a prepared dataset"))
  again = synthetic.build_dataset(small_data_cfg(), data_dir)
  assert again.data_dir == builder.data_dir


def test_examples_are_stored_in_order_and_deterministic(builder):
  source = builder.as_data_source("train")
  for i in (0, 17, 39):
    expected = synthetic.make_example(builder.builder_config, "train", i)
    got = source[i]
    np.testing.assert_array_equal(got["video"], expected["video"])
    assert got["caption"].decode() == expected["caption"]
    assert got["color"] == expected["color"]
  other_seed = synthetic.config_from_data_cfg(small_data_cfg(builder_seed=1))
  assert not np.array_equal(synthetic.make_example(other_seed, "train", 0)["video"],
                            source[0]["video"])


def test_only_the_test_split_holds_heldout_combinations(builder):
  heldout = set(render.heldout_combinations())
  for split, want in (("train", False), ("validation", False), ("test", True)):
    source = builder.as_data_source(split)
    assert {_combo(source[i]) in heldout for i in range(len(source))} == {want}, split


def test_stored_captions_name_the_labels(builder):
  source = builder.as_data_source("train")
  for i in range(len(source)):
    assert set(_combo(source[i])) <= set(source[i]["caption"].decode().split())


def test_full_variant_has_all_attribute_features(tmp_path):
  builder = synthetic.build_dataset(
      small_data_cfg(variant="full", num_train=6, num_validation=2, num_test=2), str(tmp_path))
  features = builder.info.features
  for key in ("size", "speed", "path", "background", "num_objects", "color_2"):
    assert key in features
  example = builder.as_data_source("train")[0]
  assert example["video"].shape == (4, 16, 16, 3) and example["num_objects"] in (1, 2)


def test_resolve_data_dir(monkeypatch, tmp_path):
  assert synthetic.resolve_data_dir(small_data_cfg(data_dir=str(tmp_path))) == str(tmp_path)
  monkeypatch.setenv("LUMIERE_DATA_DIR", "/data/x")
  assert synthetic.resolve_data_dir(small_data_cfg()) == "/data/x"
  monkeypatch.delenv("LUMIERE_DATA_DIR")
  assert synthetic.resolve_data_dir(small_data_cfg()).endswith("tensorflow_datasets")


def test_bad_config_raises(tmp_path):
  with pytest.raises(ValueError, match="dataset name"):
    synthetic.build_dataset(small_data_cfg(name="ucf101"), str(tmp_path))
  with pytest.raises(ValueError, match="variant"):
    synthetic.config_from_data_cfg(small_data_cfg(variant="fancy"))
  with pytest.raises(ValueError, match="Split sizes"):
    synthetic.config_from_data_cfg(small_data_cfg(num_test=0))
