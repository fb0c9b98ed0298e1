"""Helpers of the abuse tests: the API in-process (ASGI) or under uvicorn, and
tokens made the way an attacker would make them."""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from opex_api.app import create_app
from opex_api.config import ApiSettings
from opex_common.settings import Settings
from tests.faults.support import Proc, free_port, wait_until

API = "/api/v1"


def api_settings(settings: Settings, **changes: Any) -> ApiSettings:
    return ApiSettings(**{**settings.model_dump(), **changes})


def asgi_client(app: Any, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=15)


def make_app(settings: Settings, **changes: Any) -> Any:
    return create_app(api_settings(settings, **changes))


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Uvicorn(Proc):
    """The API under uvicorn, as the local stack runs it."""

    def __init__(self, settings: Settings, log_dir: Path, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("api", [sys.executable, "-m", "uvicorn", "opex_api.app:app", "--host", "127.0.0.1",
                                 "--port", str(self.port), "--workers", str(workers), "--no-access-log", "--no-proxy-headers",
                                 "--log-level", "warning"], settings, log_dir, POWERTOOLS_LOG_LEVEL="WARNING", **env)

    def start(self, timeout: float = 30.0) -> Uvicorn:  # type: ignore[override]
        super().start()

        def up() -> bool:
            if not self.alive():
                raise RuntimeError("uvicorn exited: " + self.log_tail())
            try:
                return httpx.get(f"{self.url}{API}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, "uvicorn", 0.05)
        time.sleep(0.5)  # the second worker
        return self
