"""Runs tests/oidc/provider.mjs (the certified `oidc-provider` npm package) on a free loopback
port, and drives its sign-in pages the way a browser would — no browser needed."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx2

OIDC_DIR = Path(__file__).resolve().parent
START_TIMEOUT_SECONDS = 30.0
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


class NodeUnavailable(Exception):
    """Node or npm is missing, or the provider's packages cannot be installed."""


def ensure_node_modules() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeUnavailable("node and npm are not on PATH")
    if (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(OIDC_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise NodeUnavailable(f"npm ci in {OIDC_DIR} failed: {result.stderr.strip()[-500:]}")


class OIDCProvider:
    """One `node provider.mjs` process; ``issuer`` is known once :meth:`start` returns."""

    def __init__(self, clients: list[dict[str, Any]], log_path: Path) -> None:
        self.clients = clients
        self.log_path = log_path
        self.issuer = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        ensure_node_modules()
        node = shutil.which("node")
        assert node is not None
        env = {**os.environ, "TEST_OIDC_CONFIG": json.dumps({"clients": self.clients})}
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [node, str(OIDC_DIR / "provider.mjs")],
            cwd=OIDC_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.issuer = self._read_issuer()
        self._wait_for_discovery()

    def _read_issuer(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self._process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(f"the OIDC provider did not start; see {self.log_path}")
        issuer: str = json.loads(line[0])["issuer"]
        return issuer

    def _wait_for_discovery(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        url = f"{self.issuer}/.well-known/openid-configuration"
        while time.monotonic() < deadline:
            try:
                if httpx2.get(url, timeout=2).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the OIDC provider's discovery document never answered: {url}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()
        self._process = None


async def browse_to_callback(authorization_url: str, login: str, callback_prefix: str) -> str:
    """Act as the user's browser at the provider: follow its redirects, sign in as ``login`` on
    the login form (and confirm consent if asked), and return the URL that leads back to us."""
    url = authorization_url
    async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as browser:
        for _ in range(20):
            if url.startswith(callback_prefix):
                return url
            response = await browser.get(url)
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                continue
            form = _FORM_ACTION.search(response.text)
            if response.status_code != 200 or form is None:
                raise AssertionError(f"provider answered {response.status_code}: {response.text}")
            action = urljoin(url, html.unescape(form.group(1)))
            if 'name="prompt" value="login"' in response.text:
                data = {"prompt": "login", "login": login, "password": "any password"}
            else:
                data = {"prompt": "consent"}
            posted = await browser.post(action, data=data)
            assert posted.is_redirect, posted.text
            url = urljoin(action, posted.headers["location"])
    raise AssertionError("the provider redirected too many times")
