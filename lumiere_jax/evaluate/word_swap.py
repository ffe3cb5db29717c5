"""Does the model read a word? Its denoising loss with the caption's own word vs a swapped one.

On real clips, at fixed noise levels and with the same noise, the loss with the true caption is
compared with the loss when one attribute word (e.g. the direction) is replaced by another of
its kind. A model that uses the word has a clearly lower loss with the true word at the noise
levels where the word decides the content (for a direction: where the object is in each frame);
a gap near zero at every level means the word is ignored.
"""
import jax.numpy as jnp
import numpy as np

from lumiere_jax import video_io
from lumiere_jax.diffusion import schedules
from lumiere_jax.evaluate import alignment
from lumiere_jax.evaluate import levels


def swap_word(caption: str, attribute: str, rng: np.random.Generator) -> str:
  """`caption` with its first `attribute` word replaced by a different word of that kind."""
  vocab = alignment.VOCAB[attribute]
  word = alignment.parse_prompt(caption)[attribute]
  if word is None:
    raise ValueError(f"Caption {caption!r} names no {attribute} (one of {vocab}).")
  other = [w for w in vocab if w != word]
  new = other[rng.integers(len(other))]
  return alignment.replace_word(caption, word, new)


def loss_gap(model, params, tokenizer, config, videos, captions, attribute="direction",
             t_values=(0.2, 0.4, 0.6, 0.8, 0.95), seed=0):
  """Mean diffusion loss with the true and with a swapped `attribute` word per noise level.

  Args:
    model, params, tokenizer, config: a text-to-video checkpoint (`sample.load_params`).
    videos: uint8 (N, T, H, W, 3) real clips; captions: their N captions.
    attribute: "color", "shape" or "direction".
    t_values: diffusion times (0 clean, 1 pure noise) to measure at.
    seed: noise and word-choice seed.

  Returns:
    One dict per t: {"t", "logsnr", "true", "swapped", "gap"} where gap = swapped - true.
  """
  rng = np.random.default_rng(seed)
  swapped = [swap_word(c, attribute, rng) for c in captions]
  max_len = config.data.max_text_len
  true_tokens, true_mask = tokenizer.encode(captions, max_len)
  swap_tokens, swap_mask = tokenizer.encode(swapped, max_len)
  x0 = jnp.asarray(video_io.to_float(videos))
  predict = levels.predict_at_level(model, config)

  def loss(tokens, mask, t, eps):
    pred, target, *_ = predict(params, tokens, mask, x0, t, eps)
    return float(jnp.mean(jnp.square(pred - target)))

  rows = []
  for i, t in enumerate(t_values):
    eps = levels.level_noise(seed, i, x0.shape)
    true = loss(true_tokens, true_mask, t, eps)
    swap = loss(swap_tokens, swap_mask, t, eps)
    rows.append({"t": float(t), "logsnr": float(schedules.logsnr(t, config.diffusion)),
                 "true": true, "swapped": swap, "gap": swap - true})
  return rows
