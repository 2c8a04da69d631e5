"""Deployment artefacts that cannot rot: the Kubernetes manifests, the Dockerfile, docs/deploy.md.

No container engine or cluster runs here, so the manifests are validated against the Kubernetes
schemas kubernetes-validate ships (offline) and checked against each other, against streamserve's
own config loader and against the installed anomaly plugin; the Dockerfile is linted with hadolint,
parsed, and its build context rebuilt from .dockerignore to build both packages from. The TLS
walkthrough of docs/deploy.md is run as written against a real `streamserve serve`.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from streamserve.config import StreamserveConfig, load_config, parse_config, plugin_settings
from streamserve.plugins import discover
from streamserve.testing import ServerProcess, wait_until_serving

ROOT = Path(__file__).parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
HADOLINT = str(Path(sys.executable).parent / "hadolint")
# gRPC probes went GA in 1.27: the oldest version these manifests are for, and the newest known.
K8S_VERSIONS = ["1.27.0", f"{kubernetes_validate.latest_version()}.0"]


# Kubernetes ---------------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return documents


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    (only,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def pod_config() -> StreamserveConfig:
    """The server config the pods run, through streamserve's own loader."""
    text = one("ConfigMap", "streamserve-config")["data"]["server.yaml"]
    return parse_config(text, env={})


