"""Lumiere's applications on a `sample.Sampler`, and `--mode=sample` (`run`, called by main.py).

  sampler = sample.load_sampler("workdirs/cond")   # a checkpoint of experiments/tiny.py:cond
  videos = image_to_video(sampler, video_io.read_image("photo.png", 32), ["a red square ..."])

Image-to-video, inpainting and cinemagraphs need the conditional model (7-channel input); their
known pixels are both given to the model (cond) and pasted in at every step (replacement), so the
output reproduces them exactly. Video-to-video (SDEdit) and stylization work with any model.

Masks (image or video files): white = pixels the model generates (the hole to inpaint, the part
of a cinemagraph that moves), black = pixels kept from the input. A mask must be black and white
(gray levels 64..191 are an error; compression noise outside that band is tolerated) and either
the model's resolution or an exact integer upscale of it (every k x k block one color), so it is
never resampled into something the user did not draw. It applies to the input after its center
crop and resize to the model resolution.
"""
import os
import time
from typing import Sequence

import av
import numpy as np
from absl import logging
from PIL import Image

from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import errors
from lumiere_jax import modeling
from lumiere_jax import sample
from lumiere_jax import video_io
from lumiere_jax import workdir as workdir_lib
from lumiere_jax.diffusion import conditioning
from lumiere_jax.models import inflate

COND_APPLICATIONS = ("image_to_video", "inpainting", "cinemagraph")
DEFAULT_STRENGTH = 0.6
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


def _to_float(x: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]; float input is taken as already in [-1, 1]."""
  x = np.asarray(x)
  return video_io.to_float(x) if x.dtype == np.uint8 else x.astype(np.float32)


def check_cond_model(config, application: str) -> None:
  """A one-line error unless `config`'s model is the conditional ("masked") one."""
  if modeling.model_kind(config) != "masked":
    raise errors.UserError(f"{application} needs the conditional model (7-channel input, "
                           f"model.cond_channels=4) but this checkpoint has cond_channels="
                           f"{config.model.cond_channels}: fine-tune one with "
                           "experiments/tiny.py:cond --config.init_from=<t2v workdir>")


def _check_shape(name: str, x: np.ndarray, shape: tuple[int, ...]) -> None:
  if np.shape(x) != shape:
    raise ValueError(f"{name} has shape {np.shape(x)}, the model needs {shape}")


def _conditional(sampler, cond, prompts, seed, **overrides) -> np.ndarray:
  """Samples with cond given to the model and its known pixels replaced at every step."""
  cond = np.repeat(np.asarray(cond), len(prompts), axis=0)
  return sampler(prompts, seed, cond=cond, known=conditioning.split_cond(cond), **overrides)


def image_to_video(sampler: sample.Sampler, image: np.ndarray, prompts: Sequence[str],
                   seed: int = 0, **overrides) -> np.ndarray:
  """Animates `image` (H, W, 3): the first frame of every video is exactly the image."""
  check_cond_model(sampler.config, "image-to-video")
  _check_shape("image", image, sampler.video_shape[1:])
  cond = conditioning.image_to_video(_to_float(image), sampler.video_shape[0])
  return _conditional(sampler, cond, prompts, seed, **overrides)


def inpaint(sampler: sample.Sampler, video: np.ndarray, mask: np.ndarray,
            prompts: Sequence[str], seed: int = 0, **overrides) -> np.ndarray:
  """Fills the pixels where `mask` (H, W) or (T, H, W) is 1; the others stay exactly as given."""
  check_cond_model(sampler.config, "inpainting")
  _check_shape("video", video, sampler.video_shape)
  cond = conditioning.inpainting(_to_float(video), 1.0 - np.asarray(mask, np.float32))
  return _conditional(sampler, cond, prompts, seed, **overrides)


def cinemagraph(sampler: sample.Sampler, image: np.ndarray, mask: np.ndarray,
                prompts: Sequence[str], seed: int = 0, **overrides) -> np.ndarray:
  """Animates only where `mask` (H, W) is 1; every other pixel is the image's in all frames."""
  check_cond_model(sampler.config, "cinemagraph")
  _check_shape("image", image, sampler.video_shape[1:])
  cond = conditioning.cinemagraph(_to_float(image), mask, sampler.video_shape[0])
  return _conditional(sampler, cond, prompts, seed, **overrides)


