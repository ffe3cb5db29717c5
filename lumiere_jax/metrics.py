"""Metrics to a JSONL log and TensorBoard event files (tensorboardX: no TensorFlow needed)."""
import json
import os
import time

import numpy as np
from tensorboardX import SummaryWriter

from lumiere_jax import workdir as workdir_lib


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and to TensorBoard under `workdir/tensorboard`.

  Only process 0 writes, so multi-host runs keep one log.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, workdir_lib.METRICS), "a", encoding="utf-8")
    self._tb = SummaryWriter(os.path.join(workdir, workdir_lib.TENSORBOARD))

  def scalars(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in values.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **clean}) + "\n")
    self._jsonl.flush()
    for k, v in clean.items():
      self._tb.add_scalar(k, v, step)

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    """Adds a uint8 `(H, W, 3)` image (e.g. a frame grid of samples) to TensorBoard.

    Videos go in as frame grids: tensorboardX's `add_video` needs moviepy to encode.
    """
    if not self.enabled:
      return
    self._tb.add_image(tag, image, step, dataformats="HWC")

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
