"""DDIM, DDPM ancestral and DPM-Solver++(2M) sampling with classifier-free guidance, as one
`lax.scan`.

The whole sampler is a pure function of its array inputs, so callers can `jax.jit` it (closing
over denoise_fn and the configs) and it compiles once per shape.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lumiere_jax import errors
from lumiere_jax.diffusion import schedules

SAMPLERS = ('ddim', 'ddpm', 'dpmpp_2m')


def guided_denoise(denoise_fn, guidance):
  """Wraps denoise_fn with classifier-free guidance: uncond + guidance * (cond - uncond).

  The conditional and unconditional (zero embedding, all-False mask) inputs run as one doubled
  batch. guidance == 1 is exactly the conditional prediction, so it skips the doubling.
  """
  guidance = float(guidance)
  if guidance == 1.0:
    return denoise_fn

  def fn(x_t, t, text_emb, text_mask, cond):
    both = lambda a: None if a is None else jnp.concatenate([a, a])
    emb = jnp.concatenate([text_emb, jnp.zeros_like(text_emb)])
    mask = jnp.concatenate([text_mask, jnp.zeros_like(text_mask)])
    pred = denoise_fn(both(x_t), both(t), emb, mask, both(cond))
    pred_cond, pred_uncond = jnp.split(pred, 2)
    return pred_uncond + guidance * (pred_cond - pred_uncond)

  return fn


SPACINGS = ('uniform', 'logsnr')


def time_grid(t_start, num_steps, spacing, diff_cfg):
  """The num_steps + 1 times from t_start down to 0 that the sampler visits.

  'uniform' is equal steps in t; 'logsnr' equal steps in log-SNR, which spends more steps at
  the noisiest levels, where the caption decides the layout and the motion of the clip.
  """
  if spacing == 'uniform':
    return jnp.linspace(t_start, 0.0, num_steps + 1, dtype=jnp.float32)
  if spacing == 'logsnr':
    # Invert the (monotone) schedule numerically on a fine grid.
    grid = np.linspace(0.0, 1.0, 4097)
    with jax.ensure_compile_time_eval():  # Constants of the traced sampler, not traced values.
      lsnr = np.asarray(schedules.logsnr(grid, diff_cfg), np.float64)
    targets = np.linspace(np.interp(t_start, grid, lsnr), lsnr[0], num_steps + 1)
    ts = np.interp(targets, lsnr[::-1], grid[::-1])
    ts[0], ts[-1] = t_start, 0.0
    return jnp.asarray(ts, jnp.float32)
  raise errors.UserError(f'sample.spacing must be one of {SPACINGS}, got {spacing!r}')


def _noise_to(x0, noise, t, diff_cfg):
  """Samples q(x_t | x0) at a scalar time t."""
  alpha, sigma = schedules.alpha_sigma(t, diff_cfg)
  return alpha * x0 + sigma * noise


def _split(keys, num):
  """Per-example keys (B, 2) -> (num, B, 2): each example's key split on its own."""
  return jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, num))(keys), 0, 1)


