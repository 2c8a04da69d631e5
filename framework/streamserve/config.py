"""The server's configuration: one YAML file, validated by pydantic.

Unknown keys are errors (a typo must not silently fall back to a default), and every error names the
file and the key path. Each plugin's own ``settings:`` are validated later by that plugin's model,
once the plugin is discovered (:func:`plugin_settings`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamserve.errors import ConfigError

__all__ = [
    "ADDRESS_ENV",
    "BatchingConfig",
    "PluginConfig",
    "RepositoryConfig",
    "RepositoryModelConfig",
    "ServerConfig",
    "StreamserveConfig",
    "load_config",
    "parse_config",
    "plugin_settings",
]

ADDRESS_ENV = "STREAMSERVE_ADDRESS"
"""Environment variable that overrides ``server.address`` (``HOST:PORT``)."""

MiB = 1024 * 1024
_T = TypeVar("_T", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def check_address(value: str) -> str:
    """``HOST:PORT`` with a port in 0..65535 (0 picks a free port); IPv6 hosts in brackets."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (for example 0.0.0.0:50051), got {value!r}")
    return value


class KeepaliveConfig(_Strict):
    """HTTP/2 keepalive: the server pings idle connections, and limits how often clients may ping."""

    time_seconds: Annotated[float, Field(gt=0)] = 60.0
    """The server pings a connection that has been quiet this long."""
    timeout_seconds: Annotated[float, Field(gt=0)] = 20.0
    """A ping unanswered this long closes the connection."""
    min_client_ping_interval_seconds: Annotated[float, Field(gt=0)] = 10.0
    """Clients pinging more often than this are sent GOAWAY (ENHANCE_YOUR_CALM)."""
    permit_without_calls: bool = True
    """Allow client pings on connections with no open call."""


class TLSConfig(_Strict):
    """Certificates for TLS and mutual TLS. Paths relative to the config file."""

    cert_file: Path
    """The server's certificate chain (PEM)."""
    key_file: Path
    """The server's private key (PEM)."""
    client_ca_file: Path | None = None
    """CA bundle (PEM) that client certificates must chain to."""
    require_client_cert: bool = False
    """Refuse clients without a certificate signed by client_ca_file (mutual TLS)."""


class AuthConfig(_Strict):
    """Bearer tokens (``authorization: Bearer <token>`` metadata) for plugin services."""

    tokens_file: Path | None = None
    """A file with one accepted token per line (blank lines and # comments ignored)."""
    tokens_env: str | None = None
    """The name of an environment variable holding accepted tokens, comma-separated."""
    protect_reflection: bool = False
    """Also require a token for server reflection. Health is always open."""


class MetricsConfig(_Strict):
    """The Prometheus endpoint."""

    address: str | None = None
    """``HOST:PORT`` for ``/metrics`` over HTTP, for example 0.0.0.0:9090. Null: no endpoint."""

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)


