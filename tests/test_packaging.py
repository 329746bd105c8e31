"""The compose file and the Dockerfile, checked by parsing: no Docker engine runs here."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO


@pytest.fixture(scope="module")
def compose() -> dict:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def test_compose_has_the_production_services(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"mongo", "redis", "api", "worker"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["api"]["command"][:2] == ["flowloom", "serve"]
    assert services["worker"]["command"] == ["flowloom", "worker"]
    env = services["api"]["environment"]
    assert env["FLOWLOOM_STORE"].startswith("mongodb://mongo:27017/")
    assert env["FLOWLOOM_QUEUE_URL"].startswith("redis://redis:6379/")
    assert services["worker"]["environment"] == env
    assert {"mongo-data", "redis-data"} <= set(compose["volumes"])
    depends = services["api"]["depends_on"]
    assert depends["mongo"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_every_variable_the_compose_file_sets_is_a_setting(compose: dict) -> None:
    from flowloom.app.settings import Settings
    known = {f"FLOWLOOM_{name.upper()}" for name in Settings.model_fields}
    known |= {"OPENAI_API_KEY", "OPENAI_BASE_URL", "COMPOSIO_BASE_URL", "COMPOSIO_API_KEY"}
    assert set(compose["services"]["api"]["environment"]) <= known


def test_docker_compose_config_when_the_client_is_present() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client here")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
    if plugin.returncode != 0:
        pytest.skip("docker client without the compose plugin")
    result = subprocess.run([docker, "compose", "config", "--quiet"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_dockerfile_installs_the_package_and_serves() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install ." in text and "USER flowloom" in text
    assert 'CMD ["flowloom", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
