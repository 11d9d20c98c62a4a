"""The user's models file: prices and models added without touching code.

Looked up in this order, first match wins:

    $BATCHGEN_MODELS                          (must exist when set)
    $XDG_CONFIG_HOME/batchgen/models.yaml     (default ~/.config/batchgen/models.yaml; optional)

The file has the shape of a manifest's ``models:`` block: a mapping of model path to the
ModelSpec fields to add or change, for example::

    openai/sora-2/image-to-video:
      price_per_second: {720p: 0.12}
      confirmed: true
    acme/video-1/image-to-video:
      durations: [5, 10]
      resolutions: [720p]
      price_per_second: 0.20

A file whose only key is ``models:`` is read the same way, so a manifest's block can be
pasted as is. The built-in table is extended by this file, and each manifest's own
``models:`` block extends the result again (``load_manifest(path, user_model_table())``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ModelTableError
from .models import ModelTable

ENV_VAR = "BATCHGEN_MODELS"


def user_models_path(env: Mapping[str, str] = os.environ) -> Path | None:
    """The models file in effect, or None when there is none."""
    named = env.get(ENV_VAR, "").strip()
    if named:
        return Path(named).expanduser()
    config_home = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home else Path(env.get("HOME") or Path.home()) / ".config"
    candidate = base / "batchgen" / "models.yaml"
    return candidate if candidate.is_file() else None


def user_model_table(env: Mapping[str, str] = os.environ, base: ModelTable | None = None) -> ModelTable:
    """The built-in table (or ``base``) extended by the user's models file, if any."""
    table = base if base is not None else ModelTable.builtin()
    path = user_models_path(env)
    if path is None:
        return table
    entries = read_models_file(path, from_env=bool(env.get(ENV_VAR, "").strip()))
    try:
        return table.extended(entries)
    except ModelTableError as exc:
        raise ModelTableError(f"{path}: {exc}; fix the models file or unset {ENV_VAR}") from exc


def read_models_file(path: Path, *, from_env: bool = False) -> dict[str, Any]:
    """Parse a models file into plain entries; every problem names the file."""
    how = f" (named by ${ENV_VAR})" if from_env else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelTableError(f"{path}: models file not found{how}; create it or unset {ENV_VAR}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ModelTableError(f"{path}: models file cannot be read{how} ({reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ModelTableError(f"{where}: the models file is not valid YAML ({problem})") from exc
    if data is None:
        return {}
    if isinstance(data, dict) and set(data) == {"models"}:
        data = data["models"] or {}
    if not isinstance(data, dict):
        raise ModelTableError(
            f"{path}: a models file maps a model path to its fields (durations, resolutions, "
            f"price_per_second, ...), got {type(data).__name__}"
        )
    return data
