"""A whole experiment config's model: what training, sampling and the benchmarks build from it.

`models/model.py` defines the network (Flax modules, from the `model` and `text` sub-configs
only); this module ties it to the rest of the config: the vocabulary, the clip shape and text
length of `config.data` (dummy inputs) and the abstract parameter shapes derived from them.
"""
from typing import Any

import jax
import jax.numpy as jnp

from lumiere_jax import errors
from lumiere_jax.models import model as model_lib

# The kinds of model, by their count of conditioning channels (`config.model.cond_channels`, the
# key configs and checkpoints keep): text-to-video (no cond); spatial super-resolution (cond = the
# low-resolution video upsampled); the applications' conditional model (cond = a masked video and
# its mask: image-to-video, inpainting, cinemagraphs).
KINDS = {"t2v": 0, "ssr": 3, "masked": 4}


def build(config, vocab_size: int):
  return model_lib.build_model(config.model, config.text, vocab_size,
                               max_text_len=int(config.data.max_text_len),
                               text_embedding_dim=text_embedding_dim(config))


def text_embedding_dim(config) -> int:
  """The dim of the precomputed caption features the model reads, 0 for token ids."""
  return int(config.data.text_embedding_dim) if config.text.kind == "precomputed" else 0


def model_kind(config) -> str:
  """The `KINDS` name of `config.model.cond_channels`; tests of it name the kind, not a count."""
  channels = int(config.model.cond_channels)
  for kind, count in KINDS.items():
    if count == channels:
      return kind
  raise errors.UserError(f"model.cond_channels={channels} is not a model kind: use one of "
                         + ", ".join(f"{count} ({kind})" for kind, count in KINDS.items()))


def dummy_inputs(config, batch_size: int = 1) -> tuple:
  """Zero inputs of the shapes `config` trains on: (x, t, tokens, text_mask, cond)."""
  d = config.data
  x = jnp.zeros((batch_size, d.num_frames, d.resolution, d.resolution, 3), jnp.float32)
  t = jnp.zeros((batch_size,), jnp.float32)
  tokens = jnp.zeros((batch_size, d.max_text_len), jnp.int32)
  if config.text.kind == "precomputed":  # Embeddings of a frozen encoder stand in for tokens.
    tokens = jnp.zeros((batch_size, d.max_text_len, d.text_embedding_dim), jnp.float32)
  mask = jnp.zeros((batch_size, d.max_text_len), bool)
  cond = None
  if config.model.cond_channels:
    cond = jnp.zeros(x.shape[:-1] + (config.model.cond_channels,), jnp.float32)
  return x, t, tokens, mask, cond


def abstract_params(model, config) -> Any:
  """Boxed (logically partitioned) parameter shapes, without allocating anything."""
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), *dummy_inputs(config))["params"])