def video_to_video(sampler: sample.Sampler, video: np.ndarray, prompts: Sequence[str],
                   strength: float = DEFAULT_STRENGTH, seed: int = 0, **overrides) -> np.ndarray:
  """SDEdit: noises `video` (T, H, W, 3) to `strength` and denoises it with the prompts."""
  _check_shape("video", video, sampler.video_shape)
  x_init = np.repeat(_to_float(video)[None], len(prompts), axis=0)
  return sampler(prompts, seed, x_init=x_init, strength=strength, **overrides)


def stylize(sampler: sample.Sampler, style_workdir: str, alpha: float,
            step: int | None = None) -> sample.Sampler:
  """A sampler whose spatial weights are (1 - alpha) * own + alpha * those of a (T2I) run.

  Temporal weights (and the cond input conv) stay the sampler's; alpha = 0 is the model itself.
  """
  if not 0.0 <= alpha <= 1.0:
    raise errors.UserError(f"style_alpha must be in [0, 1], got {alpha}")
  style_cfg = ckpt_lib.load_config(style_workdir)
  _, style, _, style_step = sample.load_params(style_workdir, style_cfg, step)
  # The style tree completed with the sampler's temporal / cond_in leaves (checks shapes too).
  style = inflate.inflate(style, sampler.params)
  styled = sampler.replace(inflate.interpolate_spatial(sampler.params, style, alpha),
                           sampler.step)
  logging.info("Style: %s step %d at alpha %g", style_workdir, style_step, alpha)
  return styled


