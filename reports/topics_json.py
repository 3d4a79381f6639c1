"""topics.json: the month's topic list for other systems, with stable English keys.

Next month's run reads it back (``read_topics_json``) to set each topic's status."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import schemas
from models.topics import TopicList

# 2: a topic's ``monthly_events`` count is null for a month before the feeds' coverage began (1: 0), and its
# ``trend`` may be "unknown" (no covered month). Last month's document is read in either form: the status
# matching reads neither field.
FORMAT_VERSION = 2


def topics_document(topic_list: TopicList, generated_at: datetime | None = None) -> dict:
    generated_at = generated_at or datetime.now(ZoneInfo(schemas.TIMEZONE))
    return {
        "format_version": FORMAT_VERSION,
        "month": topic_list.month,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "taxonomy_version": str(schemas.taxonomy().get("version")),
        "topics": [t.as_json() for t in topic_list.topics],
        "closed_topics": topic_list.closed,
    }


def write_topics_json(path: str | Path, topic_list: TopicList, generated_at: datetime | None = None) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(topics_document(topic_list, generated_at), f, ensure_ascii=False, indent=2)
        f.write("\n")
    return path


def read_topics_json(path: str | Path) -> dict | None:
    """Last month's document, or None when that month has no report (the first run)."""
    path = Path(path)
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
