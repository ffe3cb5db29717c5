"""The model of a config, its dummy inputs and abstract (unallocated) parameter shapes."""
from typing import Any

import jax
import jax.numpy as jnp

from lumiere_jax.models import model as model_lib


def build(config, vocab_size: int):
  return model_lib.build_model(config.model, config.text, vocab_size)


def dummy_inputs(config, batch_size: int = 1) -> tuple:
  """Zero inputs of the shapes `config` trains on: (x, t, tokens, text_mask, cond)."""
  d = config.data
  x = jnp.zeros((batch_size, d.num_frames, d.resolution, d.resolution, 3), jnp.float32)
  t = jnp.zeros((batch_size,), jnp.float32)
  tokens = jnp.zeros((batch_size, d.max_text_len), jnp.int32)
  if config.text.kind == "precomputed":  # Embeddings of a frozen encoder stand in for tokens.
    tokens = jnp.zeros((batch_size, d.max_text_len, config.text.precomputed_dim), jnp.float32)
  mask = jnp.zeros((batch_size, d.max_text_len), bool)
  cond = None
  if config.model.cond_channels:
    cond = jnp.zeros(x.shape[:-1] + (config.model.cond_channels,), jnp.float32)
  return x, t, tokens, mask, cond


def abstract_params(model, config) -> Any:
  """Boxed (logically partitioned) parameter shapes, without allocating anything."""
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), *dummy_inputs(config))["params"])
