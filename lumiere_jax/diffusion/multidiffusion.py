"""MultiDiffusion over overlapping temporal windows (Lumiere runs its SSR stage this way).

Memory limits a model to short clips; averaging the overlapping window predictions at every
denoising step makes the windows agree, so a long video comes out without seams.
"""
import jax
import jax.numpy as jnp
import numpy as np


def window_starts(num_frames, window, overlap):
  """First frame of each temporal window; stride window - overlap, last window ends at the end."""
  if window < 1:
    raise ValueError(f'window must be >= 1, got {window}')
  if window > num_frames:
    raise ValueError(f'window ({window}) is longer than the video ({num_frames} frames)')
  if not 0 <= overlap < window:
    raise ValueError(f'overlap must be in [0, window={window}), got {overlap}')
  starts = list(range(0, num_frames - window + 1, window - overlap))
  if starts[-1] + window < num_frames:
    starts.append(num_frames - window)
  return starts


def call_split(num_windows, windows_per_call):
  """(windows per model call, model calls) for `num_windows` windows run at most
  `windows_per_call` at a time (0: all in one call)."""
  if windows_per_call < 0:
    raise ValueError(f'windows_per_call must be >= 0 (0: all at once), got {windows_per_call}')
  per_call = min(windows_per_call or num_windows, num_windows)
  return per_call, -(-num_windows // per_call)


def multidiffusion(denoise_fn, num_frames, window, overlap, windows_per_call=0):
  """Wraps denoise_fn to run on temporal windows and average overlapping predictions per frame.

  The K windows go through denoise_fn as one batched call, or, with `windows_per_call` = k in
  [1, K), in ceil(K / k) calls of k windows each, one after the other in a `lax.scan`: the same
  result for about k / K of the activation memory (the paper-scale SSR step needs more than a
  16 GiB chip with all of its windows at once; docs/pod_plan.md). Within a call the rows are
  batch-major: the windows of video b are rows b*k .. b*k+k-1, so a batch sharded over devices
  stays sharded (window-major rows would put every video's windows on every device). cond, if
  given, must be per-frame (B, T, ...) and is windowed like x_t; text and t are repeated.
  """
  starts = window_starts(num_frames, window, overlap)
  num_windows = len(starts)
  per_call, num_calls = call_split(num_windows, windows_per_call)
  counts = np.bincount((np.asarray(starts)[:, None] + np.arange(window)).ravel(),
                       minlength=num_frames).astype(np.float32)
  # The last call is padded with copies of the last window, weighted 0.
  padded = starts + [starts[-1]] * (num_calls * per_call - num_windows)
  index = (np.asarray(padded)[:, None] + np.arange(window)[None, :]).reshape(
      num_calls, per_call, window)
  weight = (np.arange(num_calls * per_call) < num_windows).astype(np.float32).reshape(
      num_calls, per_call)

  def fn(x_t, t, text_emb, text_mask, cond):
    if x_t.shape[1] != num_frames:
      raise ValueError(f'multidiffusion built for {num_frames} frames, got x_t {x_t.shape}')
    if cond is not None and cond.shape[1] != num_frames:
      raise ValueError(f'cond must be per-frame with {num_frames} frames, got {cond.shape}')
    batch = x_t.shape[0]

    def to_windows(a, idx):
      """(B, T, ...) -> (B * per_call, window, ...)."""
      w = a[:, idx]  # (B, per_call, window, ...)
      return w.reshape((batch * per_call,) + w.shape[2:])

    def repeat(a):
      return jnp.repeat(a, per_call, axis=0)

    def add_call(total, idx, w):
      pred = denoise_fn(to_windows(x_t, idx), repeat(t), repeat(text_emb), repeat(text_mask),
                        None if cond is None else to_windows(cond, idx))
      pred = pred.reshape((batch, per_call, window) + pred.shape[2:])
      pred = pred * w.reshape((1, per_call, 1) + (1,) * (pred.ndim - 3)).astype(pred.dtype)
      return total.at[:, idx.reshape(-1)].add(pred.reshape((batch, per_call * window)
                                                           + pred.shape[3:]))

    total = jnp.zeros(x_t.shape, x_t.dtype)
    if num_calls == 1:
      total = add_call(total, index[0], weight[0])
    else:
      total, _ = jax.lax.scan(lambda tot, iw: (add_call(tot, *iw), None), total,
                              (jnp.asarray(index), jnp.asarray(weight)))
    return total / counts.reshape((1, num_frames) + (1,) * (x_t.ndim - 2)).astype(total.dtype)

  return fn


def seam_metric(video, window, overlap):
  """Mean absolute frame difference across window borders vs. inside windows.

  A ratio near 1 means no visible seams; a seam shows up as a ratio well above 1.

  Args:
    video: (T, H, W, C) or (B, T, H, W, C).
    window: temporal window length used to generate the video.
    overlap: frames shared by consecutive windows.

  Returns:
    {'border': mean diff over frame pairs crossing a window edge, 'inside': over the other
    pairs, 'ratio': border / inside}.
  """
  video = np.asarray(video, np.float32)
  if video.ndim == 4:
    video = video[None]
  if video.ndim != 5:
    raise ValueError(f'video must be (T, H, W, C) or (B, T, H, W, C), got shape {video.shape}')
  num_frames = video.shape[1]
  starts = window_starts(num_frames, window, overlap)
  # Pair i is the transition from frame i to frame i + 1.
  diffs = np.abs(np.diff(video, axis=1)).mean(axis=(0, 2, 3, 4))
  border = np.zeros(num_frames - 1, bool)
  for s in starts:
    if s > 0:
      border[s - 1] = True
    if s + window < num_frames:
      border[s + window - 1] = True
  if border.all() or not border.any():
    raise ValueError(f'seam_metric needs both border and inside frame pairs; window={window}, '
                     f'overlap={overlap}, frames={num_frames}')
  b, i = float(diffs[border].mean()), float(diffs[~border].mean())
  return {'border': b, 'inside': i, 'ratio': b / max(i, 1e-12)}
