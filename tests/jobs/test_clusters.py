"""``--cluster``: batch job scripts of the dask-jobqueue kinds (``--dry-run``, no batch system
needed), a real existing scheduler and a real local dask-gateway, all through the same executor."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from daskprocs import dask_processes
from eventfiles import make_events, write_events
from gatewayprocs import gateway_available, gateway_server
from typer.testing import CliRunner

from adhunt.clusters import ClusterConfig, load_cluster_config
from adhunt.jobs.cli import app
from adhunt.jobs.executors import ExecutorConfig, executor_from_options
from adhunt.jobs.features import run_features
from adhunt.tables import read_features

runner = CliRunner()

SLURM = {
    "kind": "slurm",
    "cores": 8,
    "memory": "16GB",
    "walltime": "02:00:00",
    "queue": "short",
    "account": "lhc-anomaly",
    "job_extra_directives": ["--constraint=cpu", "--output=logs/%j.out"],
    "job_script_prologue": [
        "source /shared/adhunt/.venv/bin/activate",
        "export OMP_NUM_THREADS=1",
    ],
    "maximum_jobs": 10,
}
KINDS = ["dijet", "soft", "dijet", "monojet", "dijet", "empty", "dijet", "dijet"]


def invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    result.text = " ".join(result.output.split())
    return result


def write_config(path, cluster: dict, section: bool = True):
    path.write_text(yaml.safe_dump({"cluster": cluster} if section else cluster))
    return path


# --- batch job scripts --------------------------------------------------------------------------


def test_slurm_dry_run_script_has_the_configured_resources(tmp_path):
    config = write_config(tmp_path / "analysis.yaml", SLURM)
    r = invoke(["features", tmp_path / "absent.json", "-o", tmp_path / "out",
                "--cluster-config", config, "--dry-run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    script = r.stdout
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for line in ("#SBATCH -p short", "#SBATCH -A lhc-anomaly", "#SBATCH --cpus-per-task=8",
                 "#SBATCH -t 02:00:00", "#SBATCH --constraint=cpu",
                 "#SBATCH --output=logs/%j.out",
                 # 16 GB = 14.9 GiB, rounded up to whole GiB for --mem
                 f"#SBATCH --mem={math.ceil(16e9 / 2**30)}G"):  # fmt: skip
        assert line in lines, (line, script)
    worker = next(i for i, line in enumerate(lines) if "dask_worker" in line)
    for prologue in SLURM["job_script_prologue"]:
        assert prologue in lines[:worker], script  # set up before the worker starts
    # 8 single-threaded workers sharing 16 GB: 2e9 bytes = 1.86 GiB each
    assert "--nworkers 8" in lines[worker] and "--nthreads 1" in lines[worker]
    assert f"--memory-limit {16e9 / 8 / 2**30:.2f}GiB" in lines[worker]
    assert not (tmp_path / "out").exists()  # nothing processed, nothing written


def test_cli_overrides_the_config_file(tmp_path):
    config = write_config(tmp_path / "c.yaml", SLURM, section=False)  # a file of cluster keys
    r = invoke(["scan", "--features", tmp_path / "absent", "-o", tmp_path / "out",
                "--cluster-config", config, "--cores", 4, "--memory", "8GB", "--queue", "long",
                "--walltime", "00:30:00", "--dry-run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    for line in ("#SBATCH -p long", "#SBATCH --cpus-per-task=4", "#SBATCH -t 00:30:00",
                 f"#SBATCH --mem={math.ceil(8e9 / 2**30)}G"):  # fmt: skip
        assert line in lines, (line, r.stdout)
    assert "#SBATCH -p short" not in lines


def test_pbs_and_htcondor_scripts(tmp_path):
    r = invoke(["infer", tmp_path / "absent.json", "-m", tmp_path / "model", "-o", tmp_path / "o",
                "--cluster", "pbs", "--cores", 2, "--memory", "4GB", "--queue", "q1",
                "--walltime", "01:00:00", "--dry-run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "#PBS -q q1" in r.stdout and "#PBS -l walltime=01:00:00" in r.stdout
    assert re.search(r"#PBS -l select=1:ncpus=2:mem=\d+MB", r.stdout), r.stdout
    assert "--nworkers 2" in r.stdout

    config = write_config(
        tmp_path / "condor.yaml",
        {"kind": "htcondor", "cores": 2, "memory": "4GB", "disk": "10GB",
         "job_extra_directives": ["+JobFlavour = \"workday\""],
         "job_script_prologue": ["source /cvmfs/venv/bin/activate"]},
    )  # fmt: skip
    r = invoke(["features", tmp_path / "absent.json", "-o", tmp_path / "o",
                "--cluster-config", config, "--dry-run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert re.search(r"RequestCpus = MY.DaskWorkerCores", r.stdout), r.stdout
    assert "MY.DaskWorkerCores = 2" in r.stdout
    assert '+JobFlavour = "workday"' in r.stdout
    assert "source /cvmfs/venv/bin/activate" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--cluster", "banana"],
            "cluster kind must be one of local, slurm, htcondor, pbs, gateway",
        ),
        (["--cluster", "slurm", "--cores", "4"], "cluster kind 'slurm' needs memory"),
        (["--cluster", "htcondor", "--cores", "2", "--memory", "4GB"], "needs disk"),
        (["--cluster", "gateway"], "cluster kind 'gateway' needs gateway_address"),
        (["--cores", "4"], "--cores needs --cluster or --cluster-config"),
        (["--cluster", "local", "--dry-run"], "--dry-run prints a batch job script"),
        (["--cluster", "slurm", "--cores", "4", "--memory", "lots"], "lots"),
        (
            [
                "--scheduler",
                "tcp://127.0.0.1:1",
                "--cluster",
                "slurm",
                "--cores",
                "1",
                "--memory",
                "1GB",
            ],
            "contradict",
        ),
    ],
)
def test_bad_cluster_settings_give_one_line_errors(tmp_path, args, message):
    # fileset, not needed by --dry-run or when the cluster settings are refused first
    r = invoke(["features", tmp_path / "absent.json", "-o", tmp_path / "o", *args, "--dry-run"])
    assert r.exit_code == 1, r.output
    assert message in r.text
    assert "Traceback" not in r.output


@pytest.mark.skipif(not gateway_available(), reason="pip install 'adhunt[gateway]'")
def test_unreachable_gateway_is_one_line(fileset, tmp_path):
    config = write_config(
        tmp_path / "gw.yaml",
        {"kind": "gateway", "gateway_address": "http://127.0.0.1:1", "gateway_auth": "basic"},
    )
    r = invoke(["features", _fileset_file(fileset, tmp_path / "fs.json"), "-o", tmp_path / "o",
                "--cluster-config", config])  # fmt: skip
    assert r.exit_code == 1
    assert "cannot reach dask-gateway http://127.0.0.1:1" in r.text
    assert "Traceback" not in r.output
    assert not list((tmp_path / "o").glob("*/*.parquet"))


def test_unknown_key_in_the_cluster_section(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"kind": "slurm", "cpus": 4})
    r = invoke(["features", tmp_path / "a.json", "-o", tmp_path / "o", "--cluster-config", config])
    assert r.exit_code == 1
    assert "unknown ClusterConfig option(s): cpus" in r.text


def test_cluster_config_round_trips(tmp_path):
    config = load_cluster_config(write_config(tmp_path / "c.yaml", SLURM))
    assert config == ClusterConfig(**{**SLURM, **{k: tuple(SLURM[k]) for k in
                                                  ("job_extra_directives", "job_script_prologue")}})  # fmt: skip


# --- the same executor for every kind -----------------------------------------------------------


def test_scheduler_is_an_alias_of_a_tcp_cluster():
    address = "tcp://127.0.0.1:8786"
    a = executor_from_options("iterative", None, scheduler=address)
    b = executor_from_options("iterative", None, cluster=address)
    assert a == b == ExecutorConfig("dask", 1, scheduler=address, cluster=ClusterConfig(address))
    assert a.remote and not executor_from_options("dask", None).remote
    local = executor_from_options("iterative", None, cluster="local")
    assert local.executor == "dask" and local.workers >= 1 and not local.remote


@pytest.fixture(scope="module")
def fileset(tmp_path_factory) -> dict[str, list[str]]:
    directory = tmp_path_factory.mktemp("cluster-events")
    return {
        "qcd": [
            str(write_events(directory / f"q{i}.root", make_events(KINDS, seed=30 + i)))
            for i in range(2)
        ],
    }


@pytest.fixture(scope="module")
def reference(fileset, tmp_path_factory):
    out = tmp_path_factory.mktemp("iterative")
    result = run_features(fileset, out, executor="iterative", chunksize=3)
    return result, read_features(out)


def _fileset_file(fileset, path):
    path.write_text(json.dumps(fileset))
    return path


def _check_same(reference, out):
    ref_result, ref_frame = reference
    cutflow = json.loads((out / "cutflow.json").read_text())["cutflow"]
    assert cutflow == ref_result.cutflow
    assert cutflow["qcd"]["events"] == 2 * len(KINDS)
    pd.testing.assert_frame_equal(read_features(out), ref_frame, check_exact=True)


@pytest.mark.timeout(180)
def test_cluster_tcp_address_runs_features_on_a_running_scheduler(fileset, reference, tmp_path):
    with dask_processes(tmp_path, workers=(("A", ()),)) as (address, _):
        out = tmp_path / "out"
        r = invoke(["features", _fileset_file(fileset, tmp_path / "fs.json"), "-o", out,
                    "--cluster", address, "--chunksize", 3])  # fmt: skip
        assert r.exit_code == 0, r.output
    _check_same(reference, out)
    echo = json.loads((out / "features_config.json").read_text())
    assert echo["executor"]["scheduler"] == address
    assert echo["executor"]["cluster"]["kind"] == address


@pytest.mark.timeout(240)
# dask-gateway's Gateway.__del__ touches its stopped event loop (a harmless warning at exit)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.skipif(
    not gateway_available(), reason="pip install 'adhunt[gateway]' dask-gateway-server[local]"
)
def test_features_through_a_real_dask_gateway(fileset, reference, tmp_path):
    with gateway_server(tmp_path / "gateway") as address:
        config = write_config(
            tmp_path / "gateway.yaml",
            {"kind": "gateway", "gateway_address": address, "gateway_auth": "basic",
             "gateway_workers": 2},
        )  # fmt: skip
        out = tmp_path / "out"
        r = invoke(["features", _fileset_file(fileset, tmp_path / "fs.json"), "-o", out,
                    "--cluster-config", config, "--chunksize", 3])  # fmt: skip
        assert r.exit_code == 0, r.output
        log = (tmp_path / "gateway" / "gateway.log").read_text()
    # the run asked the gateway for a cluster with two workers, and shut it down at the end
    assert len(re.findall(r"Created cluster \w+ for user", log)) == 1, log
    assert len(re.findall(r"Submitting worker \w+", log)) == 2, log
    assert re.search(r"Stopping cluster \w+", log), log
    _check_same(reference, out)


SBATCH = """#!/bin/sh
# Stand-in for Slurm's sbatch: run the job script dask-jobqueue wrote, unchanged, as a local
# process group (its id is the job id); scancel kills the group.
cp "$1" "{jobs}/job-$$.sh"
setsid sh "{jobs}/job-$$.sh" > "{jobs}/job-$$.log" 2>&1 < /dev/null &
echo "Submitted batch job $!"
"""
SCANCEL = """#!/bin/sh
for job in "$@"; do kill -TERM -- "-$job" 2>/dev/null; done
exit 0
"""


@pytest.mark.timeout(240)
def test_slurm_job_script_runs_the_same_executor(fileset, reference, tmp_path, monkeypatch):
    """The script ``--dry-run`` prints is what runs: the adaptive SLURMCluster submits it to a
    stand-in ``sbatch`` (no Slurm here) that executes it locally; its workers process the chunks."""
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        (bin_dir / name).write_text(text.format(jobs=jobs))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = write_config(
        tmp_path / "slurm.yaml",
        {"kind": "slurm", "cores": 2, "memory": "2GB", "walltime": "00:10:00",
         "queue": "debug", "interface": "lo", "local_directory": str(tmp_path / "scratch"),
         "job_script_prologue": [f"echo prologue-ran > {jobs}/prologue.txt"],
         "maximum_jobs": 1},
    )  # fmt: skip
    out = tmp_path / "out"
    r = invoke(["features", _fileset_file(fileset, tmp_path / "fs.json"), "-o", out,
                "--cluster-config", config, "--chunksize", 3])  # fmt: skip
    assert r.exit_code == 0, r.output
    scripts = sorted(jobs.glob("job-*.sh"))
    assert scripts, "nothing was submitted"
    text = scripts[0].read_text()
    assert "#SBATCH -p debug" in text and "#SBATCH --cpus-per-task=2" in text
    assert (jobs / "prologue.txt").read_text().strip() == "prologue-ran"
    _check_same(reference, out)
    echo = json.loads((out / "features_config.json").read_text())
    assert echo["executor"]["cluster"]["kind"] == "slurm"


# --- worker environment: the image definitions (no docker/apptainer here: read, not built) ------

ROOT = Path(__file__).resolve().parents[2]


def _project_sources() -> set[str]:
    """What an install of adhunt needs: pyproject.toml, its readme and every package directory."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    return {"pyproject.toml", project["project"]["readme"], *dirs}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_whole_project():
    instructions = _dockerfile_instructions()
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "CMD", "ARG", "LABEL"}
    assert {word for word, _ in instructions} <= known, instructions
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied = set()
    for word, rest in instructions:
        if word == "COPY":
            *sources, _target = rest.split()
            copied.update(s.rstrip("/") for s in sources)
    assert copied == _project_sources()
    assert all((ROOT / s).exists() for s in copied)
    runs = [rest for word, rest in instructions if word == "RUN"]
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    project = next(i for i, r in enumerate(runs) if "--prefer-binary" in r and '".[' in r)
    assert torch < project  # the CPU torch first, so the project install keeps it
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch]
    # the same torch as the development install (Makefile)
    pin = re.search(r"torch==[\w.]+", (ROOT / "Makefile").read_text()).group()
    assert pin in runs[torch]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and not set(ignored) & _project_sources()


