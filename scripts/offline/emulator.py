"""moto in server mode on a free local port, reached exactly as real AWS is: AWS_ENDPOINT_URL.

`backupctl demo` and the tests start the emulator through here. `isolated_environment` sets every
AWS_* variable aside (profiles, config files, role or container credentials, per-service endpoints)
so nothing can route a call to real AWS, and puts them back afterwards.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.request
from pathlib import Path
from typing import Iterator

REGION = "ap-south-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """One moto server. Our stand-in account registers its own AMI, so moto's thousands of built-in
    ones are not loaded into every region (seconds per fresh region)."""

    def __init__(self, port: int = 0):
        from moto.server import ThreadedMotoServer
        self._saved_ami_setting = os.environ.get("MOTO_EC2_LOAD_DEFAULT_AMIS")
        os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
        # The emulator logs a traceback for every API it lacks; callers report those instead.
        logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> "Emulator":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._saved_ami_setting is None:
            os.environ.pop("MOTO_EC2_LOAD_DEFAULT_AMIS", None)
        else:
            os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = self._saved_ami_setting

    def reset(self) -> None:
        """Forget every resource (a fresh account)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request) as response:
            response.read()


def emulated_environment(endpoint: str, workdir: Path) -> dict[str, str]:
    """The AWS_* settings that reach the emulator with fake credentials and no shared files."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": str(workdir / "aws-config"),              # absent: no profile leaks in
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-credentials")}


@contextlib.contextmanager
def isolated_environment(endpoint: str, workdir: Path) -> Iterator[None]:
    """This process's AWS settings point at the emulator until the block ends."""
    from scripts.aws.session import forget_shared_session
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(emulated_environment(endpoint, workdir))
        forget_shared_session()   # a session made before caches the machine's credentials
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)
        forget_shared_session()


@contextlib.contextmanager
def running_emulator(workdir: Path) -> Iterator[Emulator]:
    """An emulator for the length of the block, with this process pointed at it."""
    emulator = Emulator().start()
    try:
        with isolated_environment(emulator.endpoint, workdir):
            yield emulator
    finally:
        emulator.stop()
