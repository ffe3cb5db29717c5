"""SentencePiece tokenizer trained in-process on the training captions.

A tiny vocabulary fitted to the caption language keeps the text encoder small; the model file
lives next to the dataset so every run on that dataset tokenizes identically.
"""
import io
import os

from absl import logging
import numpy as np
import sentencepiece as spm

from lumiere_jax import errors

PAD_ID = 0
UNK_ID = 1


class Tokenizer:
  """Text <-> int32 token ids with pad id 0 (no BOS/EOS: the encoder sees the whole prompt)."""

  def __init__(self, model_proto):
    self._proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

  @classmethod
  def load(cls, path):
    if not os.path.exists(path):
      raise FileNotFoundError(f"No tokenizer model at {path!r}.")
    with open(path, "rb") as f:
      return cls(f.read())

  @classmethod
  def train(cls, captions, path_prefix, vocab_size):
    """Fits a model on `captions`, writes `path_prefix + ".model"` atomically, returns it."""
    captions = [c for c in captions if c.strip()]
    if not captions:
      raise ValueError("Cannot train a tokenizer on no captions.")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions), model_writer=model, vocab_size=vocab_size,
        # BPE: caption words become single pieces (unigram kept splitting them into characters
        # on this tiny corpus), unseen words still split into letters instead of <unk>. A small
        # corpus may hold fewer pieces than asked for: take what exists.
        hard_vocab_limit=False, model_type="bpe", character_coverage=1.0,
        # Case-folding so user prompts like "A Red square" match the lower-case captions.
        normalization_rule_name="nmt_nfkc_cf",
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1, eos_id=-1,
        num_threads=1, minloglevel=2)
    path = path_prefix + ".model"
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      f.write(model.getvalue())
    os.replace(tmp, path)
    return cls(model.getvalue())

  def save(self, path):
    """Writes the model file, e.g. into a workdir so sampling does not need the dataset."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      f.write(self._proto)
    os.replace(tmp, path)

  @property
  def vocab_size(self):
    return self._sp.get_piece_size()

  def __getstate__(self):
    # SentencePieceProcessor is not picklable; grain workers rebuild it from the proto.
    return {"model_proto": self._proto}

  def __setstate__(self, state):
    self.__init__(state["model_proto"])

  def encode(self, texts, max_len):
    """Tokenizes and pads/truncates to `max_len`.

    Returns:
      tokens int32 (N, max_len) with pad 0, mask bool (N, max_len), True on real tokens.
    """
    if max_len < 1:
      raise ValueError(f"max_len must be positive, got {max_len}.")
    tokens = np.full((len(texts), max_len), PAD_ID, np.int32)
    for i, ids in enumerate(self._sp.encode(list(texts))):
      if len(ids) > max_len:
        logging.warning("Text truncated from %d to %d tokens: %r", len(ids), max_len, texts[i])
        ids = ids[:max_len]
      tokens[i, :len(ids)] = ids
    return tokens, tokens != PAD_ID

  def encode_prompts(self, prompts, max_len):
    """Like `encode`, for user prompts: rejects empty ones instead of encoding all-pad."""
    for prompt in prompts:
      if not prompt.strip():
        raise errors.UserError(f"Empty prompt {prompt!r}; give some text (use the guidance scale, "
                               "not an empty prompt, for unconditional samples).")
    return self.encode(prompts, max_len)

  def decode(self, tokens):
    """Token ids (N, L) or (L,) -> text(s), ignoring padding."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
      return self._sp.decode([int(t) for t in tokens if t != PAD_ID])
    return [self.decode(row) for row in tokens]


def get_or_train_tokenizer(builder, data_cfg):
  """The tokenizer of `builder`'s training captions, trained once and saved in its data_dir."""
  prefix = os.path.join(builder.data_dir, f"spm_bpe_v{data_cfg.vocab_size}")
  if os.path.exists(prefix + ".model"):
    return Tokenizer.load(prefix + ".model")
  source = builder.as_data_source("train")
  captions = [_as_str(source[i]["caption"]) for i in range(len(source))]
  logging.info("Training a %d-piece tokenizer on %d captions.", data_cfg.vocab_size,
               len(captions))
  return Tokenizer.train(captions, prefix, data_cfg.vocab_size)


def _as_str(text):
  return text.decode("utf-8") if isinstance(text, bytes) else text
