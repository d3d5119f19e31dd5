"""De-identification (去标识化) of citizens' personal data before text leaves the core.

Conventions (/work/shared/reference/response-rules.md, GB/T 37964-2019):
mobile keeps first 3 and last 4 (``138****5678``); landline keeps first 4 and last 2 digits
(``0731******88``); ID card keeps first 1 and last 2 (``4***************1X``: the stricter of the two
common forms, so region and birth date are hidden); bank card keeps first 4 and last 4; e-mail keeps the
first letter before ``@``; licence plate masks the middle (``苏D4***0``); a personal name keeps its first
character (``张**``, always two stars so the length does not leak).

Numbers are matched as whole digit runs (full-width digits included; separators ``-`` and spaces allowed
in the usual groupings), so a phone-like stretch inside a longer run (an order number) is left alone.
Masked output is written with half-width digits and without separators, and contains ``*`` where digits
were, so masking again changes nothing (``mask_pii(mask_pii(x).text) == mask_pii(x)``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_D = "[0-9０-９]"
_NOT_D_BEFORE = "(?<![0-9０-９])"
_NOT_D_AFTER = "(?![0-9０-９])"
_SEP = "[-\\s－—]"
_FW_DIGITS = str.maketrans("０１２３４５６７８９ＸｘＡ", "0123456789XxA")

_EMAIL = re.compile(r"([A-Za-z0-9][A-Za-z0-9._%+\-]*)@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})")
_ID_CARD = re.compile(f"{_NOT_D_BEFORE}{_D}{{17}}[0-9０-９XxＸｘ]{_NOT_D_AFTER}")
_BANK_SPACED = re.compile(f"{_NOT_D_BEFORE}{_D}{{4}}(?:[ \\-]{_D}{{4}}){{3}}{_NOT_D_AFTER}")
_LONG_RUN = re.compile(f"{_NOT_D_BEFORE}{_D}{{16,19}}{_NOT_D_AFTER}")
_MOBILE = re.compile(
    f"{_NOT_D_BEFORE}((?:[+＋]?86{_SEP}?)?)([1１][3-9３-９]{_D}(?:{_SEP}?{_D}){{8}}){_NOT_D_AFTER}"
)
# Not after a letter either: account ids like A000102948 start with a zero after their prefix.
_LANDLINE = re.compile(
    f"{_NOT_D_BEFORE}(?<![A-Za-z])((?:[(（]0{_D}{{2,3}}[)）]|0{_D}{{2,3}}){_SEP}?{_D}{{3,4}}{_SEP}?{_D}{{3,8}}){_NOT_D_AFTER}"
)
_PLATE = re.compile(
    "([京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-HJ-NP-Z])[·• ]?"
    "([A-HJ-NP-Z0-9]{5,6})(?![A-Za-z0-9])"
)

# Common single-character surnames; a name pattern only fires when the first character is one of them.
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
    "常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季"
    "裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦"
    "戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻"
    "苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练"
    "廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿"
    "鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由"
)
_CJK = "[\u4e00-\u9fa5]"
_COMPOUND_SURNAMES = "欧阳|司马|诸葛|上官|东方|皇甫|尉迟|公孙|慕容|令狐|夏侯|长孙|宇文|司徒|端木|独孤|南宫|西门"
_NAME = f"(?:(?:{_COMPOUND_SURNAMES}){_CJK}{{1,2}}|[{SURNAMES}]{_CJK}{{1,2}})"
_NAME_CUE = (
    "本人|我叫|我名叫|我的名字叫|名叫|联系人|姓名|户主|投诉人|举报人|申请人|反映人|当事人|来电人|求助人|"
    "收件人|签名|署名"
)
_NAME_END = (
    "[，,。.、；;：:\\s（()）!！?？/]|$|先生|女士|同志|电话|手机|联系|身份证|家住|住在|现住|今年|男|女|[0-9０-９]"
)
_NAME_AFTER_CUE = re.compile(f"(?:{_NAME_CUE})[:：\\s是为]*({_NAME})(?={_NAME_END})")
_NAME_WITH_TITLE = re.compile(f"({_NAME})(?=先生|女士)")


@dataclass
class MaskResult:
    """Masked text plus the kinds of personal data that were found (each kind once, in order found)."""

    text: str
    kinds: list[str] = field(default_factory=list)


def _digits(s: str) -> str:
    return "".join(ch for ch in s.translate(_FW_DIGITS) if ch.isdigit() or ch in "Xx")


def mask_phone(s: str) -> str:
    """Mobile ``138****5678``; other numbers keep first 4 and last 2 digits; separators dropped."""
    d = _digits(s)
    if len(d) == 13 and d.startswith("86"):
        d = d[2:]
    if len(d) == 11 and d.startswith("1"):
        return d[:3] + "****" + d[-4:]
    if len(d) <= 6:
        return "*" * len(d)
    return d[:4] + "*" * (len(d) - 6) + d[-2:]


def mask_id_card(s: str) -> str:
    """ID card: first 1 and last 2 characters kept, 15 stars between."""
    d = _digits(s).upper()
    return d[:1] + "*" * max(0, len(d) - 3) + d[-2:] if len(d) > 3 else "*" * len(d)


def mask_bank_card(s: str) -> str:
    """Bank card: first 4 and last 4 digits kept."""
    d = _digits(s)
    return d[:4] + "*" * max(0, len(d) - 8) + d[-4:] if len(d) > 8 else "*" * len(d)


def mask_name(name: str) -> str:
    """First character kept, then ``**`` whatever the length (``张三丰`` → ``张**``)."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + "**"


