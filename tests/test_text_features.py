"""Tests for the frozen caption encoder behind `text.kind='precomputed'`."""
import numpy as np
import pytest

from conftest import load_experiment
from lumiere_jax.data import text_features


def test_features_are_deterministic_per_word_and_position():
  enc = text_features.HashedWordEncoder(16)
  feats, mask = enc.encode(["a red square", "A RED circle, moving"], 6)
  assert feats.shape == (2, 6, 16) and feats.dtype == np.float32
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(feats[0, :2], feats[1, :2])  # Same words, same places.
  assert not np.allclose(feats[0, 2], feats[1, 2])  # Different words differ.
  assert not feats[:, 3:][~mask[:, 3:]].any()  # Padding is zero.
  again, _ = text_features.HashedWordEncoder(16).encode(["a red square"], 6)
  np.testing.assert_array_equal(again[0], feats[0])  # No state: a new encoder agrees.
  swapped, _ = enc.encode(["red a square"], 6)
  assert not np.allclose(swapped[0, :2], feats[0, :2])  # Word order is encoded.


def test_truncates_to_max_len_and_rejects_wordless_prompts():
  enc = text_features.HashedWordEncoder(4)
  feats, mask = enc.encode(["one two three four five"], 3)
  assert feats.shape == (1, 3, 4) and mask.all()
  with pytest.raises(ValueError, match="no words"):
    enc.encode_prompts(["  ,. "], 3)
  with pytest.raises(ValueError, match="dim must be"):
    text_features.HashedWordEncoder(1)


def test_encoder_for_checks_the_config():
  config = load_experiment("tiny", "precomputed")
  assert text_features.encoder_for(config).dim == 64
  config.data.text_embedding_dim = 0  # No stored features to read.
  with pytest.raises(ValueError, match=r"set data.text_embedding_dim > 0 \(their dim\), got 0"):
    text_features.encoder_for(config)
  with pytest.raises(ValueError, match="not 'precomputed'"):
    text_features.encoder_for(load_experiment("tiny"))
