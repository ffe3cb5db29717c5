"""Tests for the caption tokenizer."""
import os
import pickle
from unittest import mock

import ml_collections
import numpy as np
import pytest

from lumiere_jax.data import render
from lumiere_jax.data import synthetic
from lumiere_jax.data import tokenizer as tokenizer_lib


def _captions(n=400):
  rng = np.random.default_rng(0)
  return [render.make_caption(render.sample_attributes(rng, "simple"), rng) for _ in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  prefix = str(tmp_path_factory.mktemp("spm") / "spm")
  return tokenizer_lib.Tokenizer.train(_captions(), prefix, vocab_size=128)


def test_encode_pads_with_zero_and_masks(tok):
  tokens, mask = tok.encode(["a red square moves left", "a cyan triangle moves to the right"],
                            max_len=12)
  assert tokens.shape == mask.shape == (2, 12)
  assert tokens.dtype == np.int32 and mask.dtype == bool
  np.testing.assert_array_equal(mask, tokens != 0)
  assert mask[0].sum() == 5  # Caption words are single pieces.
  assert mask[0, :5].all() and not mask[0, 5:].any()
  assert tok.decode(tokens[0]) == "a red square moves left"
  assert tok.decode(tokens) == ["a red square moves left", "a cyan triangle moves to the right"]


def test_case_folded_and_unseen_words_do_not_become_unk(tok):
  upper, _ = tok.encode(["A Red Square moves LEFT"], 8)
  lower, _ = tok.encode(["a red square moves left"], 8)
  np.testing.assert_array_equal(upper, lower)
  # An unseen word made of seen letters splits into pieces instead of <unk>.
  tokens, _ = tok.encode(["a red square spins left"], 16)
  assert tokenizer_lib.UNK_ID not in tokens
  assert 20 < tok.vocab_size <= 128


def test_truncation_warns_with_the_text(tok):
  text = "a red square moves left and a blue circle moves up on a black background"
  with mock.patch.object(tokenizer_lib.logging, "warning") as warning:
    tokens, mask = tok.encode([text], max_len=4)
  assert mask.all() and tokens.shape == (1, 4)
  warning.assert_called_once()
  assert text in warning.call_args.args


def test_encode_prompts_rejects_empty(tok):
  with pytest.raises(ValueError, match="Empty prompt"):
    tok.encode_prompts(["a red square moves left", "   "], 16)
  tokens, _ = tok.encode_prompts(["a red square moves left"], 16)
  assert tokens.shape == (1, 16)


def test_load_and_pickle_round_trip(tok, tmp_path):
  path = str(tmp_path / "t")
  trained = tokenizer_lib.Tokenizer.train(_captions(100), path, vocab_size=64)
  loaded = tokenizer_lib.Tokenizer.load(path + ".model")
  texts = ["a green circle slides down"]
  np.testing.assert_array_equal(trained.encode(texts, 8)[0], loaded.encode(texts, 8)[0])
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(tok)).encode(texts, 8)[0],
                                tok.encode(texts, 8)[0])
  with pytest.raises(FileNotFoundError):
    tokenizer_lib.Tokenizer.load(str(tmp_path / "missing.model"))


def test_get_or_train_saves_next_to_the_dataset_and_reuses(tmp_path, monkeypatch):
  data_cfg = ml_collections.ConfigDict(dict(
      name="synthetic_clips", variant="simple", data_dir="", num_frames=2, resolution=8, fps=8,
      num_train=60, num_validation=2, num_test=2, builder_seed=0, vocab_size=128))
  builder = synthetic.build_dataset(data_cfg, str(tmp_path))
  tok = tokenizer_lib.get_or_train_tokenizer(builder, data_cfg)
  assert os.path.exists(os.path.join(builder.data_dir, "spm_bpe_v128.model"))
  monkeypatch.setattr(tokenizer_lib.Tokenizer, "train",
                      lambda *a, **k: pytest.fail("retrained an existing tokenizer"))
  again = tokenizer_lib.get_or_train_tokenizer(builder, data_cfg)
  assert again.vocab_size == tok.vocab_size