def mask_email(s: str) -> str:
    """First character before ``@`` kept: ``z***@example.com``."""
    local, _, domain = s.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


def mask_plate(s: str) -> str:
    """Licence plate: province, letter and first character kept, last kept, middle masked (``苏D4***0``)."""
    s = s.replace("·", "").replace("•", "").replace(" ", "")
    if len(s) < 5:
        return s
    return s[:3] + "*" * (len(s) - 4) + s[-1]


def _birth_date_plausible(d: str) -> bool:
    year, month, day = int(d[6:10]), int(d[10:12]), int(d[12:14])
    return 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def find_names(text: str) -> list[str]:
    """Personal names given by cue (本人张三、我叫李四、联系人：王五) or with a title (张三先生)."""
    found = [m.group(1) for m in _NAME_AFTER_CUE.finditer(text)]
    found += [m.group(1) for m in _NAME_WITH_TITLE.finditer(text)]
    out: list[str] = []
    for name in found:
        if name not in out:
            out.append(name)
    return out


def mask_pii(text: str, *, names: Iterable[str] = ()) -> MaskResult:
    """Mask phones, ID and bank cards, e-mails, plates and personal names (cued ones plus ``names``)."""
    if not isinstance(text, str) or not text:
        return MaskResult(text="" if not isinstance(text, str) else text)
    kinds: list[str] = []

    def note(kind: str) -> None:
        if kind not in kinds:
            kinds.append(kind)

    def sub(pattern: re.Pattern[str], kind: str, fn) -> None:  # type: ignore[no-untyped-def]
        nonlocal text

        def repl(m: re.Match[str]) -> str:
            out = fn(m)
            if out != m.group(0):
                note(kind)
            return out

        text = pattern.sub(repl, text)

    # E-mail first: its local part is often a QQ or phone number.
    sub(_EMAIL, "email", lambda m: mask_email(m.group(0)))

    def long_run(m: re.Match[str]) -> str:
        d = _digits(m.group(0)).upper()
        if len(d) == 18 and (d.endswith("X") or _birth_date_plausible(d)):
            note("id_card")
            return mask_id_card(d)
        note("bank_card")
        return mask_bank_card(d)

    sub(_ID_CARD, "id_card", long_run)
    sub(_LONG_RUN, "bank_card", long_run)
    sub(_BANK_SPACED, "bank_card", lambda m: mask_bank_card(m.group(0)))
    sub(_MOBILE, "phone", lambda m: m.group(1) + mask_phone(m.group(2)))
    sub(_LANDLINE, "landline", lambda m: mask_phone(m.group(1)))
    sub(_PLATE, "plate", lambda m: mask_plate(m.group(1) + m.group(2)) if re.search(r"\d", m.group(2))
        else m.group(0))

    people = [n for n in dict.fromkeys([*find_names(text), *(n.strip() for n in names)]) if len(n) >= 2]
    # Longest first so 张三丰 is masked before 张三 could cut it.
    for name in sorted(people, key=len, reverse=True):
        if "*" in name or name not in text:
            continue
        text = text.replace(name, mask_name(name))
        note("name")
    return MaskResult(text=text, kinds=kinds)


def hash_author(author: str, salt: str) -> str:
    """Salted (keyed) blake2b of the author id: stable per salt, not reversible without it."""
    key = salt.encode("utf-8")
    if len(key) > 64:  # blake2b keys are at most 64 bytes
        key = hashlib.blake2b(key, digest_size=64).digest()
    return hashlib.blake2b(author.encode("utf-8", "surrogatepass"), key=key, digest_size=16).hexdigest()


PSEUDONYM_PREFIX = "网友"
_PSEUDONYM = re.compile(f"^{PSEUDONYM_PREFIX}[0-9A-F]{{6}}$")


def pseudonym(author_hash: str) -> str:
    """The display name of an author: ``网友`` + 6 hex digits of the salted hash (stable, reveals nothing)."""
    return PSEUDONYM_PREFIX + author_hash[:6].upper()


def mask_author(author: str, *, salt: str = "") -> str:
    """Display form of an author: a stable pseudonym (``网友3FA2C1``), never a part of the name or number.

    Any prefix of a name gives it away (``张伟****`` is 张伟; ``zhangwei****`` too), so none is kept.
    """
    author = (author or "").strip()
    if not author:
        return ""
    if _PSEUDONYM.match(author):  # already a pseudonym
        return author
    return pseudonym(hash_author(author, salt))


_URL_SPLIT = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*)(.*)$", re.DOTALL)


def mask_url(url: str | None) -> str | None:
    """A link with personal data in its path, query or fragment masked (``?phone=138****5678``).

    The host is kept; the rest is percent-decoded first so ``%31%33%38...`` cannot hide a number, and
    masked with the text rules (phones, ID and bank cards, e-mails, plates).
    """
    if not url:
        return url
    from urllib.parse import unquote

    m = _URL_SPLIT.match(url)
    head, rest = (m.group(1), m.group(2)) if m else ("", url)
    if not rest:
        return url
    decoded = unquote(rest)
    # Query separators are not spaces or dashes: keep ``a=1&b=2`` from reading as one long number.
    masked = mask_pii(decoded.replace("+", " ")).text
    return head + (masked if masked != decoded.replace("+", " ") else rest)
