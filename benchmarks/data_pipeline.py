r"""Input-pipeline throughput vs. what training consumes, plus a video_folder build.

  python benchmarks/data_pipeline.py [--train_clips_per_s=40]

Measures clips/s of the grain pipeline (read, zlib-decode, float conversion, tokenize, batch)
on synthetic datasets at the tiny shape (8x32x32) and a base shape (80x128x128), with
worker_count 0 and 1, and the build rate of `video_folder` on generated mp4s with 1 and 2
decode workers. The pipeline must outpace the train step: tiny trains at ~0.4 s/step at batch
16 on 2 cores, i.e. ~40 clips/s (the default of --train_clips_per_s). Prints a table and writes
benchmarks/results/data_pipeline.json.
"""
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import av
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# lumiere_jax.data modules (TFDS, grain, JAX) are imported inside the functions: the spawned
# video_folder build workers re-import this script and should start in well under a second.
# pylint: disable=g-import-not-at-top

_TRAIN_RATE = flags.DEFINE_float(
    "train_clips_per_s", 40.0, "Clips/s the tiny train step consumes (batch / step time).")
_OUT = flags.DEFINE_string(
    "out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "data_pipeline.json"), "Where to write the JSON results.")

# (name, num_frames, resolution, clips in the dataset, batch, timed batches)
_SHAPES = (("tiny", 8, 32, 512, 16, 40), ("base", 80, 128, 64, 4, 12))


def _data_cfg(num_frames, resolution, num_train, worker_count):
  return ml_collections.ConfigDict(dict(
      name="synthetic_clips", variant="simple", data_dir="", num_frames=num_frames,
      resolution=resolution, fps=8, num_train=num_train, num_validation=1, num_test=1,
      builder_seed=0, max_text_len=16, vocab_size=128, random_flip=False,
      random_temporal_flip=False, worker_count=worker_count))


def bench_pipeline(data_dir):
  from lumiere_jax.data import pipeline
  from lumiere_jax.data import synthetic
  from lumiere_jax.data import tokenizer as tokenizer_lib
  rows = []
  for name, frames, res, num_train, batch, num_batches in _SHAPES:
    t0 = time.monotonic()
    builder = synthetic.build_dataset(_data_cfg(frames, res, num_train, 0), data_dir)
    build_s = time.monotonic() - t0
    tok = tokenizer_lib.get_or_train_tokenizer(builder, _data_cfg(frames, res, num_train, 0))
    for workers in (0, 1):
      it = pipeline.create_data_iterator(_data_cfg(frames, res, num_train, workers), builder,
                                         tok, "train", batch, seed=0)
      for _ in range(2):  # Worker start-up and first reads are not the steady state.
        next(it)
      t0 = time.monotonic()
      for _ in range(num_batches):
        next(it)
      rate = num_batches * batch / (time.monotonic() - t0)
      rows.append(dict(shape=f"{frames}x{res}x{res}", dataset=name, batch=batch,
                       worker_count=workers, clips_per_s=round(rate, 1),
                       synthetic_build_s=round(build_s, 1)))
      print(f"  {name} worker_count={workers}: {rate:.1f} clips/s", file=sys.stderr, flush=True)
      del it
  return rows


def _write_mp4(path, num_frames, fps, height, width, seed):
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for i in range(num_frames):
      frame = np.roll(base, i, axis=1).repeat(8, 0).repeat(8, 1)
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def bench_video_folder(tmp):
  """Build time of 16 mp4s of 10 s at 24 fps, 320x240, into 8x32x32 clips at 8 fps."""
  from lumiere_jax.data import video_folder
  video_dir = os.path.join(tmp, "videos")
  os.makedirs(video_dir)
  num_videos, seconds, src_fps = 16, 10, 24
  with open(os.path.join(video_dir, "captions.jsonl"), "w") as f:
    for i in range(num_videos):
      _write_mp4(os.path.join(video_dir, f"v{i}.mp4"), seconds * src_fps, src_fps, 240, 320, i)
      f.write(json.dumps({"path": f"v{i}.mp4", "caption": f"pattern number {i}"}) + "\n")
  rows = []
  for workers in (1, 2):
    cfg = ml_collections.ConfigDict(dict(
        video_dir=video_dir, num_frames=8, resolution=32, fps=8, clip_stride=0,
        validation_fraction=0.0, max_bad_fraction=0.05, num_workers=workers))
    t0 = time.monotonic()
    builder = video_folder.build_video_folder(cfg, os.path.join(tmp, f"tfds_w{workers}"))
    seconds_taken = time.monotonic() - t0
    clips = builder.info.splits["train"].num_examples
    rows.append(dict(videos=num_videos, source=f"{seconds}s {src_fps}fps 320x240 mp4",
                     clip="8x32x32 @ 8fps", num_workers=workers, clips=clips,
                     build_s=round(seconds_taken, 1),
                     videos_per_s=round(num_videos / seconds_taken, 2),
                     clips_per_s=round(clips / seconds_taken, 1)))
  return rows


def main(argv):
  del argv
  train_rate = _TRAIN_RATE.value
  with tempfile.TemporaryDirectory() as tmp:
    pipe = bench_pipeline(os.path.join(tmp, "tfds"))
    build = bench_video_folder(tmp)
  print(f"\nGrain pipeline vs. the tiny train step ({train_rate:g} clips/s):")
  print(f"{'shape':<12} {'batch':>5} {'workers':>7} {'clips/s':>9} {'x train':>8}")
  for r in pipe:
    r["x_train"] = round(r["clips_per_s"] / train_rate, 1)
    print(f"{r['shape']:<12} {r['batch']:>5} {r['worker_count']:>7} {r['clips_per_s']:>9.1f} "
          f"{r['x_train']:>8.1f}")
  print("\nvideo_folder build (decode + resample + resize + zlib write):")
  print(f"{'workers':>7} {'videos':>6} {'clips':>6} {'build s':>8} {'clips/s':>8}")
  for r in build:
    print(f"{r['num_workers']:>7} {r['videos']:>6} {r['clips']:>6} {r['build_s']:>8.1f} "
          f"{r['clips_per_s']:>8.1f}")
  tiny = [r for r in pipe if r["dataset"] == "tiny"]
  bottleneck = min(r["clips_per_s"] for r in tiny) < train_rate
  print(f"\nTiny-scale pipeline is {'THE BOTTLENECK' if bottleneck else 'not the bottleneck'}.")
  os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump({"train_clips_per_s": train_rate, "pipeline": pipe, "video_folder_build": build,
               "tiny_pipeline_is_bottleneck": bottleneck, "cpu_count": os.cpu_count()}, f,
              indent=1)
  print(f"Wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
