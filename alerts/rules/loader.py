"""Build the rules from the YAML rules file (``alerts/data/rules.yaml`` by default).

Format: a top-level ``rules:`` list; each entry has ``name`` (unique), ``type`` and the rule's own options
flat beside them (ElastAlert style); ``enabled: false`` keeps an entry in the file but unused. ``type`` is a
short name (``negative_heat``, ``spike``, ``watchlist``, ``sensitive_terms``), the class name, or a dotted
``package.module.Class`` path for a custom subclass of ``alerts.rules.base.Rule``. The file order is the
tie-break order of the engine. Any problem fails the whole load with the file, the entry index and what
is wrong: a half-loaded rule set would silently miss warnings.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import yaml

from alerts.rules.base import Rule

log = logging.getLogger(__name__)

# The C loader when libyaml is present (same safe subset, much faster).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "data" / "rules.yaml"

# Short name -> "module:Class"; imported on demand so one rule type's optional dependency
# does not stop the others from loading.
RULE_TYPES: dict[str, str] = {
    "negative_heat": "alerts.rules.heat:NegativeHeatRule",
    "spike": "alerts.rules.spike:SpikeRule",
    "watchlist": "alerts.rules.watchlist:WatchlistRule",
    "sensitive_terms": "alerts.rules.sensitive:SensitiveTermsRule",
}
_BY_CLASS_NAME = {target.split(":")[1]: target for target in RULE_TYPES.values()}
_RESERVED = {"name", "type", "enabled", "description"}


class RulesFileError(ValueError):
    """The rules file is unreadable or an entry is invalid; the message names the file and entry."""


def rule_class(type_name: str) -> type[Rule]:
    """The Rule subclass a ``type:`` value names (raises ValueError with the known names)."""
    target = RULE_TYPES.get(type_name) or _BY_CLASS_NAME.get(type_name)
    if target is None:
        if "." not in type_name:
            known = ", ".join(sorted(RULE_TYPES))
            raise ValueError(f"unknown rule type {type_name!r}; known types: {known} (or a dotted module.Class)")
        module_name, _, class_name = type_name.rpartition(".")
    else:
        module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"rule type {type_name!r} cannot be imported: {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, Rule):
        raise ValueError(f"{type_name!r} is not a subclass of alerts.rules.base.Rule")
    return cls


def build_rules(entries: Any, *, source: str = "<rules>") -> list[Rule]:
    """Rules from already-parsed entries (the ``rules:`` list); errors name ``source`` and the entry index."""
    if not isinstance(entries, list):
        raise RulesFileError(f"{source}: 'rules' must be a list of rule entries, got {type(entries).__name__}")
    rules: list[Rule] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: rules[{index}]"
        if not isinstance(entry, dict):
            raise RulesFileError(f"{where}: an entry must be a mapping with name and type, got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RulesFileError(f"{where}: 'name' is missing or empty")
        where = f"{where} ({name})"
        if name in names:
            raise RulesFileError(f"{where}: the name is already used by rules[{names[name]}]")
        names[name] = index
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RulesFileError(f"{where}: 'enabled' must be true or false, got {enabled!r}")
        type_name = entry.get("type")
        if not isinstance(type_name, str) or not type_name:
            raise RulesFileError(f"{where}: 'type' is missing; known types: {', '.join(sorted(RULE_TYPES))}")
        try:
            cls = rule_class(type_name)
        except ValueError as exc:
            raise RulesFileError(f"{where}: {exc}") from None
        if not enabled:
            log.info("rule %s is disabled in %s", name, source)
            continue
        config = {k: v for k, v in entry.items() if k not in _RESERVED}
        try:
            rules.append(cls(name, config))
        except (ValueError, TypeError, KeyError) as exc:
            raise RulesFileError(f"{where}: {exc}") from None
    return rules


def load_rules(path: Path | str | None = None) -> list[Rule]:
    """Rules from the YAML file (default ``alerts/data/rules.yaml``), in file order."""
    file = Path(path) if path is not None else DEFAULT_RULES_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(f"{file}: cannot read the rules file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RulesFileError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesFileError(f"{file}: invalid YAML{at}: {problem}") from None
    if not isinstance(data, dict) or "rules" not in data:
        raise RulesFileError(f"{file}: expected a mapping with a top-level 'rules:' list")
    unknown = sorted(str(k) for k in data if k != "rules")
    if unknown:
        raise RulesFileError(f"{file}: unknown top-level key(s) {', '.join(unknown)}; only 'rules' is read")
    rules = build_rules(data["rules"], source=str(file))
    log.info("loaded %d rules from %s", len(rules), file)
    return rules
