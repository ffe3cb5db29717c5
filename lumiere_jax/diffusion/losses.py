"""Diffusion training loss with classifier-free-guidance caption dropout."""
import jax
import jax.numpy as jnp

from lumiere_jax import errors
from lumiere_jax.diffusion import schedules

T_SAMPLINGS = ('uniform', 'logit_normal')
LOSS_WEIGHTINGS = ('none', 'min_snr', 'v_capped')


def cfg_drop(text_emb, text_mask, rng, p):
  """Replaces each example's caption by the unconditional input with probability p.

  The unconditional input is an all-False mask and a zero embedding (the same input the
  sampler uses for the unconditional branch of classifier-free guidance).

  Returns:
    (text_emb, text_mask) with dropped rows zeroed / all False.
  """
  p = float(p)
  if not 0.0 <= p <= 1.0:
    raise errors.UserError(f'cfg dropout probability must be in [0, 1], got {p}')
  drop = jax.random.bernoulli(rng, p, (text_mask.shape[0],))
  text_mask = jnp.logical_and(text_mask, ~drop[:, None])
  text_emb = jnp.where(schedules.expand_to(drop, text_emb), 0.0, text_emb).astype(text_emb.dtype)
  return text_emb, text_mask


def sample_t(rng, batch, diff_cfg):
  """Per-example diffusion times; logit-normal concentrates training on mid noise levels.

  With `t_tail_frac` > 0, that fraction of the examples is drawn uniformly from
  [t_tail_start, 1] instead: the near-pure-noise levels where only the caption can say where
  the object is and which way it moves (at lower noise the noisy clip already shows it), which
  plain uniform sampling visits a few percent of the time.
  """
  k_t, k_tail, k_pick = jax.random.split(rng, 3)
  if diff_cfg.t_sampling == 'uniform':
    t = jax.random.uniform(k_t, (batch,), jnp.float32)
  elif diff_cfg.t_sampling == 'logit_normal':
    z = jax.random.normal(k_t, (batch,), jnp.float32)
    t = jax.nn.sigmoid(diff_cfg.t_logit_mean + diff_cfg.t_logit_std * z)
  else:
    raise errors.UserError(f'diffusion.t_sampling must be one of {T_SAMPLINGS}, '
                           f'got {diff_cfg.t_sampling!r}')
  frac, start = float(diff_cfg.get('t_tail_frac', 0.0)), float(diff_cfg.get('t_tail_start', 1.0))
  if not (0.0 <= frac <= 1.0 and 0.0 <= start <= 1.0):
    raise errors.UserError(f'diffusion.t_tail_frac and t_tail_start must be in [0, 1], got {frac} '
                           f'and {start}')
  if frac == 0.0:
    return t
  tail = jax.random.uniform(k_tail, (batch,), jnp.float32, minval=start, maxval=1.0)
  return jnp.where(jax.random.bernoulli(k_pick, frac, (batch,)), tail, t)


def loss_weight(lsnr, diff_cfg):
  """Per-example weight of the squared error of the chosen target.

  Each weighting is a weight w on the x0 error, ||x0 error||^2 = ||target error||^2 / c with
  c = {v: SNR + 1, eps: SNR, x0: 1}, so the weight of the target's error is w / c:
    'min_snr' (Hang et al. 2023): w = min(SNR, gamma), which caps the low-noise steps;
    'v_capped': w = 1 + min(SNR, gamma), the v-loss (w = 1 + SNR) with its low-noise weight
      capped at 1 + gamma. With an x0-predicting network this is the v-loss of "let denoising
      models denoise" (Li & He 2025) made finite at t -> 0, and the noisiest levels keep weight 1
      (min_snr gives them ~0).
  """
  if diff_cfg.loss_weighting == 'none':
    return jnp.ones_like(lsnr)
  snr = jnp.exp(lsnr)
  capped = jnp.minimum(snr, diff_cfg.get('min_snr_gamma', 5.0))
  per_x0_error = {'v': snr + 1.0, 'eps': snr, 'x0': 1.0}[diff_cfg.prediction]
  if diff_cfg.loss_weighting == 'min_snr':
    return capped / per_x0_error
  if diff_cfg.loss_weighting == 'v_capped':
    return (1.0 + capped) / per_x0_error
  raise errors.UserError(f'diffusion.loss_weighting must be one of {LOSS_WEIGHTINGS}, '
                         f'got {diff_cfg.loss_weighting!r}')


def diffusion_loss(denoise_fn, x0, text_emb, text_mask, cond, rng, diff_cfg, loss_mask=None):
  """Mean squared error of denoise_fn on the configured target at random noise levels.

  Args:
    denoise_fn: (x_t, t, text_emb, text_mask, cond) -> prediction, same shape as x_t.
    x0: clean videos (B, T, H, W, C) in [-1, 1].
    text_emb: caption embeddings (B, L, D) from the model's text encoder.
    text_mask: bool (B, L), True for real tokens.
    cond: conditioning passed through to denoise_fn (or None).
    rng: PRNG key.
    diff_cfg: config.diffusion.
    loss_mask: optional (B, T, H, W, 1) weights, e.g. 0 on known pixels of conditional tasks.

  Returns:
    (loss, aux) with aux = {'mse': unweighted masked MSE, 'cfg_drop_frac': fraction of
    examples trained without a caption}.
  """
  t_rng, eps_rng, drop_rng = jax.random.split(rng, 3)
  batch = x0.shape[0]
  t = sample_t(t_rng, batch, diff_cfg)
  lsnr = schedules.logsnr(t, diff_cfg)
  alpha, sigma = schedules.alpha_sigma_from_logsnr(lsnr)
  eps = schedules.noise(eps_rng, x0.shape, x0.dtype)
  x_t = schedules.expand_to(alpha, x0) * x0 + schedules.expand_to(sigma, x0) * eps
  text_emb, text_mask = cfg_drop(text_emb, text_mask, drop_rng, diff_cfg.cfg_dropout)

  pred = denoise_fn(x_t, t, text_emb, text_mask, cond)
  if pred.shape != x0.shape:
    raise ValueError(f'denoise_fn returned shape {pred.shape}, expected {x0.shape}')
  tgt = schedules.target(x0, eps, alpha, sigma, diff_cfg.prediction)
  sq = jnp.square(pred.astype(jnp.float32) - tgt.astype(jnp.float32))
  mask = jnp.ones_like(sq) if loss_mask is None else jnp.broadcast_to(loss_mask, sq.shape)
  denom = jnp.maximum(jnp.sum(mask), 1.0)
  weight = schedules.expand_to(loss_weight(lsnr, diff_cfg), sq)
  loss = jnp.sum(weight * mask * sq) / denom
  aux = {
      'mse': jnp.sum(mask * sq) / denom,
      'cfg_drop_frac': jnp.mean(~jnp.any(text_mask, axis=-1)),
  }
  return loss, aux
