"""Tests for the word-swap probe (does the model read a caption word?)."""
import numpy as np
import pytest

from lumiere_jax import sample
from lumiere_jax.data import datasets
from lumiere_jax.evaluate import alignment
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.evaluate import word_swap


def test_swap_word_replaces_only_the_attribute_word():
  rng = np.random.default_rng(0)
  for _ in range(10):
    out = word_swap.swap_word("the red square slides to the left", "direction", rng)
    words = alignment.parse_prompt(out)
    assert words["direction"] in ("right", "up", "down")
    assert words["color"] == "red" and words["shape"] == "square"
    assert out.replace(words["direction"], "left") == "the red square slides to the left"
  assert alignment.parse_prompt(
      word_swap.swap_word("a blue circle moves up", "color", rng))["color"] != "blue"
  with pytest.raises(ValueError, match="names no direction"):
    word_swap.swap_word("a blue circle", "direction", rng)


def test_loss_gap_compares_the_same_noise(trained, monkeypatch):
  config, workdir, _ = trained
  model, params, tokenizer, _ = sample.load_params(str(workdir), config)
  builder = datasets.build_dataset(config.data)
  videos, _, captions = classifier_lib.read_split(builder, "test", (), 4)
  rows = word_swap.loss_gap(model, params, tokenizer, config, videos, captions,
                            t_values=(0.3, 0.9))
  assert [r["t"] for r in rows] == pytest.approx([0.3, 0.9])
  assert all(np.isfinite([r["true"], r["swapped"]]).all() and r["gap"] != 0.0 for r in rows)
  assert rows[0]["logsnr"] > rows[1]["logsnr"]
  # Swapping a word for itself must give exactly the same loss: same noise, same times.
  monkeypatch.setattr(word_swap, "swap_word", lambda caption, attribute, rng: caption)
  same = word_swap.loss_gap(model, params, tokenizer, config, videos, captions, t_values=(0.5,))
  assert same[0]["gap"] == 0.0 and same[0]["true"] > 0.0
