r"""TFDS builder for a user directory of captioned videos, stored as array_record clips.

The directory holds videos (mp4, webm, mov, gif, anything PyAV decodes) and one captions file:
`captions.jsonl` ({"path": ..., "caption": ...} per line) or `captions.csv` (`path,caption`
header). Every captioned video is resampled to `fps`, resized (shorter side) and center-cropped
to `resolution`, and cut into windows of `num_frames` frames every `clip_stride` frames.

Bad rows (unreadable or short videos, missing files, empty or non-UTF-8 captions, duplicates) are
skipped, listed in `bad_files.json` next to the dataset and summarised on stderr; the build fails
if too many are bad. Build ahead of training (same config name as `main.py` will use):

  python -m lumiere_jax.data.datasets --config=experiments/video_folder.py \
      --config.data.video_dir=/path/to/videos
"""
import collections
from concurrent import futures
import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from lumiere_jax import errors
from lumiere_jax import progress as progress_lib
from lumiere_jax.data import synthetic
from lumiere_jax.data import video_decode

CAPTION_FILES = ("captions.jsonl", "captions.csv")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".gif", ".mkv", ".avi")
BAD_FILES_NAME = "bad_files.json"
_SPLITS = ("train", "validation")


def find_captions_file(video_dir):
  """The one captions file of `video_dir`; both or neither is an error."""
  found = [os.path.join(video_dir, n) for n in CAPTION_FILES
           if os.path.isfile(os.path.join(video_dir, n))]
  if not found:
    raise FileNotFoundError(f"No {' or '.join(CAPTION_FILES)} in video_dir {video_dir!r}.")
  if len(found) > 1:
    raise errors.UserError(f"Both {' and '.join(CAPTION_FILES)} in video_dir {video_dir!r}; keep "
                           "one.")
  return found[0]


class VideoFolderConfig(tfds.core.BuilderConfig):
  """Build settings; the name encodes them and the directory + captions, so nothing collides.

  Hashing the captions file too means editing captions triggers a new build instead of silently
  reusing the old one (replacing a video file in place does not: delete the dataset directory).
  """

  def __init__(self, *, video_dir, num_frames=8, resolution=32, fps=8, clip_stride=0,
               validation_fraction=0.05, max_bad_fraction=0.05, num_workers=2):
    if not video_dir:
      raise errors.UserError("data.video_dir is empty; set it to a directory of captioned videos.")
    video_dir = os.path.abspath(os.path.expanduser(video_dir))
    if not os.path.isdir(video_dir):
      raise NotADirectoryError(f"video_dir {video_dir!r} is not a directory.")
    if num_frames < 1 or resolution < 8 or fps <= 0 or clip_stride < 0:
      raise errors.UserError(f"Need num_frames >= 1, resolution >= 8, fps > 0, clip_stride >= 0; "
                             f"got {num_frames}, {resolution}, {fps}, {clip_stride}.")
    if not 0 <= validation_fraction < 1 or not 0 <= max_bad_fraction <= 1:
      raise errors.UserError(f"Need 0 <= validation_fraction < 1 and 0 <= max_bad_fraction <= 1; "
                             f"got {validation_fraction}, {max_bad_fraction}.")
    self.captions_file = find_captions_file(video_dir)
    digest = hashlib.sha256(video_dir.encode("utf-8", "surrogateescape"))
    with open(self.captions_file, "rb") as f:
      digest.update(f.read())
    slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(video_dir).lower()).strip("_")[:24]
    stride = clip_stride or num_frames
    name = (f"{slug or 'videos'}_{digest.hexdigest()[:10]}_t{num_frames}_r{resolution}_f{fps:g}_"
            f"s{stride}_v{validation_fraction:g}").replace(".", "p")
    super().__init__(name=name, description=f"captioned videos of {video_dir}")
    self.video_dir = video_dir
    self.num_frames = num_frames
    self.resolution = resolution
    self.fps = fps
    self.clip_stride = stride
    self.validation_fraction = validation_fraction
    self.max_bad_fraction = max_bad_fraction
    self.num_workers = num_workers


def split_of(source, validation_fraction):
  """The split of a video: a hash of its relative path, so it stays put as files come and go."""
  h = int.from_bytes(hashlib.sha256(source.encode("utf-8", "surrogateescape")).digest()[:8], "big")
  return "validation" if h / 2.0**64 < validation_fraction else "train"