def sample(denoise_fn, rng, shape, text_emb, text_mask, diff_cfg, sample_cfg, cond=None,
           x_init=None, t_start=1.0, known=None):
  """Generates videos by integrating from t_start down to 0 in sample_cfg.num_steps steps.

  Args:
    denoise_fn: (x_t, t, text_emb, text_mask, cond) -> prediction of type diff_cfg.prediction.
    rng: a PRNG key, or one key per example `(B, 2)`: then example i's draws depend on its
      key alone, not on the batch around it (the Sampler's per-prompt keys). The same keys
      give the same output.
    shape: static output shape (B, T, H, W, C).
    text_emb: (B, L, D) caption embeddings; text_mask: bool (B, L).
    diff_cfg: config.diffusion (schedule, prediction).
    sample_cfg: config.sample (sampler, num_steps, guidance, eta, clip_x0); guidance and the
      rest must be Python values (they select the traced program). `eta` is DDIM's (DDPM is
      eta 1); 'dpmpp_2m' is deterministic.
    cond: optional conditioning passed to denoise_fn at every step.
    x_init: optional (B, T, H, W, C) video for SDEdit; noised to t_start with rng.
    t_start: Python float in [0, 1]; < 1 requires x_init; 0 returns x_init unchanged.
    known: optional (x_known, mask) with mask broadcastable to shape, 1 = known pixel. Known
      pixels are replaced by the correctly noised x_known at every step and by x_known at the end.

  Returns:
    The final x0 estimate, (B, T, H, W, C).
  """
  shape = tuple(shape)
  num_steps = int(sample_cfg.num_steps)
  t_start = float(t_start)
  if sample_cfg.sampler not in SAMPLERS:
    raise errors.UserError(f'sample.sampler must be one of {SAMPLERS}, got {sample_cfg.sampler!r}')
  if num_steps < 1:
    raise errors.UserError(f'sample.num_steps must be >= 1, got {num_steps}')
  if not 0.0 <= t_start <= 1.0:
    raise ValueError(f't_start must be in [0, 1], got {t_start}')
  if t_start < 1.0 and x_init is None:
    raise ValueError(f't_start={t_start} < 1 (SDEdit) needs x_init')
  if x_init is not None and tuple(x_init.shape) != shape:
    raise ValueError(f'x_init has shape {tuple(x_init.shape)}, expected {shape}')
  eta = 1.0 if sample_cfg.sampler == 'ddpm' else float(sample_cfg.eta)
  prediction = diff_cfg.prediction

  def paste_known(x, noised_known):
    return x if known is None else jnp.where(known[1] > 0.5, noised_known, x)

  if t_start == 0.0:
    return paste_known(x_init, None if known is None else known[0])

  keys = jax.random.split(rng, shape[0]) if jnp.ndim(rng) == 1 else rng
  if keys.shape[0] != shape[0]:
    raise ValueError(f'{keys.shape[0]} per-example keys for a batch of {shape[0]}')
  init_keys, known_keys, step_keys = _split(keys, 3)
  noise = schedules.example_noise(init_keys, shape)
  x = noise if x_init is None else _noise_to(x_init, noise, t_start, diff_cfg)
  if known is not None:
    x = paste_known(x, _noise_to(known[0], schedules.example_noise(known_keys, shape), t_start,
                                 diff_cfg))
  fn = guided_denoise(denoise_fn, sample_cfg.guidance)
  ts = time_grid(t_start, num_steps, sample_cfg.get('spacing', 'uniform'), diff_cfg)

  multistep = sample_cfg.sampler == 'dpmpp_2m'

  def step(carry, inputs):
    x, x0_prev, h_prev = carry
    t, s, key, first = inputs
    noise_key, known_key = _split(key, 2)
    lsnr_t, lsnr_s = schedules.logsnr(t, diff_cfg), schedules.logsnr(s, diff_cfg)
    alpha_t, sigma_t = schedules.alpha_sigma_from_logsnr(lsnr_t)
    alpha_s, sigma_s = schedules.alpha_sigma_from_logsnr(lsnr_s)
    pred = fn(x, jnp.full((shape[0],), t), text_emb, text_mask, cond).astype(jnp.float32)
    x0, eps = schedules.pred_to_x0_eps(pred, x, alpha_t, sigma_t, prediction)
    if sample_cfg.clip_x0:
      x0 = jnp.clip(x0, -1.0, 1.0)
      eps = (x - alpha_t * x0) / sigma_t
    h = 0.5 * (lsnr_s - lsnr_t)  # Step in log(alpha / sigma).
    if multistep:
      # DPM-Solver++(2M) (Lu et al. 2022): the data-prediction ODE step with x0 extrapolated
      # linearly in log(alpha / sigma) from the previous step's x0; the first step is DDIM's.
      # The last step's output is its x0 (first order, as the solver's lower_order_final).
      slope = jnp.where(first, 0.0, 0.5 * h / h_prev)
      x0_hat = x0 + slope * (x0 - x0_prev)
      x_s = sigma_s / sigma_t * x - alpha_s * jnp.expm1(-h) * x0_hat
    else:
      # Generalised DDIM; eta = 1 is the DDPM ancestral step (the posterior q(x_s | x_t, x0)),
      # whose variance is sigma_s^2 * (1 - SNR(t) / SNR(s)).
      var = eta**2 * sigma_s**2 * -jnp.expm1(lsnr_t - lsnr_s)
      x_s = alpha_s * x0 + jnp.sqrt(jnp.maximum(sigma_s**2 - var, 0.0)) * eps
      if eta > 0.0:
        x_s = x_s + jnp.sqrt(var) * schedules.example_noise(noise_key, shape)
    if known is not None:
      x_s = paste_known(x_s, _noise_to(known[0], schedules.example_noise(known_key, shape), s,
                                       diff_cfg))
    return (x_s, x0, h), None

  first = jnp.arange(num_steps) == 0
  init = (x, jnp.zeros(shape, jnp.float32), jnp.ones((), jnp.float32))
  (_, x0, _), _ = jax.lax.scan(step, init, (ts[:-1], ts[1:], _split(step_keys, num_steps), first))
  return paste_known(x0, None if known is None else known[0])
