"""A frozen caption encoder whose features are stored in the dataset (`text.kind='precomputed'`).

Paper-scale runs condition on frozen T5-XXL features computed once, stored with the clips and
read by the input pipeline instead of running a text encoder in the train step. No T5 weights
can be downloaded here, so `HashedWordEncoder` stands in for the frozen encoder: every word maps
to a fixed pseudo-random vector (seeded by the word's CRC32), plus a sinusoidal position code.
It has no trained state, so the dataset builder (captions -> stored features) and the sampler
(prompts -> features) compute identical features from the same settings. A dataset with real
T5 features only needs the same two features: `text_embedding` (L, D) and `text_mask` (L,).
"""
import re
import zlib

import numpy as np

from lumiere_jax import errors

# Part of the encoder's definition, like a frozen network's weights: changing it changes every
# stored feature, so it is not a setting.
_SEED = 20240123
_WORD = re.compile(r"[a-z0-9]+")


class HashedWordEncoder:
  """Text -> (float32 (N, max_len, dim) features, bool (N, max_len) mask), no parameters.

  Has the `Tokenizer` interface the sampler and pipeline use (`encode`, `encode_prompts`), so a
  precomputed-text checkpoint samples from prompts like a token-based one.
  """

  def __init__(self, dim: int):
    if dim < 2:
      raise ValueError(f"text embedding dim must be >= 2, got {dim}")
    self.dim = dim
    self._cache = {}

  def word_vector(self, word: str) -> np.ndarray:
    if word not in self._cache:
      rng = np.random.default_rng([_SEED, zlib.crc32(word.encode("utf-8"))])
      self._cache[word] = rng.standard_normal(self.dim).astype(np.float32)
    return self._cache[word]

  def position_code(self, length: int) -> np.ndarray:
    half = self.dim // 2
    freq = np.exp(-np.log(1e4) * np.arange(half) / max(half, 1))
    angle = np.arange(length)[:, None] * freq[None]
    code = np.zeros((length, self.dim), np.float32)
    code[:, :half], code[:, half:2 * half] = np.sin(angle), np.cos(angle)
    return code

  def encode(self, texts, max_len: int):
    if max_len < 1:
      raise ValueError(f"max_len must be positive, got {max_len}.")
    feats = np.zeros((len(texts), max_len, self.dim), np.float32)
    mask = np.zeros((len(texts), max_len), bool)
    pos = self.position_code(max_len)
    for i, text in enumerate(texts):
      words = _WORD.findall(text.lower())[:max_len]
      for j, word in enumerate(words):
        feats[i, j] = self.word_vector(word) + pos[j]
      mask[i, :len(words)] = True
    return feats, mask

  def encode_prompts(self, prompts, max_len: int):
    """Like `encode`; rejects prompts without a word (they would be all padding)."""
    for prompt in prompts:
      if not _WORD.findall(prompt.lower()):
        raise errors.UserError(f"Prompt {prompt!r} has no words; give some text (use the guidance "
                               "scale, not an empty prompt, for unconditional samples).")
    return self.encode(prompts, max_len)

  @property
  def vocab_size(self) -> int:
    return 0  # No token vocabulary: the model's text input is these features.


def encoder_for(config):
  """The frozen encoder of a `text.kind='precomputed'` config (checked against the dataset)."""
  if config.text.kind != "precomputed":
    raise errors.UserError(f"text.kind is {config.text.kind!r}, not 'precomputed'")
  dim = int(config.data.get("text_embedding_dim", 0))
  if dim <= 0:
    raise errors.UserError(
        f"text.kind='precomputed' reads the caption features stored with the clips; set "
        f"data.text_embedding_dim > 0 (their dim), got {dim}")
  return HashedWordEncoder(dim)
