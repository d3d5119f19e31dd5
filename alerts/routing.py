"""Routing a warning to responsible units (派单): who leads (主办) and who cooperates (协办), and why.

Principles (国办发〔2016〕61号): 属地管理、分级负责、谁主管谁负责 — the unit involved is the first
responsible party. The units, districts and the order of the routing strategies live in
``alerts/data/units.yaml`` (see the comments there); this module only applies them:

- ``major_wide``: orange/red and city-wide or several districts → the functional department leads,
  the districts cooperate (the office leads when no department is known);
- ``single_district``: one district → its government leads, the functional department cooperates;
- ``multi_district``: several districts, lower level → the district named by most posts leads (events
  list their districts by count), the others and the department cooperate;
- ``topic_only``: no place, a department is known → it leads;
- ``fallback``: nothing known → the office.

Every decision carries an ``explanation`` (strategy, rule, topic, places and the words that chose the
department) that is stored on the ticket, so routing can be checked and argued with (派单异议).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerts.rules.base import Match
from core.records import Event, WarningLevel

log = logging.getLogger(__name__)

# The C loader when libyaml is present (same safe subset, much faster).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_UNITS_FILE = Path(__file__).resolve().parent / "data" / "units.yaml"
STRATEGIES = ("major_wide", "single_district", "multi_district", "topic_only", "fallback")


class UnitsFileError(ValueError):
    """The units file is unreadable or inconsistent; the message names the file and the entry."""


class UnitTargets(BaseModel):
    """Where a unit's notifications go. Robot keys are not here: settings hold them by unit id."""

    model_config = ConfigDict(extra="forbid")

    wecom: bool = False
    email: list[str] = Field(default_factory=list)


class Unit(BaseModel):
    """A responsible unit (责任单位)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)
    kind: Literal["office", "district", "department"] = "department"
    supervisor: str | None = None
    districts: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    targets: UnitTargets = Field(default_factory=UnitTargets)


class District(BaseModel):
    """A district (区/县/县级市) and the spellings that may name it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    aliases: list[str] = Field(default_factory=list)


class _RoutingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: list[str] = Field(default_factory=lambda: list(STRATEGIES))
    major_level: str | int = "orange"
    fallback_unit: str = "office"
    topic_score: dict[str, int] = Field(default_factory=lambda: {"l2": 3, "l1": 2, "keyword": 1})

    @field_validator("topic_score")
    @classmethod
    def _known_scores(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - {"l1", "l2", "keyword"})
        if unknown:
            raise ValueError(f"unknown score key(s) {', '.join(unknown)}; use l1, l2, keyword")
        return value


@dataclass(frozen=True)
class RoutingDecision:
    """Who leads, who cooperates, and why (JSON-ready, stored on the ticket)."""

    lead_unit: str
    cooperating_units: list[str] = field(default_factory=list)
    explanation: dict[str, Any] = field(default_factory=dict)


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def _split_topic(topic: str | None) -> tuple[str | None, str | None]:
    if not topic:
        return None, None
    for sep in ("/", ">", "／", "＞"):
        if sep in topic:
            l1, _, l2 = topic.partition(sep)
            return l1.strip() or None, l2.strip() or None
    return topic.strip() or None, None


