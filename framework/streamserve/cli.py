"""The ``streamserve`` command.

    streamserve serve --config FILE [--address HOST:PORT]
    streamserve plugins
    streamserve config check FILE
    streamserve config schema
    streamserve config reference
    streamserve inspect MODEL_DIR
    streamserve new-plugin NAME --dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamserve import __version__
from streamserve.config import ADDRESS_ENV, StreamserveConfig, check_address, load_config
from streamserve.errors import StreamserveError
from streamserve.logs import configure_logging
from streamserve.plugins import DiscoveredPlugin, discover
from streamserve.serving.plugin import not_configured

if TYPE_CHECKING:
    from streamserve.runtime.repository import ServedModel

__all__ = ["main"]

log = logging.getLogger("streamserve")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # TensorFlow's C++ log is quiet unless asked for (TF_CPP_MIN_LOG_LEVEL=0 brings it back): on a
    # machine without a GPU it reports "failed call to cuInit: CUDA error" as an error, which it is
    # not for a CPU server; real failures reach us as Python exceptions. Read at TF's import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        code: int = args.run(args)
        return code
    except StreamserveError as exc:
        print(f"streamserve: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamserve", description="A pluggable gRPC model server for streaming data."
    )
    parser.add_argument("--version", action="version", version=f"streamserve {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve every enabled plugin")
    serve.add_argument("--config", type=Path, required=True, help="the YAML config file")
    serve.add_argument(
        "--address", help=f"HOST:PORT to listen on; overrides the config and ${ADDRESS_ENV}"
    )
    serve.add_argument(
        "--ready-file", type=Path, metavar="PATH",
        help="once the models are loaded, write one JSON line here: the address and what is "
        "SERVING (for scripts and tests; see streamserve.testing.serve_subprocess)",
    )
    serve.set_defaults(run=_serve)

    plugins = commands.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument(
        "--config", type=Path,
        help="also say, for this config, whether each plugin is enabled and whether its model "
        "loads (loads every model: slow)",
    )
    plugins.set_defaults(run=_plugins)

    inspect = commands.add_parser(
        "inspect", help="a SavedModel's signatures, and the Signature(...) a plugin declares for it")
    inspect.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                         help="a SavedModel directory, or a folder of numbered versions")
    inspect.set_defaults(run=_inspect)

    new_plugin = commands.add_parser(
        "new-plugin", help="write a complete, working plugin package to start from")
    new_plugin.add_argument("name", help="the plugin's name (a Python identifier, e.g. forecast)")
    new_plugin.add_argument("--dir", type=Path, required=True,
                            help="where to write it (must not exist, or be empty)")
    new_plugin.set_defaults(run=_new_plugin)

    config = commands.add_parser("config", help="check a config file, or print its JSON Schema")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check", help="will `serve` start? every problem of a config file and its plugins, at once")
    check.add_argument("file", type=Path)
    check.add_argument("--models", action="store_true",
                       help="also load each model and check its signature, as `serve` does (slow)")
    check.set_defaults(run=_config_check)
    schema = config_commands.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(run=_config_schema)
    reference = config_commands.add_parser("reference", help="print the config reference (Markdown)")
    reference.set_defaults(run=_config_reference)
    return parser


def _load(path: Path, address: str | None = None) -> StreamserveConfig:
    config = load_config(path)
    if address is not None:
        try:
            check_address(address)
        except ValueError as exc:
            raise StreamserveError(f"--address: {exc}") from exc
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"address": address})}
        )
    return config


def _one_blas_thread() -> None:
    """Keep NumPy's BLAS on the calling thread in the server.

    OpenBLAS starts a thread per core for a plugin's matrix products, on the cores the server's
    own threads and TensorFlow's pools already use; on a busy machine a product of a few hundred
    rows then waits milliseconds for a thread that is not scheduled (measured: 52 µs at best, 16 ms
    on average for a 170 x 8 x 1,024 product while the machine was loaded). The server runs calls
    in parallel already, so one thread each is what serves them best.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``server.event_loop`` asks for (None: asyncio's own)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":  # checked with the config already; installed since then?
            raise
        return None
    return uvloop.new_event_loop


def _serve(args: argparse.Namespace) -> int:
    config = _load(args.config, args.address)
    configure_logging(config.log_level, config.log_format)
    _one_blas_thread()
    discovered = discover()
    with asyncio.Runner(loop_factory=_loop_factory(config.server.event_loop)) as runner:
        code = runner.run(_run_server(config, discovered, str(args.config), args.ready_file))
    # Everything is answered and closed. Skip the interpreter's teardown: unloading TensorFlow's
    # modules and threads takes seconds, which orchestrators count against the shutdown grace.
    # A model load abandoned in the middle of importing TensorFlow may still hold stderr: our last
    # log lines are in its capture, so take it back first.
    from streamserve.runtime.tfimport import release_stderr

    release_stderr()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run_server(
    config: StreamserveConfig, discovered: list[DiscoveredPlugin], source: str,
    ready_file: Path | None = None,
) -> int:
    from streamserve.serving import Server  # grpc server pieces; not needed by other commands
    from streamserve.serving.ready import ready_line, write_ready_file

    loop = asyncio.get_running_loop()
    log.info("event loop: %s", type(loop).__module__.split(".")[0])  # uvloop or asyncio
    server = Server(config, discovered, source=source)
    if ready_file is not None:  # a file left by an earlier run must not say this one is ready
        ready_file.unlink(missing_ok=True)

    async def load() -> None:
        await server.load_models()
        log.info("%s", ready_line(server))
        if ready_file is not None:
            write_ready_file(ready_file, server)

    try:
        await server.start()
    except StreamserveError as exc:  # an address in use, say: one line, nothing left listening
        log.error("start-up failed: %s", exc)
        return 1
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        log.info("SIGHUP: looking for new model versions")
        task = loop.create_task(server.reload_models())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    loading = asyncio.create_task(load())
    stop_wait = asyncio.create_task(stopping.wait())
    await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.exception() is not None:
        error = loading.exception()
        log.error("start-up failed: %s", error, exc_info=not isinstance(error, StreamserveError))
        stop_wait.cancel()
        await server.stop(0)
        return 1
    await stop_wait
    grace = config.server.shutdown_grace_seconds
    log.info("stopping: health is NOT_SERVING, new calls are refused, open calls have %g s", grace)
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    loading.cancel()
    await server.stop(grace)
    log.info("stopped")
    return 0


def _plugins(args: argparse.Namespace) -> int:
    found = discover()
    rows: list[dict[str, Any]] = [
        {
            "name": d.spec.name,
            "distribution": d.distribution,
            "version": d.version,
            "service": d.spec.service.full_name,
            "methods": [_describe_method(m) for m in d.spec.service.methods],
        }
        for d in found
    ]
    config = StreamserveConfig() if args.config is None else _load(args.config)
    for row, plugin in zip(rows, found, strict=True):
        row["status"] = not_configured(plugin.spec, config) or (
            "enabled" if config.plugin(plugin.spec.name).enabled else "disabled in the config")
    if args.config is not None:
        models = _model_status(config, found, str(args.config))
        for row in rows:
            row["model"] = models.get(row["name"], {"enabled": False})
    failed = [row["name"] for row in rows if row.get("model", {}).get("error")]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        if not rows:
            print("no plugins installed (entry-point group streamserve.plugins)")
        for row in rows:
            print(f"{row['name']}  ({row['distribution']} {row['version']})")
            print(f"  service  {row['service']}")
            for method in row["methods"]:
                print(f"  method   {method}")
            print(f"  status   {row['status']}")
            if "model" in row and row["status"] == "enabled":
                print(f"  model    {_describe_model(row['model'])}")
    if failed:  # `serve` would not start: say so in the exit code too, for scripts and CI
        print(f"streamserve: {', '.join(failed)}: model fails to load", file=sys.stderr)
        return 1
    return 0


def _model_status(
    config: StreamserveConfig, found: list[DiscoveredPlugin], source: str
) -> dict[str, dict[str, Any]]:
    """Load each enabled plugin's model as the server would, and say how that went."""
    from streamserve.serving import Server

    status: dict[str, dict[str, Any]] = {}
    server = Server(config, found, source=source)
    for plugin in server.plugins:
        if plugin.model is None:
            status[plugin.spec.name] = {
                "enabled": True, "repository": server.repository.names(),
                "models": {name: _load_status(served)
                           for name, served in server.repository.public.items()},
            }
            continue
        status[plugin.spec.name] = {"enabled": True, **_load_status(plugin.model)}
    return status


def _load_status(served: ServedModel) -> dict[str, Any]:
    """Load one model as the server would: where from, and how it is called (or why it fails)."""
    try:
        model = served.load()
    except StreamserveError as exc:
        return {"error": str(exc)}
    return {"path": str(model.path), "version": model.version, "error": None,
            "runner": model.runner, "runner_reason": model.runner_reason}


def _describe_model(model: dict[str, Any]) -> str:
    if not model["enabled"]:
        return "disabled in the config"
    if "repository" in model:
        names = model["repository"]
        lines = [f"the model repository ({', '.join(names) if names else 'no models'})"]
        lines += [f"    {name}: {_describe_model({'enabled': True, **one})}"
                  for name, one in model.get("models", {}).items()]
        return "\n".join(lines)
    if model["error"]:
        return f"FAILS TO LOAD: {model['error']}"
    runner = ("a TF session" if model["runner"] == "session"
              else f"its tf.function, not a TF session: {model['runner_reason']}")
    return f"ok, version {model['version'] or '-'} ({model['path']}), called through {runner}"


def _describe_method(method: object) -> str:
    from google.protobuf.descriptor import MethodDescriptor

    assert isinstance(method, MethodDescriptor)
    request = ("stream " if method.client_streaming else "") + method.input_type.full_name
    response = ("stream " if method.server_streaming else "") + method.output_type.full_name
    return f"{method.name}({request}) returns ({response})"


def _config_check(args: argparse.Namespace) -> int:
    from streamserve.checks import check_config

    checked = check_config(args.file, discover(), models=args.models)
    for problem in sorted(checked.problems, key=lambda p: p.line or 0):  # in file order
        print(problem, file=sys.stderr)
    if checked.problems:
        count = len(checked.problems)
        print(f"streamserve: {count} problem{'s' if count > 1 else ''}: `serve` would not start",
              file=sys.stderr)
        return 2
    assert checked.config is not None
    print(f"{args.file}: OK; serves {', '.join(checked.served) or 'nothing'}"
          f" on {checked.config.server.address}")
    for name, reason in checked.not_configured.items():
        print(f"  {name}: {reason}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from streamserve.inspect_model import describe

    print(describe(args.model_dir))
    return 0


def _new_plugin(args: argparse.Namespace) -> int:
    from streamserve.scaffold import write_plugin

    written = write_plugin(args.name, args.dir)
    print(f"wrote plugin {args.name!r} to {args.dir} ({len(written)} files); next:")
    print(f"  cd {args.dir} && cat README.md")
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(StreamserveConfig.model_json_schema(), indent=2))
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from streamserve.config_reference import reference

    print(reference(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
