"""config.toml is the complete, true example: every setting, each at its default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from coordinatord.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.toml"
# Settings whose defaults depend on the machine (XDG dirs) or are unset paths: they appear in
# the example commented out, with the default explained.
COMMENTED = {
    "socket",
    "state_dir",
    "daemon.host_id",
    "logging.file",
    "backend.tls_ca_file",
    "backend.tls_cert_file",
    "backend.tls_key_file",
    "projects",
    "memory_bank.directory",  # deprecated: shown commented out, never set by the example
}


def setting_names(model: type[BaseModel], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_names(annotation, f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and f"{prefix}{key}" != "ttl.prefixes":
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def test_every_setting_is_in_the_example() -> None:
    """Each setting the code reads is in config.toml, set or (for machine-dependent ones) commented."""
    text = EXAMPLE.read_text()
    present = set(flatten(tomllib.loads(text)))
    missing = setting_names(Settings) - present - COMMENTED
    assert missing == set()
    assert "projects" in setting_names(Settings)
    for name in COMMENTED - {"projects"}:
        key = name.rsplit(".", 1)[-1]
        assert re.search(rf"^#\s*{key}\s*=", text, re.MULTILINE), f"{name} should be shown commented out"
    assert re.search(r"^# \[\[projects\]\]\n# root = ", text, re.MULTILINE)


def test_example_values_are_the_defaults(tmp_path: Path) -> None:
    """Loading config.toml gives exactly the settings that no config file gives."""
    empty = tmp_path / "empty.toml"
    empty.touch()
    env = {"XDG_RUNTIME_DIR": "/run/user/1", "XDG_STATE_HOME": "/state"}
    from_example = load_settings({}, config_file=str(EXAMPLE), environ=env)
    from_defaults = load_settings({}, config_file=str(empty), environ=env)
    assert from_example.model_dump() == from_defaults.model_dump()
