"""docs/oip.md cannot rot: its model is the tested builder, its config validates, and its tritonclient
and grpcurl examples run against the served repository and print what the page says."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
from pathlib import Path

import yaml

from streamserve.config import parse_config
from streamserve.serving import Server
from tests.oip import models

DOC = Path(__file__).parents[2] / "docs" / "oip.md"
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
DOCUMENTED_ADDRESS = "localhost:50051"
TIMEOUT = 60.0


def blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith(language + "\n")]


async def run(*argv: str, shell: str | None = None) -> str:
    """A subprocess that does not block the event loop the in-process server runs on."""
    if shell is not None:
        process = await asyncio.create_subprocess_shell(
            shell, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, executable="/bin/bash"
        )
    else:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    return out.decode()


def test_the_documented_model_is_the_tested_one() -> None:
    assert inspect.getsource(models.build_adder) in blocks("python")


def test_the_documented_config_validates() -> None:
    (block,) = blocks("yaml")
    config = parse_config(block, env={})
    assert yaml.safe_load(block) == {"model_repository": {"path": "models"}}
    assert config.model_repository.path == Path("models")


async def test_the_tritonclient_example_prints_what_the_page_says(oip_server: Server, tmp_path: Path) -> None:
    (example,) = [b for b in blocks("python") if "tritonclient" in b]
    script = tmp_path / "example.py"
    script.write_text(example.replace(DOCUMENTED_ADDRESS, oip_server.address), encoding="utf-8")
    printed = (await run(sys.executable, str(script))).splitlines()
    promised = [line.split("  # ", 1)[1] for line in example.splitlines() if line.startswith("print(")]
    assert len(printed) == len(promised) == 5
    for line, comment in zip(printed, promised, strict=True):
        assert re.fullmatch(re.escape(comment).replace(re.escape("..."), ".*"), line), (line, comment)


async def test_the_grpcurl_examples_run(oip_server: Server) -> None:
    (commands,) = blocks("sh")
    script = commands.replace(".venv/bin/grpcurl", f"{GRPCURL} -connect-timeout 5")
    output = await run(shell="set -euo pipefail\n" + script.replace(DOCUMENTED_ADDRESS, oip_server.address))
    assert "rpc ModelStreamInfer ( stream .inference.ModelInferRequest )" in output
    assert "rpc ModelConfig ( .inference.ModelConfigRequest )" in output
    assert '"platform": "tensorflow_savedmodel"' in output
    assert '"max_batch_size": 8192' in output
    assert re.search(r'"fp32_contents": \[\s*24,\s*52\s*\]', output), output
