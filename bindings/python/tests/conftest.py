"""What the Python tests share: the generated module loaded with the real
native library, a real till-server process on 127.0.0.1, and tills opened
in a temporary folder.

`TILL_PYTHON_PATH` names a folder holding the generated `till.py` beside
`libtill_ffi.so` (the module loads the library from its own folder), and
`TILL_SERVER` the till-server binary; scripts/test-bindings sets both.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.environ["TILL_PYTHON_PATH"])

import till  # noqa: E402

TENANT = "acme"


class SyncServer:
    """A till-server process over its own data folder, on a free port."""

    def __init__(self, binary, data):
        self.binary = binary
        self.data = data
        self.admin("tenant", "create", TENANT)
        for store in ("S01", "S02"):
            self.admin("store", "create", "--tenant", TENANT, store)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(data, "server.log"), "wb")
        self.process = subprocess.Popen(
            [binary, "--data-dir", data, "serve", "--addr", f"127.0.0.1:{port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_ready()

    def admin(self, *args):
        """Runs an admin command of the same binary; returns what it printed."""
        done = subprocess.run(
            [self.binary, "--data-dir", self.data, *args],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        return done.stdout

    def enroll(self, store, device):
        """Enrolls a device and returns the token the CLI printed."""
        token = self.admin("device", "enroll", "--tenant", TENANT, "--store", store, device).strip()
        assert token and " " not in token
        return token

    def _wait_until_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "till-server exited"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("till-server did not become ready")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = SyncServer(os.environ["TILL_SERVER"], str(tmp_path_factory.mktemp("server")))
    yield s
    s.stop()


@pytest.fixture
def open_till(tmp_path, server):
    """Opens till `store`/`device` in this test's folder, enrolled unless told not to."""

    def open_till(store, device, enrolled=True):
        t = till.TillStore.open(
            till.TillConfig(
                database_path=str(tmp_path / f"{store}-{device}.db"),
                tenant=TENANT,
                store_id=store,
                device_id=device,
                default_region="IN",
                currency="INR",
                store_name=f"Acme {store}",
                server_url=server.url if enrolled else None,
                device_token=server.enroll(store, device) if enrolled else None,
                sync_request_timeout_ms=10_000,
                sync_max_attempts=2,
            )
        )
        t.set_staff("priya")
        return t

    return open_till


def item(code, name, qty, price):
    return till.NewLine(product_code=code, name=name, qty_milli=qty * 1000, unit_price=price)


def cash(amount):
    return till.Tender(method=till.TenderMethod.CASH, amount=amount)


def pytest_terminal_summary(terminalreporter):
    """Closes the run with the plain tally line every Till suite prints."""
    passed = len(terminalreporter.stats.get("passed", []))
    failed = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    terminalreporter.write_line(f"{passed} passed, {failed} failed")
