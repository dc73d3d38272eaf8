"""Start-up of the local runtime: from starting ``pitcrew local`` to the API answering
``GET /healthz`` with 200, against a bare ``python -c "import moto.server"`` measured in the
same run on the same machine. Median of several runs each; the last line is
``startup ratio X.XX`` (target: at most 8).

    .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def time_bare_import() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import moto.server"], check=True)
    return time.perf_counter() - started


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def time_local_start() -> float:
    api_port, aws_port = free_port(), free_port()
    command = [str(BIN / "pitcrew"), "local", "--port", str(api_port), "--aws-port", str(aws_port)]
    url = f"http://127.0.0.1:{api_port}/healthz"
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        while not healthy(url):
            if process.poll() is not None:
                errors = process.stderr.read() if process.stderr else ""
                raise SystemExit(f"pitcrew local exited {process.returncode}:\n{errors}")
            if time.perf_counter() - started > TIMEOUT_S:
                raise SystemExit(f"pitcrew local: no /healthz 200 within {TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listed(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of each (at least 3)")
    runs = max(parser.parse_args().runs, 3)
    os.environ.pop("PITCREW_CONFIG", None)

    bare = [time_bare_import() for _ in range(runs)]
    local = [time_local_start() for _ in range(runs)]
    bare_median, local_median = statistics.median(bare), statistics.median(local)
    print(f"import moto.server     median {bare_median:.2f} s  ({_listed(bare)})")
    print(f"pitcrew local /healthz median {local_median:.2f} s  ({_listed(local)})")
    print(f"startup ratio {local_median / bare_median:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
