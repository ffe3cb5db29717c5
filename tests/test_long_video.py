"""benchmarks/long_video.py: which clips it scores and what it measures on a long video."""
import os
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(str(REPO), "benchmarks"))
import long_video  # pylint: disable=g-import-not-at-top,wrong-import-position
from lumiere_jax import sample  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_window_clips_are_the_windows_and_one_clip_centred_on_each_overlap():
  # 16 frames, windows of 8 overlapping by 4: windows 0, 4, 8; overlaps [4, 8) and [8, 12).
  assert long_video.window_clips(16, 8, 4) == {"windows": [0, 4, 8], "across_borders": [2, 6]}
  # Overlap 0: the border is between frames 7 and 8, the clip across it starts at 4.
  assert long_video.window_clips(16, 8, 0) == {"windows": [0, 8], "across_borders": [4]}


def test_measure_scores_every_window_and_the_seams(trained):
  sampler = sample.load_sampler(str(trained[1]))  # tiny:test: 4-frame windows, overlap 2.
  prompts = ["a red square moves up", "a blue circle moves down"]
  row = long_video.measure(sampler, prompts, 8, seed=0)
  assert row["num_windows"] == 3
  assert [w["start"] for w in row["windows"]] == [0, 2, 4]
  assert [w["start"] for w in row["across_borders"]] == [1, 3]
  assert set(row["seams"]) == {"border", "inside", "ratio"} and row["seconds"] > 0
  short = long_video.measure(sampler, prompts, 4, seed=0)
  assert short["num_windows"] == 1 and short["seams"] is None
  independent = long_video.measure(long_video.with_overlap(sampler, 0), prompts, 8, seed=0)
  assert [w["start"] for w in independent["windows"]] == [0, 4]
  assert sampler.config.sample.overlap == 2  # Unchanged.