def test_apptainer_definition_has_the_same_steps():
    text = (ROOT / "apptainer.def").read_text()
    header, *pairs = re.split(r"^%(\w+)[ \t]*$", text, flags=re.MULTILINE)
    assert header.splitlines()[:2] == ["Bootstrap: docker", "From: python:3.11-slim"]
    sections = dict(zip(pairs[::2], pairs[1::2], strict=True))
    files = {line.split()[0] for line in sections["files"].splitlines() if line.strip()}
    assert files == _project_sources()
    post = sections["post"]
    pin = re.search(r"torch==[\w.]+", (ROOT / "Makefile").read_text()).group()
    assert post.index(pin) < post.index("--prefer-binary")
    assert "download.pytorch.org/whl/cpu" in post


@pytest.mark.timeout(240)
def test_generate_on_a_dask_cluster_writes_the_same_events(tmp_path):
    import awkward as ak

    from adhunt.rootio import read_events

    common = ["generate", "--process", "wprime", "--events", 24, "--seed", 5,
              "--events-per-file", 10, "--batch-size", 6]  # fmt: skip
    r = invoke([*common, "--output", tmp_path / "serial"])
    assert r.exit_code == 0, r.output
    r = invoke([*common, "--output", tmp_path / "dask", "--cluster", "local", "--workers", 2])
    assert r.exit_code == 0, r.output
    serial = sorted((tmp_path / "serial").glob("*.root"))
    dask = sorted((tmp_path / "dask").glob("*.root"))
    assert [p.name for p in serial] == [p.name for p in dask] and len(serial) == 3
    for a, b in zip(serial, dask, strict=True):
        x, y = read_events(a), read_events(b)
        assert ak.to_list(x) == ak.to_list(y)
