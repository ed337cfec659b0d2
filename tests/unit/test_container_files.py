"""The container files say what they should, since no engine runs here to build them
(scripts/image-check.sh builds and runs the image where one does): two stages, an
unprivileged user, no key baked in, and compose services running commands payfirst has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from payfirst.cli import command_names

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_is_two_pinned_stages_and_runs_unprivileged() -> None:
    steps = instructions()
    bases = [arg for op, arg in steps if op == "FROM"]
    assert len(bases) == 2
    assert all(re.match(r"python:\d+\.\d+\.\d+-slim", base) for base in bases)
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert not any(op == "RUN" and "gcc" in arg for op, arg in final)  # no compiler
    assert not any("KEY=" in arg for op, arg in steps if op in ("ENV", "ARG"))


def test_compose_runs_commands_payfirst_has_with_keys_from_a_secret() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    commands = command_names()
    services = compose["services"]
    for name in ("migrate", "api", "worker"):
        service = services[name]
        assert service["command"][0] in commands
        assert service["environment"]["PAYFIRST_RELAYER_KEY_FILE"].startswith("/run/secrets/")
        assert "0x" not in str(service["environment"])
    assert services["api"]["ports"] == ["127.0.0.1:4021:4021"]
