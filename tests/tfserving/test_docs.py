"""docs/tfserving.md cannot rot: its config parses, its Python client and grpcurl examples run
against the served models and get the answers the page says."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from streamserve.config import parse_config
from streamserve.serving import Server
from tests.test_docs import code_blocks
from tests.tfserving.test_service import GRPCURL

DOC = Path(__file__).parent.parent.parent / "docs" / "tfserving.md"
DOC_ADDRESS = "localhost:50051"


def test_the_config_is_valid() -> None:
    (block,) = code_blocks(DOC, "yaml")
    config = parse_config(block, env={})
    assert config.plugin("tfserving").enabled


async def test_the_python_client_runs_as_shown(server: Server) -> None:
    (block,) = code_blocks(DOC, "python")
    assert DOC_ADDRESS in block
    namespace: dict[str, Any] = {}
    code = compile(block.replace(DOC_ADDRESS, server.address), str(DOC), "exec")
    # A blocking client: in a thread, so the server on this event loop can answer it.
    await asyncio.wait_for(asyncio.to_thread(exec, code, namespace), 60)
    np.testing.assert_allclose(namespace["score"], [5.5])
    assert namespace["response"].model_spec.version.value == 1
    dtypes = {key: info.dtype for key, info in namespace["inputs"].items()}
    assert dtypes == {"x": 1, "n": 9}  # DT_FLOAT, DT_INT64


async def test_the_grpcurl_example_runs_as_shown(server: Server) -> None:
    (block,) = code_blocks(DOC, "sh")
    program, *args = shlex.split(block)
    assert program == "grpcurl" and DOC_ADDRESS in args
    args = [server.address if arg == DOC_ADDRESS else arg for arg in args]
    process = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    answer = json.loads(out)
    assert sorted(answer["outputs"]) == ["doubled", "score"]
    assert answer["model_spec"]["name"] == "linear"
