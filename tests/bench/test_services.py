"""The benchmarks' services: they start, answer, count CPU time and stop cleanly."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.services import (
    CpuClock,
    Service,
    ServiceError,
    gateway_models,
    own_cpu_s,
    start_gateway,
    start_mock,
    start_service,
)
from server.config import parse_models
from tests.processes import is_running


def _chat(
    base_url: str, api_key: str | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(
        base_url + "/v1/chat/completions", json.dumps(body).encode(), headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), json.loads(response.read())


def test_mock_and_gateways_start_answer_and_stop(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        mock, mock_url = start_mock(stack, tmp_path, "key", num_tokens=4)
        metered, metered_url = start_gateway(
            stack, tmp_path, "mock", mock_url + "/v1", "key"
        )
        unmetered, unmetered_url = start_gateway(
            stack, tmp_path, "mock", mock_url + "/v1", "key", is_metered=False
        )
        services = [mock, metered, unmetered]

        _, reply = _chat(mock_url, "key")
        assert reply["usage"]["completion_tokens"] == 4
        # Explicit prices price the metered request; the unmetered one is not priced.
        metered_headers, _ = _chat(metered_url)
        unmetered_headers, _ = _chat(unmetered_url)
        assert float(metered_headers["x-tokenmill-cost-usd"]) > 0
        assert unmetered_headers["x-tokenmill-cost-usd"] == "unknown"
        assert all(service.cpu_s() > 0 for service in services)

    assert not any(is_running(service.process.pid) for service in services)
    request_log = tmp_path / "gateway-unmetered" / "home" / "logs" / "requests.jsonl"
    assert len(request_log.read_text().splitlines()) == 1
    assert not (tmp_path / "gateway" / "home" / "logs" / "requests.jsonl").exists()


def test_gateway_models_price_the_model_every_way() -> None:
    raw = gateway_models("mock", "http://127.0.0.1:9/v1")

    model = parse_models(raw).models[0]

    assert model.is_remote
    assert model.hardware is not None
    assert model.hardware.usd_per_hour == 1.0
    assert model.prices is not None
    assert model.api_reference == "openai/gpt-4o-mini"


def test_wait_ready_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    code = "import sys; print('no model here'); sys.exit(3)"
    with contextlib.ExitStack() as stack:
        service = start_service(stack, "failing", ["-c", code], tmp_path)

        with pytest.raises(ServiceError, match="exited with code 3") as error:
            service.wait_ready("http://127.0.0.1:1/health", timeout_s=30)

    assert "no model here" in str(error.value)


def test_stop_kills_a_service_that_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.services._STOP_GRACE_S", 0.2)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    with contextlib.ExitStack() as stack:
        service: Service = start_service(stack, "stubborn", ["-c", code], tmp_path)
        while "ready" not in service.log_tail():
            assert service.process.poll() is None
            time.sleep(0.05)

    assert not is_running(service.process.pid)
    assert service.process.returncode == -9


def test_cpu_clock_counts_from_start() -> None:
    readings = iter([1.0, 10.0, 1.5, 12.5])
    clock = CpuClock({"a": lambda: next(readings), "b": lambda: next(readings)})

    clock.start()

    assert clock.used_s() == {"a": 0.5, "b": 2.5}


def test_own_cpu_s_grows_with_work() -> None:
    before = own_cpu_s()
    sum(i * i for i in range(200_000))

    assert own_cpu_s() > before
