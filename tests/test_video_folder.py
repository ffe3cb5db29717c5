"""Tests for the video-folder TFDS builder, on tiny mp4/gif files written here."""
import json
import os
import shutil

import av
import ml_collections
import numpy as np
from PIL import Image
import pytest

from conftest import load_experiment
from lumiere_jax.data import datasets
from lumiere_jax.data import pipeline
from lumiere_jax.data import tokenizer as tokenizer_lib
from lumiere_jax.data import video_decode
from lumiere_jax.data import video_folder

# Frame i of a test video is uniformly gray level 20 * i: decoded values name the source frame.
_STEP = 20


def _frames(n, height=24, width=32):
  return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * _STEP, height * width * 3,
                   axis=1).reshape(n, height, width, 3)


def _write_mp4(path, n, fps=8, height=24, width=32, options=None):
  with av.open(str(path), "w", options=options) as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for frame in _frames(n, height, width):
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _write_gif(path, n, fps=8):
  images = [Image.fromarray(f) for f in _frames(n)]
  images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def _write_jsonl(directory, rows):
  """Rows are dicts (JSON-encoded), or str / bytes lines written as they are."""
  lines = [r if isinstance(r, bytes) else (json.dumps(r) if isinstance(r, dict) else r).encode()
           for r in rows]
  (directory / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def _data_cfg(video_dir, **overrides):
  cfg = dict(name="video_folder", video_dir=str(video_dir), data_dir="", num_frames=4,
             resolution=16, fps=8, clip_stride=0, validation_fraction=0.0, max_bad_fraction=0.05,
             num_workers=1, max_text_len=8, vocab_size=64, random_flip=False,
             random_temporal_flip=False, worker_count=0)
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


def _levels(video):
  """The source frame index of each decoded frame (lossy codecs shift levels by a few)."""
  return np.round(video[:, :, :, :].mean(axis=(1, 2, 3)) / _STEP).astype(int).tolist()


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("videos")
  _write_mp4(d / "a.mp4", 12)
  _write_gif(d / "b.gif", 12)
  (d / "sub").mkdir()
  _write_mp4(d / "sub" / "c.mp4", 10, height=32, width=24)  # Portrait.
  _write_jsonl(d, [{"path": "a.mp4", "caption": "a gray fade"},
                   {"path": "b.gif", "caption": "  a gif fade  "},
                   {"path": "sub/c.mp4", "caption": "a portrait fade"}])
  return d


@pytest.fixture(scope="module")
def built(good_dir, tmp_path_factory):
  cfg = _data_cfg(good_dir, num_workers=2, validation_fraction=0.5)
  return cfg, video_folder.build_video_folder(cfg, str(tmp_path_factory.mktemp("tfds")))


def _examples(builder):
  return {s: [builder.as_data_source(s)[i] for i in range(builder.info.splits[s].num_examples)]
          for s in builder.info.splits}


def test_good_build_splits_windows_and_contents(built):
  _, builder = built
  assert builder.info.file_format.value == "array_record"
  examples = _examples(builder)
  clips = {}
  for split, rows in examples.items():
    for ex in rows:
      source = ex["source"].decode()
      assert video_folder.split_of(source, 0.5) == split
      assert ex["video"].shape == (4, 16, 16, 3) and ex["video"].dtype == np.uint8
      clips.setdefault(source, []).append(int(ex["start_frame"]))
      start = int(ex["start_frame"])
      assert _levels(ex["video"]) == list(range(start, start + 4)), source
  # 12 frames -> 3 windows of 4; 10 frames -> 2 (the last 2 frames are dropped).
  assert clips == {"a.mp4": [0, 4, 8], "b.gif": [0, 4, 8], os.path.join("sub", "c.mp4"): [0, 4]}
  assert {ex["caption"].decode() for rows in examples.values() for ex in rows} == {
      "a gray fade", "a gif fade", "a portrait fade"}
  assert len(examples) == 2  # These names hash into both splits at 0.5.
  report = json.load(open(builder.bad_files_path))
  assert report["num_rows"] == 3 and report["bad"] == []


def test_second_call_reuses_the_build(built, monkeypatch):
  cfg, builder = built
  monkeypatch.setattr(video_folder.VideoFolder, "download_and_prepare",
                      lambda *a, **k: pytest.fail("rebuilt a prepared dataset"))
  again = datasets.build_dataset(cfg, os.fspath(builder.data_dir_root))
  assert again.data_dir == builder.data_dir


def test_pipeline_yields_batches(built):
  cfg, builder = built
  tok = tokenizer_lib.get_or_train_tokenizer(builder, cfg)
  batch = next(pipeline.create_data_iterator(cfg, builder, tok, "train", 2, seed=0))
  assert batch["video"].shape == (2, 4, 16, 16, 3) and batch["video"].dtype == np.float32
  assert batch["tokens"].shape == (2, 8) and batch["text_mask"].any(1).all()
  assert set(batch) == {"video", "tokens", "text_mask", "start_frame"}


@pytest.mark.parametrize("name", ["a.mp4", "b.gif"])
def test_fps_resampling(good_dir, name):
  cases = [(8, list(range(12))), (4, [0, 2, 4, 6, 8, 10]), (16, [i // 2 for i in range(24)])]
  if name.endswith(".mp4"):  # GIF delays are in 1/100 s: 125 ms became 120, which shows at 3.
    cases.append((3, [0, 2, 5, 8, 10]))
  for fps, want in cases:
    video = video_decode.decode_video(str(good_dir / name), fps, 16)
    assert video.shape == (len(want), 16, 16, 3)
    assert _levels(video) == want, (name, fps)


def test_csv_captions_fps_and_stride(good_dir, tmp_path):
  d = tmp_path / "csv"
  d.mkdir()
  shutil.copy(good_dir / "a.mp4", d / "a, b.mp4")
  (d / "captions.csv").write_text('path,caption\n"a, b.mp4","fade, slowly"\n')
  builder = video_folder.build_video_folder(_data_cfg(d, fps=4, num_frames=2, clip_stride=1),
                                            str(tmp_path / "tfds"))
  rows = _examples(builder)["train"]
  # 12 frames at 8 fps -> 6 at 4 fps -> windows of 2 every frame: 5 clips.
  assert [int(r["start_frame"]) for r in rows] == [0, 1, 2, 3, 4]
  assert _levels(rows[1]["video"]) == [2, 4] and rows[0]["caption"].decode() == "fade, slowly"
  assert video_folder.num_clips(6, 2, 1) == 5 and video_folder.num_clips(1, 2, 1) == 0


def test_every_bad_row_is_reported_by_name_and_skipped(good_dir, tmp_path, capsys):
  d = tmp_path / "mixed"
  d.mkdir()
  shutil.copy(good_dir / "a.mp4", d / "good.mp4")
  shutil.copy(good_dir / "a.mp4", d / "good2.mp4")
  data = (good_dir / "a.mp4").read_bytes()
  (d / "truncated.mp4").write_bytes(data[:len(data) // 2])  # Index (moov) at the end: lost.
  _write_mp4(d / "cut.mp4", 12, options={"movflags": "faststart"})  # Index first: opens.
  data = (d / "cut.mp4").read_bytes()
  (d / "cut.mp4").write_bytes(data[:len(data) // 2])
  (d / "garbage.mp4").write_bytes(os.urandom(2000))
  (d / "notes.txt").write_text("not a video")
  _write_mp4(d / "short.mp4", 3)
  _write_mp4(d / "unlisted.mp4", 3)
  _write_jsonl(d, [
      {"path": "good.mp4", "caption": "fine"},
      {"path": "truncated.mp4", "caption": "x"},
      {"path": "cut.mp4", "caption": "x"},
      {"path": "garbage.mp4", "caption": "x"},
      {"path": "notes.txt", "caption": "x"},
      {"path": "short.mp4", "caption": "x"},
      {"path": "missing.mp4", "caption": "x"},
      {"path": "good2.mp4", "caption": "   "},
      b'{"path": "good2.mp4", "caption": "caf\xe9"}',
      {"path": "./good.mp4", "caption": "again"},
      "{not json",
  ])
  builder = video_folder.build_video_folder(_data_cfg(d, max_bad_fraction=1.0),
                                            str(tmp_path / "tfds"))
  want = {"truncated.mp4": "cannot open", "cut.mp4": "corrupt or truncated",
          "garbage.mp4": "cannot open", "notes.txt": "cannot open", "short.mp4": "too short",
          "missing.mp4": "missing file", "good2.mp4": "empty caption",
          "good.mp4": "duplicate path", "captions.jsonl:11": "malformed row"}
  report = json.load(open(builder.bad_files_path))
  assert report["num_rows"] == 11 and report["num_bad"] == 10
  reasons = {}
  for b in report["bad"]:
    reasons.setdefault(b["source"], []).append(b["reason"])
  assert reasons.pop("good2.mp4") == ["empty caption", "duplicate path (first on row 8)"]
  assert set(reasons) | {"good2.mp4"} == set(want)
  for source, (reason,) in reasons.items():
    assert reason.startswith(want[source]), (source, reason)
  assert report["videos_without_caption"] == ["unlisted.mp4"]
  err = capsys.readouterr().err
  for source in want:
    assert source in err
  assert "11 caption rows, 10 bad" in err
  # Only the one good row was kept.
  rows = _examples(builder)["train"]
  assert {r["source"].decode() for r in rows} == {"good.mp4"} and len(rows) == 3


def test_non_utf8_caption_is_bad(good_dir, tmp_path):
  d = tmp_path / "latin1"
  d.mkdir()
  shutil.copy(good_dir / "a.mp4", d / "a.mp4")
  shutil.copy(good_dir / "a.mp4", d / "b.mp4")
  _write_jsonl(d, [{"path": "a.mp4", "caption": "ok"}, b'{"path": "b.mp4", "caption": "caf\xe9"}'])
  builder = video_folder.build_video_folder(_data_cfg(d, max_bad_fraction=0.5),
                                            str(tmp_path / "tfds"))
  assert json.load(open(builder.bad_files_path))["bad"] == [
      {"row": 2, "source": "b.mp4", "reason": "non-UTF-8 caption"}]


def _dir_of_copies(good_dir, d, n):
  d.mkdir()
  for i in range(n):
    shutil.copy(good_dir / "a.mp4", d / f"v{i}.mp4")
  return [{"path": f"v{i}.mp4", "caption": f"video {i}"} for i in range(n)]


def test_more_than_max_bad_fraction_fails(good_dir, tmp_path):
  d = tmp_path / "many_bad"
  rows = _dir_of_copies(good_dir, d, 9)
  (d / "v8.mp4").write_bytes(b"junk")  # Found bad only once decoded.
  _write_jsonl(d, rows)
  cfg = _data_cfg(d)
  with pytest.raises(ValueError, match=r"1 of 9 caption rows .* max_bad_fraction=0.05; see"):
    video_folder.build_video_folder(cfg, str(tmp_path / "tfds"))
  builder = video_folder.VideoFolder(config=video_folder.config_from_data_cfg(cfg),
                                     data_dir=str(tmp_path / "tfds"))
  assert not builder.is_prepared()
  assert [b["source"] for b in json.load(open(builder.bad_files_path))["bad"]] == ["v8.mp4"]
  # A bad row found in the captions alone fails before any decoding.
  _write_jsonl(d, rows + [{"path": "gone.mp4", "caption": "x"}])
  with pytest.raises(ValueError, match=r"1 of 10 caption rows"):
    video_folder.build_video_folder(cfg, str(tmp_path / "tfds"))
  # Within the limit the same directory builds, without the bad rows.
  builder = video_folder.build_video_folder(_data_cfg(d, max_bad_fraction=0.2),
                                            str(tmp_path / "tfds"))
  assert builder.info.splits["train"].num_examples == 8 * 3


def test_nothing_usable_fails(tmp_path):
  d = tmp_path / "short"
  d.mkdir()
  _write_mp4(d / "s.mp4", 3)
  _write_jsonl(d, [{"path": "s.mp4", "caption": "too short"}])
  with pytest.raises(ValueError, match="No usable clips"):
    video_folder.build_video_folder(_data_cfg(d, max_bad_fraction=1.0), str(tmp_path / "tfds"))
  (d / "captions.jsonl").write_text("")
  with pytest.raises(ValueError, match="has no rows"):
    video_folder.build_video_folder(_data_cfg(d), str(tmp_path / "tfds"))


def test_config_name_encodes_directory_captions_and_settings(good_dir, tmp_path):
  name = video_folder.config_from_data_cfg(_data_cfg(good_dir)).name
  assert name.endswith("_t4_r16_f8_s4_v0")
  names = {video_folder.config_from_data_cfg(_data_cfg(good_dir, **{k: v})).name for k, v in [
      ("num_frames", 5), ("resolution", 17), ("fps", 7.5), ("clip_stride", 2),
      ("validation_fraction", 0.1)]}
  other = tmp_path / "other"
  other.mkdir()
  shutil.copy(good_dir / "captions.jsonl", other / "captions.jsonl")
  names.add(video_folder.config_from_data_cfg(_data_cfg(other)).name)
  (other / "captions.jsonl").write_text('{"path": "a.mp4", "caption": "edited"}\n')
  names.add(video_folder.config_from_data_cfg(_data_cfg(other)).name)
  assert len(names) == 7 and name not in names
  assert "f7p5" in " ".join(names)


def test_bad_config_raises(good_dir, tmp_path):
  with pytest.raises(ValueError, match="video_dir is empty"):
    video_folder.config_from_data_cfg(_data_cfg(""))
  with pytest.raises(NotADirectoryError, match="nope"):
    video_folder.config_from_data_cfg(_data_cfg(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="captions.jsonl or captions.csv"):
    video_folder.config_from_data_cfg(_data_cfg(tmp_path))
  (tmp_path / "captions.csv").write_text("file,text\n")
  with pytest.raises(ValueError, match="'path' and 'caption' columns"):
    video_folder.read_caption_rows(str(tmp_path), str(tmp_path / "captions.csv"))
  (tmp_path / "captions.jsonl").write_text("")
  with pytest.raises(ValueError, match="Both"):
    video_folder.config_from_data_cfg(_data_cfg(tmp_path))
  with pytest.raises(ValueError, match="Unknown dataset name 'ucf101'"):
    datasets.build_dataset(_data_cfg(good_dir, name="ucf101"), str(tmp_path))


def test_experiment_config():
  config = load_experiment("video_folder")
  assert config.data.name == "video_folder" and config.data.video_dir == ""
  assert config.model == load_experiment("tiny").model
