"""The launch scripts run, and with --dry_run print, exactly the commands they promise.

Each script runs from a copy of launch/ in a temporary directory, with stand-ins for the programs
it calls (python, pip, git, gcloud, srun, scontrol) that record their arguments and environment,
so a test sees every command a real launch would run, quoting included, without a cluster.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

# A flag value with spaces and both quote kinds must reach main.py unchanged.
USER_ARGS = ["--config.train.steps=3", """--config.sample.prompts=('a red "square"', 'b')"""]
RECORDED_ENV = ("SLURM_PROCID", "XLA_FLAGS", "JAX_PLATFORMS", "LUMIERE_DATA_DIR")

STAND_IN = f"""#!{sys.executable}
import json, os, subprocess, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["STAND_IN_LOG"], "a") as log:
  log.write(json.dumps(dict(argv=[name] + args,
                            env={{k: os.environ.get(k) for k in {RECORDED_ENV!r}}})) + "\\n")
if name == "scontrol":
  print("gpu-node-1")
  print("gpu-node-2")
elif name == "srun":  # Starts the command once per task, as srun does on the nodes.
  command = args[next(i for i, a in enumerate(args) if not a.startswith("--")):]
  for task in range(int(os.environ["SLURM_NTASKS"])):
    subprocess.run(command, env=dict(os.environ, SLURM_PROCID=str(task)), check=True)
elif name == "gcloud":  # Runs the --command script as one worker would.
  script = next(a for a in args if a.startswith("--command=")).split("=", 1)[1]
  subprocess.run(["bash", "-c", script], cwd=os.environ["STAND_IN_WORKER"], check=True)
elif name == "git" and args[0] == "clone":
  os.makedirs(args[-1])
elif name == "python3" and args[:2] == ["-m", "venv"]:
  venv = os.path.abspath(args[2])
  os.makedirs(os.path.join(venv, "bin"))
  for tool in ("python", "pip"):
    os.symlink(sys.argv[0], os.path.join(venv, "bin", tool))
  with open(os.path.join(venv, "bin", "activate"), "w") as f:
    f.write(f'export PATH="{{venv}}/bin:$PATH"\\n')
