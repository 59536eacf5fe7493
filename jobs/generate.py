"""``adhunt generate``: Pythia 8 QCD dijets or W' -> X Y events to NanoAOD-like ROOT files + fileset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adhunt.jobs.options import (
    ClusterConfigOption,
    ClusterOption,
    CoresOption,
    DryRunOption,
    MaxJobsOption,
    MemoryOption,
    OverwriteOption,
    QueueOption,
    RestartOption,
    WalltimeOption,
    checked_output,
)


def generate(
    process: Annotated[
        str,
        typer.Option("--process", "-p", help="qcd (QCD dijets) or wprime (W' -> X Y -> (qq)(qq))."),
    ],
    events: Annotated[
        int, typer.Option("--events", "-n", help="Events to WRITE, i.e. after the trigger.")
    ],
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Master seed; output depends only on it + options.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output directory (ROOT files + fileset.json).")
    ],
    workers: Annotated[
        int,
        typer.Option("--workers", "-j", help="Worker processes (output identical for any number)."),
    ] = 1,
    cluster: ClusterOption = None,
    cluster_config: ClusterConfigOption = None,
    cores: CoresOption = None,
    memory: MemoryOption = None,
    walltime: WalltimeOption = None,
    queue: QueueOption = None,
    max_jobs: MaxJobsOption = None,
    dry_run: DryRunOption = False,
    m_wprime: Annotated[float, typer.Option("--m-wprime", help="W' mass [GeV].")] = 3500.0,
    m_x: Annotated[float, typer.Option("--m-x", help="X mass [GeV] (X -> qq).")] = 500.0,
    m_y: Annotated[float, typer.Option("--m-y", help="Y mass [GeV] (Y -> qq).")] = 100.0,
    pthat_min: Annotated[
        float, typer.Option("--pthat-min", help="QCD PhaseSpace:pTHatMin [GeV].")
    ] = 1000.0,
    sqrt_s: Annotated[
        float, typer.Option("--sqrt-s", help="Centre-of-mass energy [GeV].")
    ] = 13000.0,
    mpi: Annotated[
        bool, typer.Option("--mpi/--no-mpi", help="Multi-parton interactions (on: ~3x slower).")
    ] = False,
    detector: Annotated[
        bool,
        typer.Option("--detector/--no-detector", help="Detector response (off: particle level)."),
    ] = True,
    events_per_file: Annotated[
        int, typer.Option("--events-per-file", help="Events per ROOT file.")
    ] = 50_000,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Events per unit of work (fixes the seeds).")
    ] = 1000,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Dataset name in the fileset (default: the process)."),
    ] = None,
    detector_config: Annotated[
        Path | None,
        typer.Option("--detector-config", help="YAML/TOML file with DetectorConfig fields."),
    ] = None,
    overwrite: OverwriteOption = False,
    restart: RestartOption = False,
) -> None:
    """Generate triggered events with Pythia 8 into ROOT files and a coffea fileset JSON."""
    checked_output(output, command="generate", overwrite=overwrite)
    import contextlib
    import dataclasses
    import logging

    from adhunt.config import load_config
    from adhunt.detector import DetectorConfig
    from adhunt.generation import FILESET_NAME, GenerationConfig, generate_to_root
    from adhunt.jobs.executors import executor_from_options, print_job_script, task_pool
    from adhunt.jobs.reporting import progress_bar

    log = logging.getLogger("adhunt.generate")
    try:
        if detector_config is not None:
            det = load_config(DetectorConfig, detector_config)
        else:
            det = DetectorConfig()
        if not detector:
            det = dataclasses.replace(det, enabled=False)
        config = GenerationConfig(
            process=process,
            n_events=events,
            seed=seed,
            sqrt_s=sqrt_s,
            pthat_min=pthat_min,
            m_wprime=m_wprime,
            m_x=m_x,
            m_y=m_y,
            mpi=mpi,
            detector=det,
            events_per_file=events_per_file,
            batch_size=batch_size,
        )
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err

    exe = None
    if cluster is not None or cluster_config is not None or dry_run:
        try:  # batches as dask tasks, on the cluster's workers (Pythia must be installed there)
            exe = executor_from_options(
                "dask", workers, cluster=cluster, cluster_config=cluster_config, cores=cores,
                memory=memory, walltime=walltime, queue=queue, maximum_jobs=max_jobs,
            )  # fmt: skip
            if dry_run:
                print_job_script(exe)
                return
        except (ValueError, FileNotFoundError, ImportError) as err:
            log.error("%s", err)
            raise typer.Exit(code=1) from err

    try:
        with (
            progress_bar() as progress,
            task_pool(exe) if exe is not None else contextlib.nullcontext() as pool,
        ):
            task = progress.add_task(f"{process} events", total=events)
            paths = generate_to_root(
                config,
                output,
                workers=workers if pool is None else max(workers, pool.parallel),
                progress_callback=lambda n: progress.advance(task, n),
                dataset=dataset,
                mapper=None if pool is None else pool.map,
                restart=restart,
            )
    except ConnectionError as err:
        log.error("%s", err)
        raise typer.Exit(code=1) from err
    except KeyboardInterrupt as err:
        log.error(
            "interrupted: the finished files are kept in %s; run the same command again to "
            "resume (--restart starts over)",
            output,
        )
        raise typer.Exit(code=130) from err
    log.info(
        "%d %s events in %d file(s); fileset %s", events, process, len(paths), output / FILESET_NAME
    )
