"""The running local stack for end-to-end tests: ``pitcrew local`` (what ``make run`` starts)
as a subprocess on free ports of 127.0.0.1, driven from outside over HTTP and boto3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PITCREW = Path(sys.executable).parent / "pitcrew"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalStack:
    """A running ``pitcrew local``: its endpoints and its process."""

    process: subprocess.Popen[str]
    api_url: str
    aws_endpoint: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session().client(
            service,
            region_name="us-east-1",
            endpoint_url=self.aws_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self, timeout: float = 20.0) -> tuple[int, str, str]:
        """SIGINT (Ctrl-C), then wait: the exit code, stdout and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err


@contextmanager
def start_local_stack(*extra: str) -> Iterator[LocalStack]:
    """Start ``pitcrew local`` and wait until its API answers ``/healthz`` with 200."""
    api_port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [str(PITCREW), "local", "--port", str(api_port), "--aws-port", str(aws_port), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stack = LocalStack(process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{aws_port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                _, out, err = stack.stop()
                pytest.fail(f"pitcrew local exited {process.returncode}:\n{out}\n{err}")
            try:
                if httpx.get(f"{stack.api_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                _, out, err = stack.stop()
                pytest.fail(f"no /healthz 200 within {START_TIMEOUT_S:.0f} s:\n{out}\n{err}")
            time.sleep(0.05)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """One ``pitcrew local`` for the whole e2e session."""
    with start_local_stack() as stack:
        yield stack