class Router:
    """Chooses the lead and cooperating units for a match on an event."""

    def __init__(
        self,
        *,
        units: Sequence[Unit],
        districts: dict[str, District],
        city: District | None = None,
        order: Sequence[str] = STRATEGIES,
        major_level: WarningLevel = WarningLevel.orange,
        fallback_unit: str = "office",
        topic_score: dict[str, int] | None = None,
        source: str = "<units>",
    ) -> None:
        self.units = list(units)
        self.by_id = {u.id: u for u in self.units}
        self.districts = dict(districts)
        self.city = city
        self.order = list(order)
        self.major_level = major_level
        self.fallback_unit = fallback_unit
        self.topic_score = {"l2": 3, "l1": 2, "keyword": 1, **(topic_score or {})}
        self.source = source
        self._check()
        self._alias: dict[str, str] = {}
        for district_id, district in self.districts.items():
            for spelling in (district_id, district.name, *district.aliases):
                self._alias.setdefault(_key(spelling), district_id)
        self._city_alias = {_key(a) for a in ((city.name, *city.aliases) if city else ())}
        self._gov: dict[str, str] = {}
        for unit in self.units:
            if unit.kind == "district":
                for district_id in unit.districts:
                    self._gov.setdefault(district_id, unit.id)
        self._departments = [u for u in self.units if u.kind == "department"]
        # Normalised once: routing runs for every match.
        self._claims = {u.id: [(_split_topic(c), c) for c in u.topics] for u in self._departments}
        self._words = {u.id: [(_key(w), w) for w in u.keywords if _key(w)] for u in self._departments}

    # ------------------------------------------------------------ loading

    def _check(self) -> None:
        where = self.source
        if len(self.by_id) != len(self.units):
            seen: set[str] = set()
            for i, unit in enumerate(self.units):
                if unit.id in seen:
                    raise UnitsFileError(f"{where}: units[{i}] ({unit.id}): the id is used twice")
                seen.add(unit.id)
        for i, unit in enumerate(self.units):
            if unit.supervisor is not None and unit.supervisor not in self.by_id:
                raise UnitsFileError(f"{where}: units[{i}] ({unit.id}): supervisor {unit.supervisor!r} is not a unit")
            if unit.supervisor == unit.id:
                raise UnitsFileError(f"{where}: units[{i}] ({unit.id}): a unit cannot supervise itself")
            for district_id in unit.districts:
                if district_id not in self.districts:
                    raise UnitsFileError(
                        f"{where}: units[{i}] ({unit.id}): district {district_id!r} is not under 'districts:'"
                    )
            for address in unit.targets.email:
                if "@" not in address or any(c.isspace() for c in address):
                    raise UnitsFileError(f"{where}: units[{i}] ({unit.id}): {address!r} is not an e-mail address")
        for name in self.order:
            if name not in STRATEGIES:
                raise UnitsFileError(f"{where}: routing.order: unknown strategy {name!r}; use {', '.join(STRATEGIES)}")
        if "fallback" not in self.order:
            raise UnitsFileError(f"{where}: routing.order must end with 'fallback' so every event gets a unit")
        if self.fallback_unit not in self.by_id:
            raise UnitsFileError(f"{where}: routing.fallback_unit {self.fallback_unit!r} is not a unit")

    @classmethod
    def load(cls, path: Path | str | None = None) -> Router:
        """A router from the units YAML (default ``alerts/data/units.yaml``); errors name the file and entry."""
        file = Path(path) if path is not None else DEFAULT_UNITS_FILE
        try:
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
        except OSError as exc:
            raise UnitsFileError(f"{file}: cannot read the units file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise UnitsFileError(f"{file}: not UTF-8 text (byte {exc.start})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise UnitsFileError(f"{file}: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
        return cls.from_dict(data, source=str(file))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<units>") -> Router:
        """A router from already-parsed YAML data."""
        if not isinstance(data, dict):
            raise UnitsFileError(f"{source}: expected a mapping with 'units:' (and 'districts:', 'routing:')")
        unknown = sorted(str(k) for k in data if k not in ("units", "districts", "city", "routing"))
        if unknown:
            raise UnitsFileError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
        raw_units = data.get("units")
        if not isinstance(raw_units, list) or not raw_units:
            raise UnitsFileError(f"{source}: 'units' must be a non-empty list")
        units: list[Unit] = []
        for i, raw in enumerate(raw_units):
            label = raw.get("id", "?") if isinstance(raw, dict) else "?"
            try:
                units.append(Unit.model_validate(raw))
            except ValidationError as exc:
                raise UnitsFileError(f"{source}: units[{i}] ({label}): {_first_error(exc)}") from None
        raw_districts = data.get("districts") or {}
        if not isinstance(raw_districts, dict):
            raise UnitsFileError(f"{source}: 'districts' must be a mapping id -> {{name, aliases}}")
        districts: dict[str, District] = {}
        for district_id, raw in raw_districts.items():
            try:
                districts[str(district_id)] = District.model_validate(raw)
            except ValidationError as exc:
                raise UnitsFileError(f"{source}: districts.{district_id}: {_first_error(exc)}") from None
        city = None
        if data.get("city") is not None:
            try:
                city = District.model_validate(data["city"])
            except ValidationError as exc:
                raise UnitsFileError(f"{source}: city: {_first_error(exc)}") from None
        try:
            options = _RoutingOptions.model_validate(data.get("routing") or {})
        except ValidationError as exc:
            raise UnitsFileError(f"{source}: routing: {_first_error(exc)}") from None
        try:
            major = WarningLevel.parse(options.major_level)
        except ValueError as exc:
            raise UnitsFileError(f"{source}: routing.major_level: {exc}") from None
        return cls(
            units=units,
            districts=districts,
            city=city,
            order=options.order,
            major_level=major,
            fallback_unit=options.fallback_unit,
            topic_score=dict(options.topic_score),
            source=source,
        )

    # ------------------------------------------------------------ lookups

    def unit(self, unit_id: str) -> Unit | None:
        """The unit with this id, if any."""
        return self.by_id.get(unit_id)

    def unit_name(self, unit_id: str) -> str:
        """The unit's display name (the id itself when unknown)."""
        unit = self.by_id.get(unit_id)
        return unit.name if unit else unit_id

    def resolve_places(self, event: Event) -> tuple[list[str], bool, list[str], dict[str, str]]:
        """(district ids in order of mention, city-wide?, unrecognised place names, district id -> where found)."""
        found: dict[str, str] = {}
        city = False
        unknown: list[str] = []
        for origin, values in (("districts", event.districts), ("places", event.places)):
            for value in values:
                if not isinstance(value, str) or not value.strip():
                    continue
                key = _key(value)
                if key in self._alias:
                    found.setdefault(self._alias[key], origin)
                elif key in self._city_alias:
                    city = True
                elif origin == "districts":
                    unknown.append(value)
        if not found and event.title:
            title = _key(event.title)
            for district_id, district in self.districts.items():
                if _key(district.name) in title:
                    found.setdefault(district_id, "title")
            if not found and any(alias in title for alias in self._city_alias):
                city = True
        return list(found), city, unknown, found

    def department_for(self, event: Event, match: Match | None) -> tuple[str | None, dict[str, Any]]:
        """The functional department for the event's topic and words, with the basis of the choice."""
        l1, l2 = _split_topic(event.topic)
        text = _key(" ".join(filter(None, [event.title, match.reason if match else ""])))
        best: tuple[int, str] | None = None
        basis: dict[str, Any] = {"topic": event.topic}
        for unit in self._departments:
            score = 0
            why: list[str] = []
            for (c1, c2), claim in self._claims[unit.id]:
                if c2 is not None and l1 == c1 and l2 == c2:
                    score += self.topic_score["l2"]
                    why.append(f"二级分类 {claim}")
                elif c2 is None and l1 == c1:
                    score += self.topic_score["l1"]
                    why.append(f"一级分类 {claim}")
            words = [shown for norm, shown in self._words[unit.id] if norm in text]
            score += self.topic_score["keyword"] * len(words)
            if score > 0 and (best is None or score > best[0]):
                best = (score, unit.id)
                basis = {"topic": event.topic, "unit": unit.id, "score": score, "matched": why, "keywords": words}
        return (best[1] if best else None), basis

    # ------------------------------------------------------------ routing

    def route(self, event: Event, match: Match) -> RoutingDecision:
        """Lead and cooperating units for ``match`` on ``event``, with the explanation."""
        districts, city_wide, unknown, origins = self.resolve_places(event)
        department, basis = self.department_for(event, match)
        level = match.level
        wide = len(districts) >= 2 or (not districts and city_wide)
        govs = [self._gov[d] for d in districts if d in self._gov]
        ungoverned = [d for d in districts if d not in self._gov]

        chosen: tuple[str, str, list[str], str] | None = None  # strategy, lead, cooperating, summary
        for strategy in self.order:
            chosen = self._apply(strategy, level=level, wide=wide, districts=districts, govs=govs,
                                 department=department)
            if chosen is not None:
                break
        assert chosen is not None  # "fallback" is always in the order (checked at load)
        strategy, lead, cooperating, summary = chosen
        cooperating = [u for u in dict.fromkeys(cooperating) if u != lead]
        explanation: dict[str, Any] = {
            "strategy": strategy,
            "summary": summary,
            "rule": match.rule,
            "level": level.name,
            "level_zh": f"{level.colour_zh}色（{level.severity_zh}）",
            "topic": event.topic,
            "department": department,
            "department_basis": basis,
            "districts": districts,
            "district_names": [self.districts[d].name for d in districts],
            "district_found_in": origins,
            "city_wide": city_wide and not districts,
            "unrecognised_districts": unknown,
            "districts_without_government": ungoverned,
            "lead_unit": lead,
            "lead_unit_name": self.unit_name(lead),
            "lead_supervisor": lead_unit.supervisor if (lead_unit := self.by_id.get(lead)) else None,
            "cooperating_units": cooperating,
            "cooperating_unit_names": [self.unit_name(u) for u in cooperating],
        }
        return RoutingDecision(lead_unit=lead, cooperating_units=cooperating, explanation=explanation)

    def _apply(
        self, strategy: str, *, level: WarningLevel, wide: bool, districts: list[str], govs: list[str],
        department: str | None,
    ) -> tuple[str, str, list[str], str] | None:
        names = "、".join(self.districts[d].name for d in districts) or (self.city.name if self.city else "全市")
        dept = [department] if department else []
        dept_text = f"，{self.unit_name(department)}配合" if department else ""
        if strategy == "major_wide":
            if level < self.major_level or not wide:
                return None
            lead = department or self.fallback_unit
            return (strategy, lead, govs,
                    f"分级负责：{level.colour_zh}色预警涉及{names}，由{self.unit_name(lead)}牵头，属地政府配合")
        if strategy == "single_district":
            if len(districts) != 1 or not govs:
                return None
            return (strategy, govs[0], dept,
                    f"属地管理：事件指向{names}，由{self.unit_name(govs[0])}牵头处置{dept_text}")
        if strategy == "multi_district":
            if len(districts) < 2 or not govs:
                return None
            return (strategy, govs[0], govs[1:] + dept,
                    f"属地管理：事件涉及{names}，由涉及最多的{self.unit_name(govs[0])}牵头，"
                    f"其他属地政府{'及' + self.unit_name(department) if department else ''}配合")
        if strategy == "topic_only":
            if department is None:
                return None
            return (strategy, department, [],
                    f"谁主管谁负责：未指向具体属地，由主管部门{self.unit_name(department)}牵头")
        # fallback: the office coordinates; whatever districts were found still hear about it.
        return (strategy, self.fallback_unit, govs + dept,
                f"无法确定属地与主管部门，由{self.unit_name(self.fallback_unit)}统筹")


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{loc}: {err.get('msg', 'invalid')}"


def unit_rows(router: Router) -> Iterable[dict[str, Any]]:
    """The units as rows for the ``units`` table (id, name, supervisor, config) — for syncing at start-up."""
    for unit in router.units:
        yield {
            "id": unit.id,
            "name": unit.name,
            "supervisor": unit.supervisor,
            "config": unit.model_dump(exclude={"id", "name", "supervisor"}),
        }