"""


class Sandbox:
  """A copy of launch/, setup.py and constraints.txt with the stand-ins first on PATH."""

  def __init__(self, root):
    self.repo, self.bin, self.worker = root / "repo", root / "bin", root / "worker"
    for d in (self.repo, self.bin, self.worker):
      d.mkdir()
    shutil.copytree(REPO / "launch", self.repo / "launch")
    for name in ("setup.py", "constraints.txt"):
      shutil.copy(REPO / name, self.repo / name)
    stand_in = self.bin / "stand_in"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    for name in ("python", "python3", "pip", "git", "gcloud", "srun", "scontrol"):
      (self.bin / name).symlink_to(stand_in)
    self.venv = root / "venv"  # An active venv whose python is a stand-in too.
    (self.venv / "bin").mkdir(parents=True)
    (self.venv / "bin" / "python").symlink_to(stand_in)
    self.log = root / "log.jsonl"

  def run(self, script, *args, **env):
    self.log.write_text("")
    env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}", STAND_IN_LOG=str(self.log),
               STAND_IN_WORKER=str(self.worker), VIRTUAL_ENV=str(self.venv), **env)
    for name in ("JAX_PLATFORMS", "VENV_EXTRAS"):  # As a user's shell has them: unset.
      env.pop(name, None)
    proc = subprocess.run(["bash", str(self.repo / "launch" / script), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    calls = [json.loads(line) for line in self.log.read_text().splitlines()]
    return proc, calls


@pytest.fixture
def sandbox(tmp_path):
  return Sandbox(tmp_path)


def bash_words(line: str) -> list:
  """The argv that bash makes of a printed command line (`printf %q` may use $'...' quoting)."""
  out = subprocess.run(["bash", "-c", 'eval "words=($1)"; printf "%s\\0" "${words[@]}"', "_", line],
                       capture_output=True, text=True, check=True).stdout
  return out.split("\0")[:-1]


def main_py_calls(calls):
  return [c for c in calls if c["argv"][1:3] == ["-m", "lumiere_jax.main"]]


TPU_ENV = dict(TPU="my-tpu", ZONE="us-central2-b", BUCKET="gs://bucket", RUN="run1",
               REPO_URL="https://example.com/lumiere_jax.git", BRANCH="dev")


def test_tpu_pod_runs_setup_and_the_same_command_on_every_worker(sandbox):
  proc, calls = sandbox.run("tpu_pod.sh", *USER_ARGS, **TPU_ENV)
  assert proc.returncode == 0, proc.stderr
  assert [c["argv"][:2] for c in calls] == [
      ["gcloud", "compute"], ["git", "clone"], ["git", "fetch"], ["git", "checkout"],
      ["python3", "-m"], ["pip", "install"], ["python", "-m"]]
  gcloud, clone, _, _, _, pip, main = calls
  assert gcloud["argv"][1:8] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu",
                                 "--zone=us-central2-b", "--worker=all"]
  assert clone["argv"] == ["git", "clone", "--branch", "dev", TPU_ENV["REPO_URL"], "lumiere_jax"]
  assert pip["argv"] == ["pip", "install", "-q", "-e", ".[tpu]", "gcsfs", "-c", "constraints.txt"]
  assert main["argv"] == ["python", "-m", "lumiere_jax.main", "--workdir=gs://bucket/workdirs/run1",
                          "--mode=train", "--multihost", "--config=experiments/tiny.py",
                          *USER_ARGS]
  assert main["env"]["LUMIERE_DATA_DIR"] == "gs://bucket/tensorflow_datasets"
  assert main["env"]["JAX_PLATFORMS"] is None  # The TPU, not the CPU.

  dry, dry_calls = sandbox.run("tpu_pod.sh", "--dry_run", *USER_ARGS, **TPU_ENV)
  assert dry.returncode == 0 and not dry_calls, dry.stderr
  lines = dry.stdout.splitlines()
  assert bash_words(lines[-1]) == gcloud["argv"]
  remote = next(a for a in gcloud["argv"] if a.startswith("--command=")).split("=", 1)[1]
  assert [line.removeprefix("#   ") for line in lines[1:-1]] == remote.splitlines()


def test_tpu_pod_names_a_missing_setting(sandbox):
  env = dict(TPU_ENV)
  del env["BUCKET"]
  proc, calls = sandbox.run("tpu_pod.sh", "--dry_run", **env)
  assert proc.returncode != 0 and not calls
  assert "BUCKET" in proc.stderr


def test_slurm_starts_one_process_per_task_with_the_first_node_as_coordinator(sandbox):
  env = dict(SLURM_JOB_NODELIST="gpu-node-[1-2]", SLURM_JOB_ID="42", SLURM_NTASKS="3",
             SLURM_SUBMIT_DIR=str(sandbox.repo))
  proc, calls = sandbox.run("slurm_gpu.sh", *USER_ARGS, **env)
  assert proc.returncode == 0, proc.stderr
  assert calls[0]["argv"] == ["scontrol", "show", "hostnames", "gpu-node-[1-2]"]
  assert calls[1]["argv"][0] == "srun"
  mains = main_py_calls(calls)
  assert len(mains) == 3
  for task, call in enumerate(mains):
    assert call["argv"][3:] == [
        "--workdir=workdirs/slurm-42", "--mode=train", "--multihost",
        "--coordinator_address=gpu-node-1:29500", "--num_processes=3", f"--process_id={task}",
        "--config=experiments/tiny.py", *USER_ARGS]
    assert call["env"]["SLURM_PROCID"] == str(task)

  dry, dry_calls = sandbox.run("slurm_gpu.sh", "--dry_run", *USER_ARGS, **env)
  assert dry.returncode == 0, dry.stderr
  assert [c["argv"][0] for c in dry_calls] == ["scontrol"]  # Asked for the hosts, ran nothing.
  assert bash_words(dry.stdout.splitlines()[-1]) == calls[1]["argv"]


def test_multihost_local_starts_two_processes_on_one_coordinator(sandbox):
  # The dry run first: the real run below installs, and later runs would find it installed.
  dry, dry_calls = sandbox.run("multihost_local.sh", "--dry_run", *USER_ARGS, PORT="23456")
  assert dry.returncode == 0, dry.stderr
  assert not main_py_calls(dry_calls)
  assert "[dry run]" in dry.stderr and "pip install" in dry.stderr  # The install it would do.

  proc, calls = sandbox.run("multihost_local.sh", *USER_ARGS, PORT="23456")
  assert proc.returncode == 0, proc.stderr
  install = [c["argv"] for c in calls if c["argv"][1:3] == ["-m", "pip"]]
  assert install == [["python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      "-e", ".[cpu]", "-c", "constraints.txt"]]
  mains = sorted(main_py_calls(calls), key=lambda c: c["argv"][-len(USER_ARGS) - 1])
  assert len(mains) == 2
  for i, call in enumerate(mains):
    assert call["argv"][3:] == [
        "--config=experiments/tiny.py", "--workdir=workdirs/multihost", "--mode=train",
        "--multihost", "--coordinator_address=127.0.0.1:23456", "--num_processes=2",
        f"--process_id={i}", *USER_ARGS]
    assert call["env"]["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert call["env"]["JAX_PLATFORMS"] == "cpu"

  for line, call in zip(dry.stdout.splitlines(), mains, strict=True):  # Printed == run.
    words = bash_words(line)
    assert words[:3] == ["env", "JAX_PLATFORMS=cpu",
                         "XLA_FLAGS=--xla_force_host_platform_device_count=2"]
    assert words[3] == str(sandbox.venv / "bin" / "python")
    assert words[4:] == call["argv"][1:]