def read_caption_rows(video_dir, captions_file):
  """Parses the captions file.

  Returns:
    (rows, bad): rows are {"row", "source", "path", "caption"} dicts of well-formed, unique,
    existing files with a non-empty UTF-8 caption; bad are {"row", "source", "reason"} dicts.
    Each input row lands in exactly one of the two.
  """
  with open(captions_file, "rb") as f:
    # surrogateescape keeps invalid bytes visible per row instead of failing the whole file.
    text = f.read().decode("utf-8-sig", "surrogateescape")
  name = os.path.basename(captions_file)
  if captions_file.endswith(".csv"):
    parsed = _parse_csv(text, name)
  else:
    parsed = _parse_jsonl(text)
  rows, bad, seen = [], [], {}
  for line, path, caption, error in parsed:
    source = path or f"{name}:{line}"
    if not error:
      full = os.path.normpath(os.path.join(video_dir, path))
      source = os.path.relpath(full, video_dir)
      error = _row_error(full, caption, seen.get(full))
      seen.setdefault(full, line)
    if error:
      bad.append({"row": line, "source": source, "reason": error})
    else:
      rows.append({"row": line, "source": source, "path": full, "caption": caption.strip()})
  return rows, bad


def _row_error(path, caption, first_row):
  if first_row is not None:
    return f"duplicate path (first on row {first_row})"
  if not os.path.isfile(path):
    return "missing file"
  try:
    caption.encode("utf-8")
  except UnicodeEncodeError:
    return "non-UTF-8 caption"
  if not caption.strip():
    return "empty caption"
  return None


def _parse_jsonl(text):
  """Yields (line, path, caption, error) per non-blank line."""
  for line, raw in enumerate(text.splitlines(), 1):
    if not raw.strip():
      continue
    try:
      row = json.loads(raw)
    except ValueError:
      yield line, None, None, "malformed row (not JSON)"
      continue
    if (not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]
        or not isinstance(row.get("caption", ""), str)):
      yield line, None, None, 'malformed row (need {"path": str, "caption": str})'
      continue
    yield line, row["path"], row.get("caption", ""), None


def _parse_csv(text, name):
  reader = csv.DictReader(io.StringIO(text, newline=""))
  if not reader.fieldnames or not {"path", "caption"} <= set(reader.fieldnames):
    raise errors.UserError(f"{name} needs a header row with 'path' and 'caption' columns, got "
                           f"{reader.fieldnames}.")
  for row in reader:
    if not row["path"]:
      yield reader.line_num, None, None, "malformed row (no path)"
    else:
      yield reader.line_num, row["path"], row["caption"] or "", None


