"""How well a checkpoint denoises real clips at each noise level.

Real clips are noised to fixed diffusion times (the same noise for every call with one seed),
and the model's prediction is scored against the clean clip: its loss on the training target,
and the error of its x0 estimate in grey levels on the background (away from the object) and on
the object, next to the error of the noisy input itself (x_t / alpha). Where the estimate is no
better than the input the model does not denoise: this traced the background speckle of samples
to the low-noise levels, where a v-predicting model with a narrow first level kept its input's
noise (docs/motion.md). The word-swap probe (`word_swap`) shares the noising.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax import errors
from lumiere_jax import modeling
from lumiere_jax import video_io
from lumiere_jax.diffusion import schedules
from lumiere_jax.evaluate import detector

T_VALUES = (0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97)


def predict_at_level(model, config):
  """A jitted (params, tokens, text_mask, x0, t, eps) -> (prediction, target, x_t, alpha, sigma)
  of a text-to-video checkpoint: x0 noised to the scalar time t with noise eps."""
  if modeling.model_kind(config) != "t2v":
    raise errors.UserError("the noise-level probes need a text-to-video checkpoint "
                           "(model.cond_channels=0).")
  diff_cfg = config.diffusion

  @jax.jit
  def fn(params, tokens, text_mask, x0, t, eps):
    emb = model.apply({"params": params}, tokens, text_mask, method=model.encode_text)
    tt = jnp.full((x0.shape[0],), t, jnp.float32)
    alpha, sigma = schedules.alpha_sigma_from_logsnr(schedules.logsnr(tt, diff_cfg))
    x_t = schedules.expand_to(alpha, x0) * x0 + schedules.expand_to(sigma, x0) * eps
    pred = model.apply({"params": params}, x_t, tt, emb, text_mask, method=model.denoise)
    target = schedules.target(x0, eps, alpha, sigma, diff_cfg.prediction)
    return pred, target, x_t, alpha, sigma

  return fn


def level_noise(seed, index, shape):
  """The noise of the index-th level of a probe with `seed`: the same in every probe call."""
  return jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), index), shape,
                           jnp.float32)


def denoising_errors(model, params, tokenizer, config, videos, captions, t_values=T_VALUES,
                     seed=0):
  """Per noise level: the loss and the x0 estimate's errors on real clips with their captions.

  Args:
    model, params, tokenizer, config: a text-to-video checkpoint (`sample.load_params`).
    videos: uint8 (N, T, H, W, 3) real clips; captions: their N captions.
    t_values: diffusion times (0 clean, 1 pure noise).
    seed: noise seed.

  Returns:
    One dict per t: {"t", "logsnr", "loss" (MSE on the training target), "background_error"
    (mean |estimate - background| in grey levels away from the object, as
    `detector.background_error` measures samples), "input_background_error" (the same of
    x_t / alpha), "object_error" (mean |estimate - clip| on the object's pixels)}.
  """
  videos = np.asarray(videos)
  tracks = [detector.track(v) for v in videos]
  on_object = np.stack([tr.object_mask for tr in tracks])
  if not on_object.any():
    raise errors.UserError("no object found in the clips: denoising_errors needs synthetic clips")
  tokens, mask = tokenizer.encode(captions, config.data.max_text_len)
  x0 = jnp.asarray(video_io.to_float(videos))
  fn = predict_at_level(model, config)

  def background(estimates):
    return float(np.mean([detector.background_error(e, tr) for e, tr in zip(estimates, tracks)]))

  rows = []
  for i, t in enumerate(t_values):
    eps = level_noise(seed, i, x0.shape)
    pred, target, x_t, alpha, sigma = fn(params, tokens, mask, x0, t, eps)
    estimate, _ = schedules.pred_to_x0_eps(pred, x_t, alpha, sigma, config.diffusion.prediction)
    estimate = video_io.to_uint8(jnp.clip(estimate, -1.0, 1.0))
    noisy = video_io.to_uint8(x_t / schedules.expand_to(alpha, x_t))
    error = np.abs(estimate.astype(np.float32) - videos).mean(-1)
    rows.append({"t": float(t), "logsnr": float(schedules.logsnr(t, config.diffusion)),
                 "loss": float(jnp.mean(jnp.square(pred - target))),
                 "background_error": background(estimate),
                 "input_background_error": background(noisy),
                 "object_error": float(error[on_object].mean())})
  return rows
