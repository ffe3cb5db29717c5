"""conftest.build_once: what lets the pytest-xdist workers share one `trained` run."""
import threading
import time

import pytest

from conftest import build_once


def test_concurrent_callers_build_once_and_get_the_same_result(tmp_path):
  calls, results = [], []

  def build(path):
    calls.append(path)
    path.mkdir()
    time.sleep(0.5)  # The other callers ask while this one builds.
    return {"end_step": 4}

  # flock locks belong to an open file, so threads exclude each other as processes do.
  threads = [threading.Thread(target=lambda: results.append(build_once(tmp_path / "run", build)))
             for _ in range(3)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert calls == [tmp_path / "run"]
  assert results == [{"end_step": 4}] * 3


def test_a_failed_build_is_redone_in_an_empty_directory(tmp_path):
  def crash(path):
    path.mkdir()
    (path / "partial").write_text("x", encoding="utf-8")
    raise RuntimeError("crashed")

  with pytest.raises(RuntimeError, match="crashed"):
    build_once(tmp_path / "run", crash)
  existed = []
  assert build_once(tmp_path / "run", lambda path: existed.append(path.exists()) or 7) == 7
  assert existed == [False]
  assert build_once(tmp_path / "run", crash) == 7  # Built: later callers only read the result.
