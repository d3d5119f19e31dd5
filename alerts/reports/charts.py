"""Report charts as PNG bytes, with a CJK font so Chinese labels render (not as boxes).

matplotlib is an optional dependency (pip extra ``report``); its object API is used without pyplot,
so charts can be drawn from any thread without touching global figure state.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Where Debian/Ubuntu packages put CJK fonts (fonts-wqy-microhei, fonts-noto-cjk, fonts-wqy-zenhei).
KNOWN_CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
INSTALL_HINT = "install a CJK font: apt-get install -y fonts-wqy-microhei (or fonts-noto-cjk)"


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("report charts need matplotlib: pip install 'yuqing[report]'") from exc
    return matplotlib


@lru_cache(maxsize=1)
def find_cjk_font() -> Path | None:
    """A font file with Chinese glyphs: a known path, else whatever ``fc-list :lang=zh`` reports."""
    for candidate in KNOWN_CJK_FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    fc_list = shutil.which("fc-list")
    if fc_list:
        try:
            out = subprocess.run([fc_list, ":lang=zh", "file"], capture_output=True, text=True,  # noqa: S603
                                 timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for line in out.splitlines():
            path = Path(line.split(":")[0].strip())
            if path.suffix.lower() in (".ttf", ".ttc", ".otf") and path.is_file():
                return path
    log.warning("no CJK font found, Chinese chart labels will not render; %s", INSTALL_HINT)
    return None


@lru_cache(maxsize=1)
def cjk_family() -> str | None:
    """Register the CJK font with matplotlib and return its family name."""
    path = find_cjk_font()
    if path is None:
        return None
    _matplotlib()
    from matplotlib import font_manager

    font_manager.fontManager.addfont(str(path))
    return str(font_manager.FontProperties(fname=str(path)).get_name())


def _figure(width: float, height: float) -> tuple[Any, Any]:
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _style(fig: Any, ax: Any, title: str) -> None:
    family = cjk_family()
    fonts = [family] if family else []
    for text in [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]:
        if fonts:
            text.set_fontfamily(fonts)
    ax.set_title(title, fontfamily=fonts or None, fontsize=12)
    legend = ax.get_legend()
    if legend is not None and fonts:
        for t in legend.get_texts():
            t.set_fontfamily(fonts)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def trend_chart(labels: Sequence[str], series: dict[str, Sequence[int]], title: str) -> bytes:
    """A line chart: one line per series over the day labels."""
    fig, ax = _figure(7.0, 3.0)
    colours = ["#2e86c1", "#c0392b", "#27ae60", "#8e44ad"]
    for i, (name, values) in enumerate(series.items()):
        ax.plot(list(labels), list(values), marker="o", linewidth=2, label=name, color=colours[i % len(colours)])
    from matplotlib.ticker import MaxNLocator

    ax.set_ylabel("条数")
    peak = max((max(v) for v in series.values() if len(v)), default=0)
    ax.set_ylim(0, max(1, peak) * 1.1)  # counts: from zero, whole numbers, even when all are zero
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(loc="best", frameon=False)
    _style(fig, ax, title)
    return _png(fig)


def bar_chart(counts: dict[str, int], title: str, *, top: int = 8) -> bytes:
    """Horizontal bars of the largest ``top`` counts."""
    items = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = _figure(7.0, 0.45 * max(3, len(items)) + 0.9)
    ax.barh([k for k, _ in items], [v for _, v in items], color="#2e86c1")
    for y, (_k, v) in enumerate(items):
        ax.text(v, y, f" {v}", va="center", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("条数")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _style(fig, ax, title)
    return _png(fig)


SENTIMENT_COLOURS = {"负面": "#c0392b", "中性": "#95a5a6", "正面": "#27ae60"}


def sentiment_chart(counts: dict[str, int], title: str) -> bytes:
    """A stacked share bar of sentiment classes with percentages."""
    fig, ax = _figure(7.0, 1.8)
    total = sum(counts.values()) or 1
    left = 0.0
    for name in ("负面", "中性", "正面", *[k for k in counts if k not in SENTIMENT_COLOURS]):
        value = counts.get(name, 0)
        if not value:
            continue
        share = value / total
        ax.barh([0], [share], left=left, color=SENTIMENT_COLOURS.get(name, "#2e86c1"))
        ax.text(left + share / 2, 0, f"{name} {share:.0%}", ha="center", va="center", color="white",
                fontsize=10, fontfamily=[cjk_family()] if cjk_family() else None)
        left += share
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xticks([])
    _style(fig, ax, title)
    return _png(fig)
