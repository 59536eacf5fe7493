"""Run records for every command, and ``adhunt rerun OUTPUT`` that repeats one.

:func:`recorded` wraps each command where ``adhunt.jobs.cli`` registers it: after the command
succeeds it writes :class:`adhunt.runrecord.RunRecord` (the options exactly as the command
received them, after the analysis file and the command line were merged) into or next to its
``--output``. A failed command writes none, so an earlier good record is never replaced.

``rerun`` reads a record and calls the same command with the same options, each given
explicitly on a command line built from the command's own parameters, so it takes the very path
a user's command takes (and writes its own record, naming what it repeated).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

logger = logging.getLogger("adhunt.jobs")

#: Options that name a configuration file: their content goes into the record.
CONFIG_OPTIONS = ("config", "cluster_config", "detector_config", "method_config")
#: Exit codes of a run that finished (sculpting's 1 means "the cut sculpts": a result).
SUCCESS_CODES: dict[str, tuple[int, ...]] = {"sculpting": (0, 1)}
#: Commands that cannot be rerun from a record (they write none).
NOT_RECORDED = ("rerun",)


class _RunContext:
    """What the current invocation adds to a record: the analysis file (set by the root
    callback) and, during ``rerun``, the output being repeated."""

    analysis_file: str | None = None
    analysis: dict[str, Any] | None = None
    rerun_of: str | None = None
    inline_dir: str | None = None  # where the inline configurations were written

    @classmethod
    def reset(cls) -> None:
        cls.analysis_file = cls.analysis = cls.rerun_of = cls.inline_dir = None


def set_analysis(
    path: str | Path | None, content: Mapping[str, Any] | None, inline_dir: str | None = None
) -> None:
    """Record ``content`` (the resolved analysis file at ``path``, its inline configurations
    written into ``inline_dir``) in this invocation's records."""
    _RunContext.reset()
    _RunContext.analysis_file = None if path is None else str(Path(path).absolute())
    _RunContext.analysis = None if content is None else dict(content)
    _RunContext.inline_dir = inline_dir


