"""Chinese display names of the report's codes (levels, statuses, trends) and level colours."""
from __future__ import annotations

LEVEL_NAMES = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色", "none": "无"}
# National four-colour warning convention; text colour chosen for contrast on each.
LEVEL_COLOURS = {
    "red": ("#d7263d", "#ffffff"),
    "orange": ("#f28c28", "#ffffff"),
    "yellow": ("#f4d03f", "#3a3000"),
    "blue": ("#2e86de", "#ffffff"),
    "none": ("#eef1f4", "#55606b"),
}
LEVEL_ORDER = ("red", "orange", "yellow", "blue", "none")
# An expected count the scorer could not estimate (a null ``expected``: too little history), as the report shows it.
NO_BASELINE = "—"
STATUS_NAMES = {
    "new": "新出现",
    "continuing": "持续",
    "rising": "上升",
    "easing": "缓解",
    "resolved": "已化解",
    "quiet": "趋于平稳",
}
LIST_NAMES = {"study": "研判选题", "watch": "观察清单"}
TREND_NAMES = {"new": "新出现", "rising": "上升", "flat": "平稳", "falling": "下降", "unknown": "无历史数据"}
# A topic's count in a month before the feeds' coverage began (a null in topics.json): not known, not none.
NO_DATA = "无数据"
SUBJECT_KINDS = {
    "residential": "小区楼盘",
    "company": "企业",
    "school": "学校",
    "site": "工地项目",
    "market": "市场商超",
    "road": "道路街巷",
    "village": "村社区",
    "facility": "场所设施",
}


def level_name(level: str | None) -> str:
    return LEVEL_NAMES.get(level or "none", level or "无")


def month_count(events: int | None) -> str:
    """A topic's count of one month as the report shows it (``NO_DATA`` for a month the feeds did not cover)."""
    return NO_DATA if events is None else str(events)


def history_counts(monthly_events: list[dict]) -> str:
    """A topic's previous months' counts, 前三月 of the card and the watch list: "—" for a month without
    data, ``NO_DATA`` when none has any."""
    previous = [m["events"] for m in monthly_events[:-1]]
    if previous and all(n is None for n in previous):
        return NO_DATA
    return " / ".join(NO_BASELINE if n is None else str(n) for n in previous)
