"""Fixtures of the OIP plugin's tests: a model repository, the plugin served in process, and a
tritonclient in a subprocess (never imported here: see triton_client.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import streamserve_oip.plugin
from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from tests.oip.models import build_repository

CLIENT = Path(__file__).parent / "triton_client.py"
TIMEOUT = 60.0  # seconds for one client process, TensorFlow-free: a hang fails instead of stalling

TritonClient = Callable[..., Awaitable[Any]]


def repository_config(repository: Path, extra: str = "") -> str:
    """A config serving ``repository``; polling off, so a test run never reloads behind a test."""
    return f"model_repository:\n  path: {repository}\n  poll_seconds: null\n{extra}"


@pytest.fixture(scope="session")
def oip_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``adder/1``, ``words/3``, ``fixed/1`` and ``scalar/1`` (tests/oip/models.py)."""
    return build_repository(tmp_path_factory.mktemp("oip") / "repo")


@pytest.fixture(scope="module")
async def oip_server(oip_repository: Path) -> AsyncIterator[Server]:
    """The OIP plugin alone (not the other installed plugins) serving that repository, loaded."""
    config = parse_config(repository_config(oip_repository), env={})
    async with serve_in_process(config, extra_plugins=[streamserve_oip.plugin], installed=False) as server:
        yield server


async def run_client(address: str, command: str, argument: Any) -> Any:
    """Run triton_client.py; returns the JSON it printed. Fails the test on a crash or a hang."""
    text = argument if isinstance(argument, str) else json.dumps(argument)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), address, command, text,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"triton_client.py {command} failed:\n{err.decode()}"
    return json.loads(out)


@pytest.fixture
def triton(oip_server: Server) -> TritonClient:
    """``await triton(command, argument)``: tritonclient against the shared server."""

    async def call(command: str, argument: Any) -> Any:
        return await run_client(oip_server.address, command, argument)

    return call


@pytest.fixture(scope="session")
def reference(oip_repository: Path) -> Callable[..., dict[str, Any]]:
    """``reference(model, **inputs)``: the repository's SavedModel called directly with TensorFlow,
    what every answer of the server must equal."""
    import tensorflow as tf

    # The loaded objects, not just their signatures: a signature holds its variables weakly.
    loaded = {name: tf.saved_model.load(str(oip_repository / name / version))
              for name, version in (("adder", "1"), ("words", "3"))}

    def call(model: str, **inputs: Any) -> dict[str, Any]:
        function = loaded[model].signatures["serving_default"]
        outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    return call