def recorded(command: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a typer command) writing a run record after it succeeds.

    ``functools.wraps`` keeps the signature, so typer builds the same options from it.
    """
    from adhunt.runrecord import utc_now

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from adhunt.jobs.analysis import fill_method_config

        started = utc_now()
        with tempfile.TemporaryDirectory(prefix="adhunt-methods-") as tmp:
            kwargs = fill_method_config(command, kwargs, _RunContext.analysis, Path(tmp))
            try:
                result = func(**kwargs)
            except typer.Exit as done:
                if done.exit_code in SUCCESS_CODES.get(command, (0,)):
                    _write(command, kwargs, started, tmp)
                raise
            _write(command, kwargs, started, tmp)  # while inline configurations still exist
        return result

    return wrapper


def _write(command: str, options: Mapping[str, Any], started: str, methods_dir: str) -> None:
    from adhunt.runrecord import make_record, write_record

    output = options.get("output")
    if output is None or options.get("dry_run"):
        return  # a dry run only prints a job script
    record = make_record(
        command, options, started=started,
        config_options=tuple(n for n in CONFIG_OPTIONS if n in options),
        inline_dirs=tuple(d for d in (_RunContext.inline_dir, methods_dir) if d),
        analysis_file=_RunContext.analysis_file, analysis=_RunContext.analysis,
        rerun_of=_RunContext.rerun_of,
    )  # fmt: skip
    try:
        path = write_record(record, output)
    except OSError as err:  # the output itself is written; say that its record is missing
        logger.warning("could not write the run record of %s: %s", output, err)
        return
    if path is not None:
        logger.debug("run record: %s", path)


# --------------------------------------------------------------------------------------------
# adhunt rerun
# --------------------------------------------------------------------------------------------


def command_line(command: Any, options: Mapping[str, Any], *, source: str = "record") -> list[str]:
    """The arguments that give ``command`` (a click command) exactly ``options``.

    Every recorded option is given explicitly (flags by their on/off name), so nothing depends on
    defaults or an analysis file; positional arguments follow ``--``. An option the command does
    not have is an error naming it (a record of another command or another adhunt).
    """
    params = {p.name: p for p in command.params}
    unknown = sorted(set(options) - set(params))
    if unknown:
        names = ", ".join("--" + n.replace("_", "-") for n in unknown)
        raise ValueError(f"{source}: {names} not option(s) of adhunt {command.name}")
    opts: list[str] = []
    positional: list[str] = []
    for name, param in params.items():
        if name not in options:
            continue
        value = options[name]
        if param.param_type_name == "argument":
            if value is None:
                continue
            positional.extend(map(_text, value) if isinstance(value, list) else [_text(value)])
            continue
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            if value:
                opts.append(param.opts[0])
            elif param.secondary_opts:
                opts.append(param.secondary_opts[0])
            continue
        if value is None:
            continue
        values = value if isinstance(value, list) and param.multiple else [value]
        for item in values:
            if isinstance(item, list):  # nargs > 1
                opts.extend([param.opts[0], *map(_text, item)])
            else:
                opts.extend([param.opts[0], _text(item)])
    return [*opts, "--", *positional] if positional else opts


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@contextlib.contextmanager
def _recorded_configs(record: Any) -> Iterator[tuple[dict[str, str], str]]:
    """Paths of the configuration files as recorded: the recorded file when it still holds the
    recorded content, else a temporary copy of that content (an inline analysis section, or a
    file edited since the run)."""
    import yaml

    from adhunt.runrecord import read_config_file

    replaced: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="adhunt-rerun-") as tmp:
        for name, entry in record.config_files.items():
            path, content = entry.get("path"), entry.get("content")
            if content is None or read_config_file(path) == content:
                continue
            copy = Path(tmp) / f"{name}.yaml"
            copy.write_text(yaml.safe_dump(content, sort_keys=False))
            if entry.get("inline"):  # an inline configuration of the analysis file
                logger.debug("rerun: --%s from the recorded inline configuration", name)
            else:
                logger.warning(
                    "rerun: --%s %s %s since the run; using the content recorded with it",
                    name.replace("_", "-"), path,
                    "changed" if Path(path).exists() else "is gone",
                )  # fmt: skip
            replaced[name] = str(copy)
        yield replaced, tmp


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    before = os.getcwd()
    if Path(path).is_dir():
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_again(
    output: Path, new_output: Path | None = None, overwrite: bool = False, root: Any = None
) -> int:
    """Repeat the run recorded in ``output`` into ``new_output`` (or ``output`` itself with
    ``overwrite``); returns the command's exit code. ``root``: the click group of adhunt."""
    from adhunt.runrecord import current_environment, read_record

    record = read_record(output)
    command = root.commands.get(record.command) if record.command not in NOT_RECORDED else None
    if command is None:
        raise ValueError(
            f"run record of {output} names command {record.command!r}, which adhunt cannot rerun"
        )
    if new_output is None and not overwrite:
        raise ValueError(
            f"rerun would write into {output} itself: give --output NEW, or --overwrite to "
            "replace it"
        )
    for line in record.environment.differences(current_environment()):
        logger.warning("rerun: %s", line)
    options = dict(record.options)
    if "output" not in options:
        raise ValueError(f"run record of {output} has no output option")
    target = Path(new_output if new_output is not None else output).absolute()
    options["output"] = str(target)
    if overwrite and "overwrite" in options:
        options["overwrite"] = True
    if new_output is None and "restart" in options:
        options["restart"] = True  # repeat the run, do not resume it (features, infer, generate)
    if options.get("retry_failed"):
        # A record of a --retry-failed run describes the whole output (first run + retries):
        # repeating it is one full run, not a retry of a summary the new output does not have.
        options["retry_failed"] = False
    with _recorded_configs(record) as (replaced, copies):
        options.update(replaced)
        argv = command_line(command, options, source=f"run record of {output}")
        logger.info("rerun: adhunt %s into %s", record.command, target)
        _RunContext.analysis_file = record.analysis_file
        _RunContext.analysis = record.analysis
        _RunContext.rerun_of = str(Path(output).absolute())
        _RunContext.inline_dir = copies  # recorded content, as inline as the analysis file's
        try:
            with _working_directory(record.cwd):
                code = command.main(
                    args=argv, prog_name=f"adhunt {record.command}", standalone_mode=False
                )
        finally:
            _RunContext.reset()
    return int(code or 0)


def rerun(
    output: Annotated[
        Path, typer.Argument(help="Output (directory or file) of an earlier adhunt command.")
    ],
    new_output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the repeated run (default: OUTPUT)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Allow writing into OUTPUT itself, or into a non-empty --output directory.",
        ),
    ] = False,
) -> None:
    """Repeat the command that wrote OUTPUT with the options in its run record (adhunt_run.json)."""
    from adhunt.jobs.cli import app
    from adhunt.runrecord import RunRecordError

    try:
        code = run_again(output, new_output, overwrite, root=typer.main.get_command(app))
    except (RunRecordError, ValueError) as err:
        logger.error("%s", err)
        raise typer.Exit(code=1) from None
    except typer.TyperException as err:  # click's usage errors: a bad value in the record
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        logger.error("run record of %s: %s", output, message)
        raise typer.Exit(code=1) from None
    if code:
        raise typer.Exit(code=code)
