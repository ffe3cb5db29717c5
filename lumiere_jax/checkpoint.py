"""Orbax checkpointing: train state + data-iterator state + config in one step directory."""
import copy
import json
import os
import sys
from typing import Any

import grain.python as grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from lumiere_jax import workdir as workdir_lib

# Config keys that were removed, and the key that holds their value now: configs saved before
# (an old workdir's config.json, its checkpoints' configs) load without them.
MOVED_KEYS = {"text.max_len": "data.max_text_len",
              "text.precomputed_dim": "data.text_embedding_dim"}


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored; the message says which step and what to do."""


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def upgrade_config_dict(saved: dict) -> dict:
  """A saved config (as a dict) in today's keys: each MOVED_KEYS key dropped, its value kept
  under the new key when that is missing (configs older than the new key)."""
  saved = copy.deepcopy(saved)
  for old, new in MOVED_KEYS.items():
    (old_section, old_key), (section, key) = old.split("."), new.split(".")
    if isinstance(saved.get(old_section), dict) and old_key in saved[old_section]:
      value = saved[old_section].pop(old_key)
      if isinstance(saved.get(section), dict):
        saved[section].setdefault(key, value)
  return saved


def absolute(workdir: str) -> str:
  """An absolute local path, or a cloud path (`gs://...`) unchanged."""
  return workdir if "://" in workdir else os.path.abspath(workdir)


def create_manager(workdir: str, train_cfg, read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=train_cfg.get("max_to_keep", 3),
      enable_async_checkpointing=train_cfg.get("async_checkpointing", True),
      create=not read_only, read_only=read_only,
  )
  return ocp.CheckpointManager(epath.Path(workdir_lib.checkpoints_dir(absolute(workdir))),
                              options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter: Any,
         config: ml_collections.ConfigDict, force: bool = False) -> bool:
  """Saves asynchronously (if enabled); `data_iter` is anything with grain's `get_state()`."""
  items = dict(state=ocp.args.StandardSave(state),
               config=ocp.args.JsonSave(config_to_dict(config)))
  if data_iter is not None:
    items["data"] = grain.PyGrainCheckpointSave(data_iter)
  return mngr.save(step, args=ocp.args.Composite(**items), force=force)


def _is_late_callback_of_abandoned_read(unraisable) -> bool:
  exc = unraisable.exc_value
  return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def drop_late_callbacks_of_abandoned_reads() -> None:
  """Keeps a failed restore's report to its one-line error; the command line installs it.

  When one tensorstore read fails, orbax's `asyncio.run` returns and closes its event loop while
  the other reads of that step are still in flight; each then completes into the closed loop and
  Python prints an unraisable "Event loop is closed" traceback, at a time that depends on thread
  scheduling. Those reads belong to the step we just declared unusable, so exactly that error is
  dropped; every other unraisable exception still reaches the previous hook. The hook is the
  whole process's, so only the application (`main.py`) installs it; the library never does.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_abandoned_reads", False):
    return

  def hook(unraisable):
    if not _is_late_callback_of_abandoned_read(unraisable):
      previous(unraisable)

  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook


def _restore_error(mngr, step: int, error: Exception) -> CheckpointError:
  earlier = [s for s in mngr.all_steps() if s < step]
  hint = (f"delete {mngr.directory / str(step)} to resume from step {max(earlier)}"
          if earlier else "delete it to start fresh")
  return CheckpointError(f"checkpoint step {step} in {mngr.directory} cannot be restored "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); {hint}")


# Config sections that fix the train state's shapes: a checkpoint written under other values
# cannot restore into this config's state, however intact it is.
STATE_SECTIONS = ("model", "text", "data")


def _changed_state_config(mngr, step: int, config: ml_collections.ConfigDict) -> list[str]:
  """The STATE_SECTIONS keys whose values differ between step's saved config and `config`."""
  try:
    saved = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    saved = upgrade_config_dict(saved)
  except Exception:  # pylint: disable=broad-except  # Unreadable too: the step is what is broken.
    return []
  now = config_to_dict(config)
  return [f"{section}.{key}: {saved[section].get(key)!r} in the checkpoint, "
          f"{now[section].get(key)!r} now"
          for section in STATE_SECTIONS if section in saved and section in now
          for key in sorted(set(saved[section]) | set(now[section]))
          if saved[section].get(key) != now[section].get(key)]


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any,
            data_iter: Any = None, config: ml_collections.ConfigDict | None = None) -> Any:
  """Restores the train state (onto the shardings of `abstract_state`) and the data iterator.

  With `config`, a failure under a config whose model/text/data differ from the checkpoint's
  is reported as that change (not as a corrupt step to delete).
  """
  items = dict(state=ocp.args.StandardRestore(abstract_state))
  if data_iter is not None:
    items["data"] = grain.PyGrainCheckpointRestore(data_iter)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # Orbax/tensorstore raise many types; all mean "this step is unusable".
    changed = _changed_state_config(mngr, step, config) if config is not None else []
    if changed:
      raise CheckpointError(
          f"checkpoint step {step} in {mngr.directory} was written with another config, so its "
          f"state does not fit this one ({'; '.join(changed[:5])}). Resume with the config it "
          f"was trained with, or train into a new --workdir.") from e
    raise _restore_error(mngr, step, e) from e
  return restored["state"]


def restore_subtree(workdir: str, keys: tuple[str, ...], abstract_tree: Any,
                    step: int | None = None) -> tuple[Any, int]:
  """Restores `state[keys[0]][keys[1]]...` (e.g. ("ema_params",)) of a workdir's checkpoint.

  Used to sample from a checkpoint and to initialise from another run without its optimizer.
  `abstract_tree` holds `jax.ShapeDtypeStruct`s with shardings for that subtree only.
  """
  mngr = create_manager(workdir, ml_collections.ConfigDict(), read_only=True)
  steps = mngr.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {workdir_lib.checkpoints_dir(workdir)}")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise FileNotFoundError(f"checkpoint step {step} not found in {workdir}; "
                            f"available steps: {sorted(steps)}")
  target = abstract_tree
  for key in reversed(keys):
    target = {key: target}
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=target, partial_restore=True,
            restore_args=jax.tree.map(
                lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, dtype=x.dtype), target))))
  except Exception as e:  # See `restore`.
    raise _restore_error(mngr, step, e) from e
  tree = restored["state"]
  for key in keys:
    tree = tree[key]
  logging.info("Restored %s from %s step %d", "/".join(keys), workdir, step)
  return tree, step


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (written at the start of training), in today's keys
  (`upgrade_config_dict`)."""
  path = epath.Path(workdir_lib.config_path(workdir))
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: is {workdir} a lumiere_jax training workdir?")
  return ml_collections.ConfigDict(upgrade_config_dict(json.loads(path.read_text())))
