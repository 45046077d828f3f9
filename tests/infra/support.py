"""Running the infra/ scripts as an operator would, in a state folder of their own."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NETCHECK = ROOT / "infra" / "netcheck.py"
SERVICES = ROOT / "infra" / "services.sh"
# Settings a test run inherits from the shared services (the suite runs with
# .services/env exported): the scripts under test see them only where a test
# exports them on purpose.
INHERITED = (
    "DATABASE_URL",
    "REDIS_URL",
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "S3_CREATE_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "DJANGO_SECRET_KEY",
    "FLOWER_BASIC_AUTH",
    "LUBDUB_METRICS_TOKEN",
    "LUBDUB_ENV_FILE",
)


def script_env(state: Path, exported: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in INHERITED}
    env["LUBDUB_SERVICES_DIR"] = str(state)
    env.update(exported or {})
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Listener:
    """Another program's server on a loopback port: it answers every HTTP
    request with 200, as any web server would answer a readiness probe."""

    CODE = (
        "import http.server, sys\n"
        "class Yes(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
        "    def log_message(self, *args):\n"
        "        pass\n"
        "server = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Yes)\n"
        "print('listening', flush=True)\n"
        "server.serve_forever()\n"
    )

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.CODE, str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "listening", "the listener did not start"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
