"""Conditioning inputs for Lumiere's applications and the SSR stage.

Application tasks feed the model cond = concat(masked video C, mask M) of shape (B, T, H, W, 4),
M = 1 on known pixels and C = video * M. Image inputs are (H, W, 3) or (B, H, W, 3); videos are
(T, H, W, 3) or (B, T, H, W, 3); outputs always carry the batch dim. The builders check masks on
the host (they need concrete values); `upsample_video` and `split_cond` are jittable.
"""
import jax
import jax.numpy as jnp
import numpy as np

UPSAMPLE_METHODS = ('nearest', 'bilinear')


def validate_mask(mask, shape):
  """Returns the mask as float32 0/1 after checking its shape and that it is binary."""
  mask = np.asarray(mask)
  if mask.shape != tuple(shape):
    raise ValueError(f'mask has shape {mask.shape}, expected {tuple(shape)}')
  if not np.isin(mask, (0, 1)).all():
    raise ValueError(f'mask must be binary (0/1), got values {np.unique(mask)[:5]}')
  return mask.astype(np.float32)


def _batched(x, ndim, name):
  """Adds a batch dim to an unbatched input with `ndim` dims."""
  x = jnp.asarray(x, jnp.float32)
  if x.ndim == ndim:
    x = x[None]
  if x.ndim != ndim + 1 or x.shape[-1] != 3:
    raise ValueError(f'{name} must have {ndim} dims (or {ndim + 1} with batch) and 3 channels, '
                     f'got shape {x.shape}')
  return x


def _check_frames(num_frames):
  if num_frames < 1:
    raise ValueError(f'num_frames must be >= 1, got {num_frames}')


def make_cond(video, mask):
  """cond = concat(video * mask, mask); mask (B, T, H, W, 1) broadcasts over channels."""
  return jnp.concatenate([video * mask, jnp.broadcast_to(mask, video.shape[:-1] + (1,))], -1)


def split_cond(cond):
  """(x_known, mask) from a (..., 4) cond, in the form the sampler's `known` argument takes."""
  return cond[..., :3], cond[..., 3:]


def image_to_video(image, num_frames):
  """Image-to-video: the first frame is known, the rest is generated."""
  _check_frames(num_frames)
  image = _batched(image, 3, 'image')
  video = jnp.zeros((image.shape[0], num_frames) + image.shape[1:], jnp.float32)
  video = video.at[:, 0].set(image)
  mask = jnp.zeros(video.shape[:-1] + (1,), jnp.float32).at[:, 0].set(1.0)
  return make_cond(video, mask)


def inpainting(video, keep_mask):
  """Inpainting: keep_mask (H, W) or (T, H, W), 1 = keep the user's pixel, 0 = generate."""
  video = _batched(video, 4, 'video')
  keep_mask = np.asarray(keep_mask)
  t, h, w = video.shape[1:4]
  shape = (h, w) if keep_mask.ndim == 2 else (t, h, w)
  mask = jnp.asarray(validate_mask(keep_mask, shape))
  mask = jnp.broadcast_to(mask, video.shape[:-1])[..., None]
  return make_cond(video, mask)


def cinemagraph(image, animate_mask, num_frames):
  """Cinemagraph: the image repeated over time; only pixels in animate_mask (H, W) may move."""
  _check_frames(num_frames)
  image = _batched(image, 3, 'image')
  animate = validate_mask(animate_mask, image.shape[1:3])
  video = jnp.broadcast_to(image[:, None], (image.shape[0], num_frames) + image.shape[1:])
  mask = jnp.broadcast_to(jnp.asarray(1.0 - animate), video.shape[:-1])[..., None]
  return make_cond(video, mask)


def upsample_video(video, factor, method='nearest'):
  """Spatially upsamples (B, T, H, W, C) by an integer factor: the SSR stage's conditioning."""
  factor = int(factor)
  if factor < 1:
    raise ValueError(f'upsample factor must be an integer >= 1, got {factor}')
  if video.ndim != 5:
    raise ValueError(f'video must be (B, T, H, W, C), got shape {video.shape}')
  if method == 'nearest':
    return jnp.repeat(jnp.repeat(video, factor, axis=2), factor, axis=3)
  if method == 'bilinear':
    b, t, h, w, c = video.shape
    return jax.image.resize(video, (b, t, h * factor, w * factor, c), 'bilinear')
  raise ValueError(f'upsample method must be one of {UPSAMPLE_METHODS}, got {method!r}')


def downsample_video(video, factor):
  """Box-filter (area) downsampling of (B, T, H, W, C) by an integer factor."""
  factor = int(factor)
  b, t, h, w, c = video.shape
  if factor < 1 or h % factor or w % factor:
    raise ValueError(f'cannot downsample {h}x{w} frames by factor {factor}')
  return video.reshape(b, t, h // factor, factor, w // factor, factor, c).mean(axis=(3, 5))


def ssr_condition(video, factor, method='bilinear'):
  """SSR training cond: the clip at low resolution, upsampled back to the clip's resolution.

  This is what the SSR stage sees at sampling time (the base model's output, upsampled), so the
  model learns to add the detail the downsampling removed.
  """
  return upsample_video(downsample_video(video, factor), factor, method)
