"""LumiereModel: text encoder + (ST)U-Net behind the interface of docs/conventions.md.

The network only: it reads the `model` and `text` sub-configs, and the text shape it is given.
Building it for a whole experiment config (vocabulary, input shapes, abstract params) is
`lumiere_jax/modeling.py`.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax.models import text_encoder as text_lib
from lumiere_jax.models import unet as unet_lib


class LumiereModel(nn.Module):
  """Predicts the diffusion target for a noisy video given time, text and optional cond."""
  unet: unet_lib.UNet
  text_encoder: nn.Module

  def encode_text(self, tokens, text_mask):
    """Separate so samplers encode the prompt once, not at every denoising step."""
    return self.text_encoder(tokens, text_mask)

  def denoise(self, x, t, text_emb, text_mask, cond=None, train: bool = False):
    return self.unet(x, t, text_emb, text_mask, cond, train)

  def __call__(self, x, t, tokens, text_mask, cond=None, train: bool = False):
    return self.denoise(x, t, self.encode_text(tokens, text_mask), text_mask, cond, train)


def build_model(model_cfg, text_cfg, vocab_size: int, *, max_text_len: int,
                text_embedding_dim: int = 0) -> LumiereModel:
  """Builds the model from `config.model` and `config.text` for the dataset's text shape
  (`config.data.max_text_len`, `config.data.text_embedding_dim`)."""
  unet = unet_lib.unet_from_config(model_cfg)
  text = text_lib.text_encoder_from_config(text_cfg, vocab_size, jnp.dtype(model_cfg.dtype),
                                           jnp.dtype(model_cfg.param_dtype),
                                           max_len=max_text_len, input_dim=text_embedding_dim)
  return LumiereModel(unet=unet, text_encoder=text)


def count_params(params) -> int:
  """Number of scalars in a (possibly boxed or abstract) param pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