def read_mask(path: str, size: int, num_frames: int | None = None) -> np.ndarray:
  """A mask file as float32 0/1, 1 = white: (H, W) for an image, (T, H, W) for a video."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"mask not found: {path}")
  is_video = path.lower().endswith(VIDEO_SUFFIXES)
  try:
    if is_video:
      with av.open(path) as container:
        gray = [f.to_ndarray(format="gray") for _, f in zip(range(num_frames or 1),
                                                            container.decode(video=0))]
    else:
      with Image.open(path) as img:
        gray = [np.asarray(img.convert("L"))]
  except (OSError, ValueError, av.error.FFmpegError) as e:
    raise errors.UserError(f"cannot decode mask {path}: {e}") from e
  if is_video and len(gray) < (num_frames or 1):
    raise errors.UserError(f"mask video {path} has {len(gray)} frames, the model needs "
                           f"{num_frames}")
  gray = np.stack(gray)
  gray_frac = float(((gray >= 64) & (gray < 192)).mean())
  if gray_frac:
    raise errors.UserError(f"mask {path} is not binary: {gray_frac:.1%} of its pixels are gray "
                           "(64..191); use black (keep) and white (generate) only")
  mask = gray >= 128
  h, w = mask.shape[1:]
  if (h, w) != (size, size):
    if h != w or h % size:
      raise errors.UserError(f"mask {path} is {w}x{h}, expected {size}x{size} (the model "
                             "resolution) or an integer multiple of it")
    k = h // size
    blocks = mask.reshape(mask.shape[0], size, k, size, k)
    if not (blocks == blocks[:, :, :1, :, :1]).all():
      raise errors.UserError(f"mask {path} is {w}x{h} but not an exact {k}x upscale of a "
                             f"{size}x{size} mask (each {k}x{k} block must be one color)")
    mask = blocks[:, :, 0, :, 0]
  mask = mask.astype(np.float32)
  return mask if is_video else mask[0]


def application_of(image: str | None, video: str | None, mask: str | None,
                   strength: float | None) -> str:
  """The application the given inputs select (one clear error for a meaningless combination)."""
  if image and video:
    raise errors.UserError("give --image or --video, not both")
  if mask and not (image or video):
    raise errors.UserError("--mask needs --image (cinemagraph) or --video (inpainting)")
  app = ("cinemagraph" if image and mask else "image_to_video" if image else
         "inpainting" if video and mask else "video_to_video" if video else "text_to_video")
  if strength is not None:
    if app != "video_to_video":
      raise errors.UserError(f"--strength is for video-to-video (--video without --mask), not "
                             f"{app}")
    if not 0.0 <= strength <= 1.0:
      raise errors.UserError(f"--strength must be in [0, 1], got {strength}")
  return app


def run(config, workdir: str, *, prompts: Sequence[str] | None = None, image: str | None = None,
        video: str | None = None, mask: str | None = None, strength: float | None = None,
        style_from: str | None = None, style_alpha: float = 0.7, ssr_workdir: str | None = None,
        step: int | None = None, seed: int | None = None, out_dir: str | None = None,
        num_frames: int | None = None) -> list[str]:
  """`--mode=sample`: text-to-video or an application, optionally stylized and/or lifted by SSR.

  Returns the directories written: the base videos, then (with an SSR run) the high-resolution
  ones in `<out_dir>/ssr_<resolution>px`. The default out_dir is `workdir/samples/<step>`, plus
  a subdirectory named after the application, the style and a `num_frames` other than the
  training length (`<N>frames`), unless it is plain text-to-video.
  """
  prompts = list(prompts) if prompts else list(config.sample.prompts)
  sample.check_prompts(prompts)  # Every input check before the (slow) checkpoint restore.
  app = application_of(image, video, mask, strength)
  if num_frames is not None:
    if app != "text_to_video":
      raise errors.UserError(f"--num_frames is for text-to-video; {app} takes the input's length")
    if modeling.model_kind(config) == "ssr":
      raise errors.UserError(f"{workdir} is an SSR run: give a base model as --workdir and this "
                             "one as --ssr_workdir")
    sample.check_num_frames(config, num_frames)
  if style_from and not 0.0 <= style_alpha <= 1.0:
    raise errors.UserError(f"--style_alpha must be in [0, 1], got {style_alpha}")
  if app in COND_APPLICATIONS:
    check_cond_model(config, app.replace("_", "-"))
  frames, res = config.data.num_frames, config.data.resolution
  if image:
    image_px = video_io.read_image(image, res)
  if video:
    video_px = video_io.read_video(video, frames, res)
  if mask:
    mask_px = read_mask(mask, res, frames if video else None)
    if mask_px.ndim == 3 and app == "cinemagraph":
      raise errors.UserError(f"a cinemagraph mask is one image, got the video {mask}")

  sampler = sample.load_sampler(workdir, step=step, use_ema=config.sample.use_ema, config=config)
  if sampler.kind == "ssr":
    raise errors.UserError(f"{workdir} is an SSR run: give a base model as --workdir and this one "
                           "as --ssr_workdir")
  if style_from:
    sampler = stylize(sampler, style_from, style_alpha)
  seed = config.sample.seed if seed is None else seed
  t0 = time.monotonic()
  if app == "image_to_video":
    videos = image_to_video(sampler, image_px, prompts, seed)
  elif app == "inpainting":
    videos = inpaint(sampler, video_px, mask_px, prompts, seed)
  elif app == "cinemagraph":
    videos = cinemagraph(sampler, image_px, mask_px, prompts, seed)
  elif app == "video_to_video":
    strength = DEFAULT_STRENGTH if strength is None else strength
    videos = video_to_video(sampler, video_px, prompts, strength, seed)
  else:
    videos = sampler(prompts, seed=seed, num_frames=num_frames, progress=True)
  logging.info("%s: %d videos in %.1fs", app, len(prompts), time.monotonic() - t0)
  names = [app] if app != "text_to_video" else []
  names += [f"style_alpha{style_alpha:g}"] if style_from else []
  names += [f"{num_frames}frames"] if num_frames not in (None, frames) else []
  out_dir = out_dir or workdir_lib.samples_dir(workdir, sampler.step, "_".join(names))
  written = [sample.write_videos(videos, prompts, out_dir, config.data.fps)]
  if ssr_workdir:
    ssr = sample.load_sampler(ssr_workdir, use_ema=config.sample.use_ema)
    t0 = time.monotonic()
    high = ssr.super_resolve(videos, prompts, seed, progress=True)
    logging.info("SSR: %d videos in %.1fs", len(prompts), time.monotonic() - t0)
    written.append(sample.write_videos(
        high, prompts, os.path.join(out_dir, f"ssr_{ssr.video_shape[1]}px"), ssr.config.data.fps))
  return written