def num_clips(num_frames_total, num_frames, stride):
  return 0 if num_frames_total < num_frames else 1 + (num_frames_total - num_frames) // stride


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Captioned clips cut from a directory of videos."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(
                shape=(cfg.num_frames, cfg.resolution, cfg.resolution, 3), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            "caption": tfds.features.Text(),
            "source": tfds.features.Text(),  # Path relative to video_dir.
            "start_frame": tfds.features.Scalar(dtype=np.int32),  # At `fps`, from 0.
        }),
        metadata=tfds.core.MetadataDict(fps=cfg.fps, video_dir=cfg.video_dir),
        # Clips stay in path order; grain shuffles at read time.
        disable_shuffling=True)

  @property
  def bad_files_path(self):
    """`bad_files.json` in the config directory: outlives a failed build, unlike the data."""
    return os.path.join(os.fspath(self.data_dir_root), self.name, self.builder_config.name,
                        BAD_FILES_NAME)

  def _download_and_prepare(self, dl_manager, download_config):
    # Decoded frames wait in a scratch directory until every file is checked, so bad files
    # are known (and the build can fail) before any split is written.
    self._scratch = tempfile.mkdtemp(prefix="decoded", dir=os.fspath(self.data_dir))
    try:
      super()._download_and_prepare(dl_manager, download_config)
    finally:
      shutil.rmtree(self._scratch, ignore_errors=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    rows, bad = read_caption_rows(cfg.video_dir, cfg.captions_file)
    num_rows = len(rows) + len(bad)
    named = {r["source"] for r in rows + bad}
    if num_rows and len(bad) / num_rows > cfg.max_bad_fraction:
      self._report(bad, num_rows, named)  # Fail before decoding anything.
      self._check(bad, num_rows, clips=None)
    rows = self._decode_all(rows, bad)
    clips = sum(r["clips"] for r in rows)
    self._report(bad, num_rows, named, clips=clips)
    self._check(bad, num_rows, clips)
    by_split = collections.defaultdict(list)
    for r in rows:
      by_split[split_of(r["source"], cfg.validation_fraction)].append(r)
    # TFDS cannot write an empty split: a small directory may have no validation split.
    return {s: self._generate_examples(by_split[s]) for s in _SPLITS if by_split[s]}

  def _decode_all(self, rows, bad):
    """Decodes `rows` in parallel; moves failures to `bad`; returns rows with >= 1 clip."""
    cfg = self.builder_config
    tasks = [(i, r["path"], os.path.join(self._scratch, f"{i}.npy"), cfg.fps, cfg.resolution)
             for i, r in enumerate(rows)]
    progress = progress_lib.Progress(f"video_folder/{cfg.name} decode", len(tasks), unit="files",
                                     interval=2.0)
    clips, ok = 0, []
    for done, (i, frames, error) in enumerate(_run_parallel(video_decode.decode_task, tasks,
                                                            cfg.num_workers), 1):
      row = rows[i]
      n = num_clips(frames, cfg.num_frames, cfg.clip_stride)
      if error is None and not n:
        error = f"too short ({frames} frames at {cfg.fps:g} fps, a clip needs {cfg.num_frames})"
      if error:
        bad.append({"row": row["row"], "source": row["source"], "reason": error})
      else:
        ok.append(dict(row, npy=tasks[i][2], frames=frames, clips=n))
        clips += n
      progress.update(done, extra=f"{clips} clips, {len(bad)} bad")
    progress.close(extra=f"{clips} clips, {len(bad)} bad")
    return sorted(ok, key=lambda r: r["source"])

  def _report(self, bad, num_rows, named, clips=None):
    """Writes bad_files.json and prints the summary table to stderr."""
    cfg = self.builder_config
    bad.sort(key=lambda b: b["row"])
    uncaptioned = sorted(
        rel for d, _, files in os.walk(cfg.video_dir) for f in files
        if f.lower().endswith(VIDEO_EXTENSIONS)
        and (rel := os.path.relpath(os.path.join(d, f), cfg.video_dir)) not in named)
    os.makedirs(os.path.dirname(self.bad_files_path), exist_ok=True)
    with open(self.bad_files_path, "w") as f:
      json.dump({"video_dir": cfg.video_dir, "captions_file": cfg.captions_file,
                 "num_rows": num_rows, "num_bad": len(bad), "bad": bad,
                 "videos_without_caption": uncaptioned}, f, indent=1)
    done = "" if clips is None else f", {num_rows - len(bad)} videos -> {clips} clips"
    lines = [f"video_folder {cfg.video_dir}: {num_rows} caption rows, {len(bad)} bad "
             f"(skipped){done}."]
    if bad:
      width = max(len(b["source"]) for b in bad)
      lines.append(f"  {'row':>5}  {'file':<{width}}  reason")
      lines += [f"  {b['row']:>5}  {b['source']:<{width}}  {b['reason']}" for b in bad]
    if uncaptioned:
      lines.append(f"  {len(uncaptioned)} video file(s) without a caption row, not used: "
                   f"{', '.join(uncaptioned[:5])}{' ...' if len(uncaptioned) > 5 else ''}")
    lines.append(f"  Report: {self.bad_files_path}")
    print("\n".join(lines), file=sys.stderr, flush=True)

  def _check(self, bad, num_rows, clips):
    """Fails the build on too many bad rows or, after decoding (`clips` not None), no clips."""
    cfg = self.builder_config
    if not num_rows:
      raise errors.UserError(f"{cfg.captions_file} has no rows.")
    if len(bad) / num_rows > cfg.max_bad_fraction:
      raise errors.UserError(
          f"{len(bad)} of {num_rows} caption rows in {cfg.captions_file} are bad, more than "
          f"max_bad_fraction={cfg.max_bad_fraction:g}; see {self.bad_files_path}.")
    if clips == 0:
      raise errors.UserError(f"No usable clips in {cfg.video_dir} (num_frames={cfg.num_frames} at "
                             f"{cfg.fps:g} fps); see {self.bad_files_path}.")

  def _generate_examples(self, rows):
    cfg = self.builder_config
    for r in rows:
      frames = np.load(r["npy"], mmap_mode="r")
      for c in range(r["clips"]):
        start = c * cfg.clip_stride
        yield f"{r['source']}@{start}", {
            "video": np.asarray(frames[start:start + cfg.num_frames]),
            "caption": r["caption"], "source": r["source"], "start_frame": start}
      del frames
      os.remove(r["npy"])


def _run_parallel(fn, tasks, num_workers):
  """Yields fn(task) in completion order, inline when num_workers <= 1."""
  if num_workers <= 1:
    yield from map(fn, tasks)
    return
  # spawn, not fork: the caller may already run JAX's threads (workers import only PyAV and
  # numpy). An executor, not a Pool: a killed worker raises BrokenProcessPool, not a hang.
  with futures.ProcessPoolExecutor(num_workers,
                                   mp_context=multiprocessing.get_context("spawn")) as pool:
    for future in futures.as_completed([pool.submit(fn, t) for t in tasks]):
      yield future.result()


def config_from_data_cfg(data_cfg):
  return VideoFolderConfig(
      video_dir=data_cfg.video_dir, num_frames=data_cfg.num_frames,
      resolution=data_cfg.resolution, fps=data_cfg.fps, clip_stride=data_cfg.clip_stride,
      validation_fraction=data_cfg.validation_fraction,
      max_bad_fraction=data_cfg.max_bad_fraction, num_workers=data_cfg.num_workers)


def build_video_folder(data_cfg, data_dir=None):
  """Returns the prepared builder for `data_cfg`, decoding the videos only on the first call."""
  builder = VideoFolder(config=config_from_data_cfg(data_cfg),
                        data_dir=data_dir or synthetic.resolve_data_dir(data_cfg),
                        file_format="array_record")
  if not builder.is_prepared():
    builder.download_and_prepare()
  return builder