def port(address: str | None) -> int:
    assert address is not None
    return int(address.rpartition(":")[2])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    documents = manifests()
    assert {d["kind"] for d in documents} == {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"
    }
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_catches_a_mistake() -> None:
    """The validation above is not vacuous: a misspelt probe field and a bad port are rejected."""
    deployment = copy.deepcopy(one("Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["grpc"]["servce"] = probe["grpc"].pop("service")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    deployment = copy.deepcopy(one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_the_pods_config_is_valid_for_streamserve_and_its_plugins() -> None:
    config = pod_config()
    installed = {d.spec.name: d for d in discover()}
    for name in config.plugins:
        assert name in installed, f"the ConfigMap configures {name!r}, which is not installed"
        plugin_settings(config, name, installed[name].spec.settings, "configmap.yaml")
    assert config.server.tls is not None and config.server.tls.require_client_cert
    assert config.server.health_address is not None


def test_tensorflow_threads_match_the_pods_cpu_request() -> None:
    request = container()["resources"]["requests"]["cpu"]
    cores = int(request[:-1]) / 1000 if request.endswith("m") else float(request)
    assert pod_config().tensorflow.intra_op_threads == max(1, round(cores))


def test_probes_ask_the_health_only_port_about_the_real_services() -> None:
    config = pod_config()
    health_port = port(config.server.health_address)
    assert health_port != port(config.server.address)  # the main port needs mTLS: probes cannot
    served = [d.spec.service.full_name for d in discover() if config.plugin(d.spec.name).enabled]
    assert "anomaly_detection.AnomalyDetectionService" in served
    probes = {kind: container()[kind]["grpc"] for kind in ("startupProbe", "livenessProbe",
                                                           "readinessProbe")}
    assert {p["port"] for p in probes.values()} == {health_port}
    assert probes["startupProbe"]["service"] == probes["livenessProbe"]["service"] == ""
    assert probes["readinessProbe"]["service"] in served


def test_ports_and_selectors_agree() -> None:
    config = pod_config()
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {
        "grpc": port(config.server.address),
        "health": port(config.server.health_address),
        "metrics": port(config.metrics.address),
    }
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        ports["metrics"])
    for name in ("streamserve", "streamserve-headless"):
        service = one("Service", name)
        assert service["spec"]["selector"].items() <= labels.items(), name
        (service_port,) = service["spec"]["ports"]
        assert service_port["targetPort"] in ports, name
        assert ports[service_port["targetPort"]] == port(config.server.address), name
    assert one("Service", "streamserve-headless")["spec"]["clusterIP"] == "None"
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_termination_grace_outlasts_the_pause_and_the_drain() -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    drain = pod_config().server.shutdown_grace_seconds
    assert spec["terminationGracePeriodSeconds"] > pause + drain


def test_config_and_certificates_are_where_the_pod_mounts_them() -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The config: the ConfigMap's key, mounted where the container's --config looks.
    args = container()["args"]
    config_path = Path(args[args.index("--config") + 1])
    config_volume = next(n for n, v in volumes.items()
                         if v.get("configMap", {}).get("name") == "streamserve-config")
    assert config_path == Path(mounts[config_volume]) / "server.yaml"
    assert config_path == Path(dockerfile_cmd_config())
    # The certificates: the Secret's keys, under the path the config names.
    tls = pod_config().server.tls
    assert tls is not None
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    for path in (tls.cert_file, tls.key_file, tls.client_ca_file):
        assert path is not None and path.parent == Path(mounts[secret_volume])
        assert path.name in ("tls.crt", "tls.key", "ca.crt")  # the keys of a kubernetes.io/tls Secret
    assert str(pod_config().plugin("anomaly").model_path) == BAKED_MODEL_BASE


def test_the_pod_runs_as_the_images_non_root_user() -> None:
    security = one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == dockerfile_user()


# The Dockerfile -----------------------------------------------------------------------------------

BAKED_MODEL_BASE = "/models/anomaly"


def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def instructions(name: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == name]


def dockerfile_user() -> str:
    return instructions("USER")[-1]


def dockerfile_cmd_config() -> str:
    import json

    (entrypoint,) = instructions("ENTRYPOINT")
    (cmd,) = instructions("CMD")
    argv = json.loads(entrypoint) + json.loads(cmd)
    assert argv[:2] == ["streamserve", "serve"], argv
    return str(argv[argv.index("--config") + 1])


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([HADOLINT, "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_on_python_slim_and_runs_as_non_root() -> None:
    froms = instructions("FROM")
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms), froms
    user = dockerfile_user()
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric non-root uid (runAsNonRoot)"
    # The user is created in the final stage, after its FROM.
    final_stage = dockerfile().content.rsplit("\nFROM ", 1)[1]
    assert f"--uid {uid}" in final_stage


def test_dockerfile_bakes_the_model_with_the_real_cli() -> None:
    from importlib.metadata import entry_points

    from streamserve_anomaly.cli import _parser

    (train,) = [shlex.split(r) for r in instructions("RUN") if "streamserve-anomaly" in r]
    assert train[:2] == ["streamserve-anomaly", "train"]
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["streamserve-anomaly"] == "streamserve_anomaly.cli:main"
    assert scripts["streamserve"] == "streamserve.cli:main"
    args = _parser().parse_args(train[1:])  # the arguments the CLI really takes
    assert args.out.parent == Path(BAKED_MODEL_BASE) and args.out.name.isdigit()
    copies = [c.split() for c in instructions("COPY")]
    assert ["--from=build", "/models", "/models"] in copies


def test_the_images_config_validates_and_matches_the_dockerfile() -> None:
    copies = {c.split()[-1]: c.split()[0] for c in instructions("COPY") if "--from" not in c}
    source = copies[dockerfile_cmd_config()]
    config = load_config(ROOT / source, env={})
    assert str(config.plugin("anomaly").model_path) == BAKED_MODEL_BASE
    exposed = {int(p) for line in instructions("EXPOSE") for p in line.split()}
    assert exposed == {port(config.server.address), port(config.server.health_address),
                       port(config.metrics.address)}
    assert exposed == {p["containerPort"] for p in container()["ports"]}


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (excluded?, regex) in order; Docker's rules: the last match wins, `**` spans
    folders, `*` does not, and a pattern that matches a folder applies to everything in it."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        rules.append((not include, re.compile(regex + "(?:/.*)?")))
    return rules


def in_build_context(relative: str) -> bool:
    excluded = False
    for exclude, regex in dockerignore_patterns():
        if regex.fullmatch(relative):
            excluded = exclude
    return not excluded


def build_context(into: Path) -> None:
    """Copy what Docker would send as the build context (the tracked files .dockerignore lets in)."""
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if in_build_context(name) and (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)


def test_dockerignore_lets_in_what_the_dockerfile_copies_and_nothing_else() -> None:
    sources = []
    for copy_args in instructions("COPY"):
        parts = copy_args.split()
        if any(p.startswith("--from") for p in parts):
            continue
        sources += parts[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"
    for kept_out in (".git/config", ".venv/bin/python", "tests/test_deploy.py",
                     "framework/streamserve/__pycache__/cli.cpython-311.pyc",
                     "plugins/anomaly/src/streamserve_anomaly.egg-info/PKG-INFO", "docs/deploy.md"):
        assert not in_build_context(kept_out), kept_out


def test_every_package_builds_from_the_docker_build_context(tmp_path: Path) -> None:
    """`pip install /src /src/plugins/...` needs nothing the context lacks (README, sources)."""
    context = tmp_path / "context"
    build_context(context)
    (install,) = [r for r in instructions("RUN") if r.startswith("pip install")]
    paths = [p.replace("/src", str(context)) for p in install.split()[2:]]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "wheels"), *paths],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheels = sorted(p.name.split("-")[0] for p in (tmp_path / "wheels").glob("*.whl"))
    assert wheels == ["streamserve", "streamserve_anomaly", "streamserve_oip", "streamserve_tfserving"]


# docs/deploy.md, as a new user follows it ---------------------------------------------------------


def doc_blocks(language: str) -> list[str]:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = [b.split("\n", 1) for b in text.split("```")[1::2]]
    return [body for head, body in blocks if head.strip() == language]


def doc_commands(block: str) -> list[str]:
    lines = block.replace("\\\n", " ").replace("|\n", "| ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@contextmanager
def serve_tls(command: list[str], cwd: Path, service: str) -> Iterator[tuple[str, str]]:
    """Run the doc's serve command; yields (main address, health-only address) once ready.

    Readiness is asked on the health-only port, in plaintext, as a kubelet would.
    """
    log_path = cwd / "serve.log"
    ready_file = cwd / "ready.json"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*command, "--ready-file", str(ready_file)], cwd=cwd, stdout=log,
                                   stderr=subprocess.STDOUT)
        server = ServerProcess(process, ready_file, log_path)
        try:
            server.wait_ready(120)  # the main port speaks TLS only: health is asked below
            health = server.ready["health_address"]
            wait_until_serving(health, ["", service], timeout=120)
            yield server.address, health
        finally:
            code = server.stop(30)
    assert code == 0, server.output()


