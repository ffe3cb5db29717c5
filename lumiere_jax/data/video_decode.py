"""Decoding for the video_folder build: fps resampling, resize and center crop with PyAV.

A module of its own so the spawned build workers import only PyAV and numpy, not TFDS, and start
quickly.
"""
import av
import numpy as np


def _resized(frame, resolution):
  """Shorter side -> `resolution` (area filter), then center crop; uint8 (R, R, 3)."""
  scale = resolution / min(frame.width, frame.height)
  w = max(resolution, round(frame.width * scale))
  h = max(resolution, round(frame.height * scale))
  img = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
  top, left = (h - resolution) // 2, (w - resolution) // 2
  return img[top:top + resolution, left:left + resolution]


def decode_video(path, fps, resolution):
  """All frames of `path` resampled to `fps`: the frame on screen at each time k / fps.

  Streams the decode so only the kept frames are converted and held in memory.

  Returns:
    uint8 (N, resolution, resolution, 3).

  Raises:
    ValueError: the file cannot be opened or decoded as a video, or is truncated.
  """
  try:
    container = av.open(path)
  except (av.error.FFmpegError, UnicodeDecodeError) as e:
    raise ValueError(f"cannot open as a video ({e})") from e
  with container:
    if not container.streams.video:
      raise ValueError("cannot open as a video (no video stream)")
    stream = container.streams.video[0]
    out, k, decoded = [], 0, 0
    prev = prev_array = start = last_t = None
    gap = 1.0 / fps
    try:
      for frame in container.decode(stream):
        t = frame.time if frame.time is not None else decoded / float(stream.average_rate or fps)
        start = t if start is None else start
        t -= start
        # Targets before this frame's time show the previous frame.
        while prev is not None and k / fps < t - 1e-6:
          if prev_array is None:
            prev_array = _resized(prev, resolution)
          out.append(prev_array)
          k += 1
        if last_t is not None and t > last_t:
          gap = t - last_t
        prev, prev_array, last_t = frame, None, t
        decoded += 1
    except av.error.FFmpegError as e:
      raise ValueError(f"corrupt or truncated (decode failed after {decoded} frames: {e})") from e
    if not decoded:
      raise ValueError("corrupt or truncated (no frames decode)")
    if stream.frames and decoded < stream.frames:
      raise ValueError(f"corrupt or truncated (decoded {decoded} of {stream.frames} frames)")
    # The last frame stays on screen for one more inter-frame gap.
    while k / fps < last_t + gap - 1e-6:
      if prev_array is None:
        prev_array = _resized(prev, resolution)
      out.append(prev_array)
      k += 1
  return np.stack(out)


def decode_task(task):
  """Pool worker: decodes one file into a .npy scratch file; returns (index, frames, error)."""
  index, path, out_path, fps, resolution = task
  try:
    frames = decode_video(path, fps, resolution)
  except ValueError as e:
    return index, 0, str(e)
  np.save(out_path, frames)
  return index, len(frames), None
