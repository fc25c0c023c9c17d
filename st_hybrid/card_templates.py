"""What st-hybrid's model and dataset cards share: the Jinja templates, strict card facts, the version stamp.

Templates (``model_card.md``, ``hybrid_sections.md``, ``dataset_card.md``) are package data under
``st_hybrid/templates/`` (in a checkout a link to ``model_cards/``); ``$ST_HYBRID_CARD_TEMPLATES`` overrides them.
Importing this module does not import torch.

Usage:
    >>> from st_hybrid.card_templates import find_template, render_template
    >>> find_template("dataset_card.md").name
    'dataset_card.md'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["TEMPLATES_ENV_VAR", "CardInfo", "find_template", "render_template", "st_hybrid_version"]

TEMPLATES_ENV_VAR = "ST_HYBRID_CARD_TEMPLATES"


def find_template(name: str) -> Path:
    """Locate a card template: ``$ST_HYBRID_CARD_TEMPLATES``, the package data, then ``model_cards/`` of a checkout.

    Raises:
        FileNotFoundError: When no candidate folder holds the template.

    Usage:
        >>> find_template("model_card.md").name
        'model_card.md'
    """
    override = os.environ.get(TEMPLATES_ENV_VAR)
    candidates = [Path(override) / name] if override else []
    candidates += [
        Path(str(files("st_hybrid").joinpath("templates", name))),
        Path(__file__).resolve().parent.parent / "model_cards" / name,
    ]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"Card template {name!r} not found (looked in: {', '.join(map(str, candidates))}). Reinstall st-hybrid "
            f"(the templates are package data) or point {TEMPLATES_ENV_VAR} to a folder with the templates."
        )
    return found


def render_template(name: str, **context: Any) -> str:
    """Render one of st-hybrid's card templates (block tags take their own line; an undefined name is an error).

    Usage:
        >>> text = render_template("dataset_card.md", card_data="", pretty_name="pairs", ...)  # doctest: +SKIP
    """
    import jinja2

    env = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    return env.from_string(find_template(name).read_text(encoding="utf-8")).render(**context)


def st_hybrid_version() -> str:
    """The installed st-hybrid version, stamped on cards and sent as the Hub user agent's library version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("st-hybrid")
    except PackageNotFoundError:
        return "(development version)"


class CardInfo:
    """Base of the card-facts dataclasses: strict loading (an unknown key is an error, not ignored).

    Usage:
        >>> from st_hybrid.model_card import ModelCardInfo
        >>> ModelCardInfo.from_dict({"languages": ["en"]}).languages
        ['en']
    """

    _kind: ClassVar[str] = "card"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a dict (e.g. a YAML or JSON file); unknown keys raise a ``ValueError``."""
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"Unknown {cls._kind} field(s) {unknown}; known fields: {known}.")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | os.PathLike):
        """Load from a ``.json`` or ``.yaml``/``.yml`` file holding a mapping."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping (key: value), got {type(data).__name__}.")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of the fields."""
        return asdict(self)