@pytest.mark.e2e
def test_the_tls_walkthrough_runs_as_written(tmp_path: Path, anomaly_model: Path) -> None:
    certs_block, serve_block, checks, health_checks = [
        b for b in doc_blocks("sh") if "certs" in b or "serve --config tls.yaml" in b
    ][:4]
    (config_block, *_) = doc_blocks("yaml")

    # 1. Certificates, with the repository's script.
    (make_certs,) = doc_commands(certs_block)
    make_certs = make_certs.replace(".venv/bin/python tests/", f"{sys.executable} {ROOT}/tests/")
    subprocess.run(make_certs, shell=True, cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "certs" / "client.key").is_file()

    # 2. The config, on free ports, with the test's small model instead of the default one.
    config = config_block.replace("127.0.0.1:50051", "127.0.0.1:0").replace("127.0.0.1:8081",
                                                                            "127.0.0.1:0")
    assert config != config_block
    config += f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n"
    (tmp_path / "tls.yaml").write_text(config, encoding="utf-8")

    # 3. Serve, as the doc says.
    (serve,) = doc_commands(serve_block)
    argv = shlex.split(serve.replace(".venv/bin/streamserve", f"{sys.executable} -m streamserve"))
    with serve_tls(argv, tmp_path, "anomaly_detection.AnomalyDetectionService") as (main, health):
        ports = {"localhost:50051": f"localhost:{main.rpartition(':')[2]}",
                 "localhost:8081": f"localhost:{health.rpartition(':')[2]}"}
        ran = refused = 0
        for command in doc_commands(checks) + doc_commands(health_checks):
            expect_refusal = command.endswith("# refused")
            for documented, real in ports.items():
                command = command.replace(documented, real)
            command = command.replace(".venv/bin/grpcurl", f"{GRPCURL} -connect-timeout 5")
            started = time.monotonic()
            result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                                    timeout=60)
            if expect_refusal:
                assert result.returncode != 0, f"{command}\nwas not refused: {result.stdout}"
                refused += 1
            else:
                assert result.returncode == 0, f"{command}\n{result.stderr}"
                assert result.stdout.strip(), command
                if "Health/Check" in command:
                    assert '"status": "SERVING"' in result.stdout, command
            assert time.monotonic() - started < 30, command
            ran += 1
    assert refused == 3 and ran >= 9, (ran, refused)
    assert (tmp_path / "health.protoset").is_file()