class ServerConfig(_Strict):
    """The gRPC server shared by every plugin."""

    address: str = "0.0.0.0:50051"
    """Where to listen, ``HOST:PORT``. Overridden by the STREAMSERVE_ADDRESS environment variable."""
    max_receive_message_bytes: Annotated[int, Field(gt=0)] = 4 * MiB
    """Largest request message accepted; bigger ones fail with RESOURCE_EXHAUSTED."""
    max_send_message_bytes: Annotated[int, Field(gt=0)] = 4 * MiB
    """Largest response message sent."""
    reflection: bool = True
    """Serve gRPC server reflection, so grpcurl and other tools can discover the services."""
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 10.0
    """On SIGTERM/SIGINT: health turns NOT_SERVING and new calls are refused at once; open calls may
    go on for this long, then get UNAVAILABLE (after every message already received is answered)."""
    max_concurrent_streams: Annotated[int, Field(ge=1)] = 10000
    """Calls open at once across all plugin services; more fail with RESOURCE_EXHAUSTED."""
    stream_idle_timeout_seconds: Annotated[float, Field(gt=0)] | None = 600.0
    """A stream that sends nothing for this long is ended with DEADLINE_EXCEEDED. Null: never."""
    max_connection_age_seconds: Annotated[float, Field(gt=0)] | None = None
    """Ask clients to reconnect after this long (GOAWAY), so load balancers can rebalance long-lived
    streams. Null: connections live as long as the client wants."""
    max_connection_age_grace_seconds: Annotated[float, Field(ge=0)] | None = None
    """After max_connection_age, how long open calls may go on before the connection is closed."""
    keepalive: KeepaliveConfig = KeepaliveConfig()
    """HTTP/2 keepalive pings, both ways."""
    health_address: str | None = None
    """An extra plaintext port serving only grpc.health.v1 (for kubelet gRPC probes, which cannot do
    TLS), ``HOST:PORT``. Null: no such port."""
    reuse_port: bool = False
    """Let other processes listen on the same address and port (SO_REUSEPORT: the kernel spreads
    new connections over them). Off: a server whose address is taken refuses to start."""
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The event loop the server runs on. ``auto``: uvloop where it is installed (a dependency on
    Linux and macOS: its scheduling is compiled, asyncio's is Python; measured 3-6 % more messages
    per second at 64 streams), else asyncio's own. ``uvloop`` or ``asyncio``: that one (uvloop is
    refused here if it is not installed)."""
    tls: TLSConfig | None = None
    """Serve TLS (and optionally require client certificates) on ``address``. Null: plaintext."""
    auth: AuthConfig | None = None
    """Require a bearer token on plugin services. Null: no authentication."""

    @field_validator("address", "health_address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @field_validator("event_loop")
    @classmethod
    def _installed_loop(cls, value: str) -> str:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed (pip install uvloop); or use auto or asyncio")
        return value


class BatchingConfig(_Strict):
    """How rows from concurrent calls are combined into one model call."""

    max_batch_size: Annotated[int, Field(ge=1)] = 8192
    """Most rows in one model call. 1 turns batching off. A model call has a fixed cost of a few
    hundred microseconds, so large batches (chunks of many streams in one call) pay off."""
    max_delay_ms: Annotated[float, Field(ge=0)] = 0.0
    """How long a batch may wait for more rows once its first row arrived. 0 means rows never wait:
    an idle model takes a lone row at once, and rows that arrive while it runs form the next batch.
    Streams in lock-step lose from a delay (each batch waits the whole window); a stream alone never
    waits. Concurrent unary callers need none: ``unary_window_ms`` batches them when they come."""
    unary_window_ms: Annotated[float, Field(ge=0)] = 2.0
    """How long a unary call waits for others to share its model call, while unary calls come
    concurrently. gRPC hands a server its calls one at a time, so each would otherwise run alone;
    the server notices concurrent callers (two unary calls in one batch, or in a probe of this
    window every 0.5 s) and from then on lets their rows wait this long, until a second passes with
    no two together. A lone caller never waits, but for one call in each probe. 0: unary calls
    run at once when the model is idle."""
    max_queued_rows: Annotated[int, Field(ge=1)] = 32768
    """Rows waiting for the model, across all calls. When full, calls stop reading their streams,
    so gRPC flow control slows the clients down instead of the server buffering without bound (a
    call with nothing queued may still queue one message of up to one turn)."""
    max_rows_per_call_turn: Annotated[int, Field(ge=1)] = 4096
    """Most rows of one call in one model call. A message with more rows (a big chunk) is fed to
    the model in pieces of this size, taking turns with the other calls, so other calls wait for
    one piece, not for the whole message."""
    max_rows_per_message: Annotated[int, Field(ge=1)] = 100_000
    """Most rows one request message may carry (points of a chunk, a protocol request's batch); a
    bigger one is refused with INVALID_ARGUMENT naming this limit, before any model work. Its
    response must also fit ``server.max_send_message_bytes``."""


class PluginConfig(_Strict):
    """One plugin's section under ``plugins:``, keyed by the plugin's name."""

    enabled: bool = True
    """Serve this plugin. Installed plugins are enabled unless their section says otherwise; a
    model plugin without a default model needs a section naming its model (installed is not
    configured: without one it is left out, with a log line saying what to add)."""
    model_path: Path | None = None
    """The SavedModel directory, or a directory of numbered versions (the highest is served).
    Relative paths are relative to the config file. Empty: the plugin's default model."""
    signature: str | None = None
    """The signature to serve; empty: the one the plugin declares (usually serving_default)."""
    batching: BatchingConfig = BatchingConfig()
    """Batching of this plugin's model calls."""
    model_poll_seconds: Annotated[float, Field(gt=0)] | None = 30.0
    """How often to look for a new numbered version under model_path (SIGHUP also triggers a look).
    A new version is loaded, checked and warmed off the serving path, then swapped in between
    batches. Null: never poll (SIGHUP still works)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The plugin's own settings, validated by the plugin (see its documentation)."""


class RepositoryModelConfig(_Strict):
    """One model of the repository named in the YAML (instead of, or besides, a folder of models)."""

    path: Path | None = None
    """A SavedModel directory, or a directory of numbered versions (the highest is served)."""
    plugin: str | None = None
    """Instead of a path: the model that this model plugin serves (for example ``anomaly``), shared
    with it: loaded once, one batcher for the plugin's own service and every protocol."""
    signature: str = "serving_default"
    """The SavedModel signature to serve."""
    batching: BatchingConfig | None = None
    """Batching of this model's calls. Empty: ``model_repository.batching``."""

    @model_validator(mode="after")
    def _one_source(self) -> RepositoryModelConfig:
        if (self.path is None) == (self.plugin is None):
            raise ValueError("give exactly one of path (a SavedModel directory) or plugin "
                             "(the model that plugin serves)")
        return self


class RepositoryConfig(_Strict):
    """The model repository: models served by name through the protocol plugins (Open Inference
    Protocol, TF Serving's API), each with its own batching, signature check, readiness and reload."""

    path: Path | None = None
    """A folder of models, each ``<name>/<version>/`` a SavedModel (``<name>/`` itself may be the
    SavedModel). Relative to the config file. Null: only the models listed under ``models``."""
    models: dict[str, RepositoryModelConfig] = Field(default_factory=dict)
    """Models by name, besides (or overriding) those found under ``path``. A model plugin's name
    (``anomaly``) names its model: here only ``anomaly: {plugin: anomaly}`` may use it, and a folder
    of that name under ``path`` is refused."""
    batching: BatchingConfig = BatchingConfig()
    """Batching of each repository model's calls, unless the model sets its own."""
    poll_seconds: Annotated[float, Field(gt=0)] | None = 30.0
    """How often to look for new versions and new model folders (SIGHUP also triggers a look).
    Null: never poll."""


class TensorflowConfig(_Strict):
    """How TensorFlow runs every model of the server: its thread pools and kernels (TF has one set
    per process)."""

    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    """Threads one operation (a large matrix product) may be split over. 0: TensorFlow's choice, one
    per core it sees. In a container TF still sees every core of the node, whatever the pod's CPU
    request or limit: set that number here."""
    inter_op_threads: Annotated[int, Field(ge=0)] = 0
    """Operations of one model call that may run at once. 0: TensorFlow's choice."""
    onednn: bool | None = None
    """TensorFlow's oneDNN kernels (what ``TF_ENABLE_ONEDNN_OPTS`` sets). Unset: that variable if
    the environment has it, else TensorFlow's default (on, on x86 Linux). ``false`` suits small
    models: a call of a few small dense layers costs 0.4-0.8x the CPU without them, while large
    matrix products and convolutions over a batch cost 1.1-1.6x as much (docs/performance.md).
    Time your own model both ways: ``python -m benchmarks.kernels MODEL_DIR``. Fixed when TensorFlow
    is first imported."""


class StreamserveConfig(_Strict):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    """The gRPC server."""
    plugins: dict[str, PluginConfig] = Field(default_factory=dict)
    """Per-plugin sections, keyed by plugin name (see ``streamserve plugins``)."""
    log_level: str = "INFO"
    """Python logging level name: DEBUG, INFO, WARNING, ERROR."""
    log_format: Literal["text", "json"] = "text"
    """``text`` for people, ``json`` (one object per line) for log collectors."""
    metrics: MetricsConfig = MetricsConfig()
    """The Prometheus metrics endpoint."""
    model_repository: RepositoryConfig = RepositoryConfig()
    """Models served by name through protocol plugins (OIP, TF Serving). Empty by default."""
    tensorflow: TensorflowConfig = TensorflowConfig()
    """How TensorFlow runs the models: its thread pools and kernels."""
    on_plugin_error: Literal["fail", "continue"] = "fail"
    """A plugin whose model is missing, corrupt or mismatched: ``fail`` stops start-up; ``continue``
    reports it (log, health NOT_SERVING for its service) and serves the other plugins."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.upper() not in levels:
            raise ValueError(f"expected one of {', '.join(levels)}, got {value!r}")
        return value.upper()

    def plugin(self, name: str) -> PluginConfig:
        """The section of plugin ``name``, or the defaults if the file has none."""
        return self.plugins.get(name) or PluginConfig()


def load_config(path: Path | str, *, env: dict[str, str] | None = None) -> StreamserveConfig:
    """Read, validate and apply environment overrides to the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    return parse_config(text, source=path, env=env)


def parse_config(
    text: str, *, source: Path | None = None, env: dict[str, str] | None = None
) -> StreamserveConfig:
    """Validate YAML ``text``; relative model paths are taken relative to ``source``'s folder."""
    where = str(source) if source else "<config>"
    data = read_yaml(text, where)
    data = with_environment(data, where, env)
    try:
        config = StreamserveConfig.model_validate(data)
    except ValidationError as exc:
        lines = key_lines(text)
        raise ConfigError(f"{where}: invalid configuration:\n{_describe(exc, lines=lines)}") from exc
    return resolve_paths(config, source)


def read_yaml(text: str, where: str) -> dict[str, Any]:
    """The YAML mapping in ``text``; a syntax error names the file, line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML {_yaml_problem(exc)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    return data


def yaml_error_line(exc: BaseException) -> int | None:
    """The 1-based line of a YAML syntax error, if PyYAML knows it."""
    mark = getattr(exc.__cause__ or exc, "problem_mark", None)
    return None if mark is None else int(mark.line) + 1


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    # PyYAML's own str() names "<unicode string>" (it was given text): say where in our terms.
    mark = exc.problem_mark or exc.context_mark
    where = f"at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = exc.problem or exc.context or "syntax error"
    if exc.context and exc.context_mark and exc.problem:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"{where}: {problem}"


def with_environment(data: dict[str, Any], where: str, env: dict[str, str] | None) -> dict[str, Any]:
    """``data`` with the environment's overrides (``STREAMSERVE_ADDRESS``) applied."""
    env = dict(os.environ) if env is None else env
    if override := env.get(ADDRESS_ENV):
        try:
            check_address(override)
        except ValueError as exc:
            raise ConfigError(f"{where}: environment variable {ADDRESS_ENV}: {exc}") from exc
        server = data.get("server") or {}
        if isinstance(server, dict):  # anything else is reported by validation
            data = {**data, "server": {**server, "address": override}}
    return data


KeyPath = tuple[str | int, ...]


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line of every key (and list item) in the YAML ``text``, by key path."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[KeyPath, int] = {}

    def walk(node: yaml.Node, path: KeyPath) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest parent in the file (a missing key's section)."""
    for end in range(len(path), 0, -1):
        if (line := lines.get(tuple(path[:end]))) is not None:
            return line
    return None


def plugin_settings(
    config: StreamserveConfig, name: str, model: type[BaseModel] | None, where: str = "<config>"
) -> BaseModel | None:
    """Validate plugin ``name``'s ``settings:`` with the plugin's own model."""
    raw = config.plugin(name).settings
    if model is None:
        if raw:
            raise ConfigError(
                f"{where}: plugins.{name}.settings: plugin {name!r} takes no settings, "
                f"got {sorted(raw)}"
            )
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        prefix = ("plugins", name, "settings")
        raise ConfigError(f"{where}: invalid configuration:\n{_describe(exc, prefix)}") from exc


def validation_problems(
    exc: ValidationError, prefix: KeyPath = ()
) -> list[tuple[KeyPath, str]]:
    """Each error of ``exc`` as (key path, message), in the file's terms."""
    problems = []
    for err in exc.errors():
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; see docs/configuration.md)"
        problems.append(((*prefix, *err["loc"]), message))
    return problems


def _describe(
    exc: ValidationError, prefix: KeyPath = (), lines: dict[KeyPath, int] | None = None
) -> str:
    described = []
    for path, message in validation_problems(exc, prefix):
        line = line_of(lines or {}, path)
        described.append(f"  {'.'.join(map(str, path))}: {message}" + (f" (line {line})" if line else ""))
    return "\n".join(described)


def resolve_paths(config: StreamserveConfig, source: Path | None) -> StreamserveConfig:
    """Paths in the file are relative to the file's folder, wherever the server is started from."""
    if source is None:
        return config
    base = source.parent

    def rebase(section: _T, *fields: str) -> _T:
        update = {
            name: base / value
            for name in fields
            if isinstance(value := getattr(section, name), Path) and not value.is_absolute()
        }
        return section.model_copy(update=update) if update else section

    server = config.server
    server = server.model_copy(update={
        "tls": server.tls and rebase(server.tls, "cert_file", "key_file", "client_ca_file"),
        "auth": server.auth and rebase(server.auth, "tokens_file"),
    })
    plugins = {name: rebase(section, "model_path") for name, section in config.plugins.items()}
    repository = rebase(config.model_repository, "path")
    repository = repository.model_copy(update={
        "models": {name: rebase(model, "path") for name, model in repository.models.items()}
    })
    return config.model_copy(update={"server": server, "plugins": plugins,
                                     "model_repository": repository})
