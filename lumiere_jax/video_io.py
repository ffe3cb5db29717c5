"""Reading and writing videos and images: mp4 (PyAV's bundled ffmpeg), gif and PNG (Pillow)."""
import os
import re

import av
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from lumiere_jax import errors


def slugify(text: str, max_len: int = 60) -> str:
  """A filesystem-safe name for a prompt: lowercase words joined by '_'."""
  slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
  return slug[:max_len].rstrip("_") or "prompt"


def _array_lib(video):
  """jnp for JAX arrays (also inside jit), np otherwise: one conversion for both."""
  return jnp if isinstance(video, jax.Array) else np


def to_float(video):
  """Maps a video in [0, 255] (uint8, or float after resizing) to float32 [-1, 1]; the inverse
  of `to_uint8`."""
  xp = _array_lib(video)
  return xp.asarray(video, dtype=xp.float32) / 127.5 - 1.0


def to_uint8(video):
  """Maps a float video in [-1, 1] to uint8 [0, 255]."""
  xp = _array_lib(video)
  video = xp.asarray(video, dtype=xp.float32)
  return xp.clip(xp.round((video + 1.0) * 127.5), 0, 255).astype(xp.uint8)


def _upscale(video: np.ndarray, min_side: int) -> np.ndarray:
  """Nearest-neighbour upscaling so tiny videos are visible and codec-friendly."""
  factor = max(1, -(-min_side // min(video.shape[1:3])))
  if factor > 1:
    video = video.repeat(factor, axis=1).repeat(factor, axis=2)
  return video


def write_mp4(path: str, video: np.ndarray, fps: int, min_side: int = 128) -> None:
  """Writes a uint8 `(T, H, W, 3)` video as H.264 mp4."""
  video = _upscale(np.asarray(video, np.uint8), min_side)
  _, h, w, _ = video.shape
  h2, w2 = h - h % 2, w - w % 2  # yuv420p needs even sizes.
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=int(fps))
    stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
    stream.options = {"crf": "18"}
    for frame in video:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h2, :w2]), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_gif(path: str, video: np.ndarray, fps: int, min_side: int = 128) -> None:
  """Writes a uint8 `(T, H, W, 3)` video as a looping gif."""
  video = _upscale(np.asarray(video, np.uint8), min_side)
  frames = [Image.fromarray(f) for f in video]
  frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                 duration=int(round(1000 / fps)))


def frame_grid(videos: np.ndarray, pad: int = 2) -> np.ndarray:
  """Lays out uint8 videos `(N, T, H, W, 3)` as an image: one row per video, one column per frame."""
  n, t, h, w, c = videos.shape
  grid = np.full((n * (h + pad) + pad, t * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    for j in range(t):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = videos[i, j]
  return grid


def write_png(path: str, image: np.ndarray, min_side: int = 0) -> None:
  image = np.asarray(image, np.uint8)
  if min_side:
    image = _upscale(image[None], min_side)[0]
  Image.fromarray(image).save(path)


def read_image(path: str, size: int) -> np.ndarray:
  """Reads any image Pillow can decode, center-crops it square and resizes to `size`; uint8 RGB."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"image not found: {path}")
  try:
    with Image.open(path) as img:
      img = img.convert("RGB")
  except (OSError, ValueError) as e:
    raise errors.UserError(f"cannot decode image {path}: {e}") from e
  w, h = img.size
  side = min(w, h)
  img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
  return np.asarray(img.resize((size, size), Image.BICUBIC), np.uint8)


def read_video(path: str, num_frames: int, size: int) -> np.ndarray:
  """Decodes the first `num_frames` frames of a video with PyAV, center-cropped and resized."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"video not found: {path}")
  frames = []
  try:
    with av.open(path) as container:
      for frame in container.decode(video=0):
        img = frame.to_image()
        w, h = img.size
        side = min(w, h)
        img = img.crop(((w - side) // 2, (h - side) // 2,
                        (w - side) // 2 + side, (h - side) // 2 + side))
        frames.append(np.asarray(img.resize((size, size), Image.BICUBIC), np.uint8))
        if len(frames) == num_frames:
          break
  except (av.error.FFmpegError, ValueError) as e:
    raise errors.UserError(f"cannot decode video {path}: {e}") from e
  if len(frames) < num_frames:
    raise errors.UserError(f"video {path} has {len(frames)} frames, the model needs {num_frames}")
  return np.stack(frames)
