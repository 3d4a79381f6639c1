"""Row-level expectations generated from the feed contracts (schemas/feeds/*.yaml) and event.yaml.

The contracts are the one source of truth: a county that adds a canonical status value or changes
a range edits the YAML and the suite follows. Every expectation carries ``meta``: the ``check``
(its policy name), the Event ``field`` and the contract ``contract_field`` it came from.
"""
from __future__ import annotations

import schemas

ID_COLUMN = "event_id"


def event_field_names() -> set[str]:
    return {f["name"] for f in schemas.event_fields()}


def event_field_of(contract_field: dict) -> str | None:
    """The Event column a contract field lands in: same name, ``<name>_code`` for regions, or the
    PII target (``caller_phone`` → ``caller_key``); ``None`` when the field is dropped."""
    names = event_field_names()
    pii = contract_field.get("pii")
    if pii == "drop":
        return None
    if pii:
        return pii if pii in names else None
    for candidate in (contract_field["name"], f"{contract_field['name']}_code"):
        if candidate in names:
            return candidate
    return None


def mapped_fields(feed: str) -> list[tuple[dict, str]]:
    """(contract field, Event column) for every contract field that reaches the Event."""
    out = []
    for field in schemas.feed_contract(feed)["fields"]:
        column = event_field_of(field)
        if column:
            out.append((field, column))
    return out


def _meta(check: str, field: str | None = None, **extra) -> dict:
    return {"check": check, "field": field, **extra}


def contract_expectations(feed: str, policy) -> list:
    """The feed's row-level expectations: required fields, canonical values, ranges, ids."""
    # imported here: the field mapping above also serves the report's wording, which needs no GX
    import great_expectations.expectations as gxe

    unknown_share = policy.threshold("unknown_category").get("max_share", 0.0)
    contract = schemas.feed_contract(feed)
    expectations = []
    required = [f["name"] for f in schemas.event_fields() if f.get("required")]
    # Region fields are resolved against the gazetteer and may stay empty (flagged, never guessed):
    # the region_resolution check watches them, not a not-null expectation.
    required += [column for field, column in mapped_fields(feed)
                 if field.get("required") and field["type"] != "region" and column not in required]
    for column in required:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column, meta=_meta("required_field", column)))
    expectations.append(
        gxe.ExpectColumnValuesToBeInSet(column="source", value_set=[contract["feed"]], meta=_meta("source_matches", "source"))
    )
    expectations.append(gxe.ExpectColumnValuesToBeUnique(column=ID_COLUMN, meta=_meta("id_unique", ID_COLUMN)))
    for field, column in mapped_fields(feed):
        values = field.get("values")
        if isinstance(values, dict):
            # Canonical mapping: the Event carries only the canonical keys.
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=column, value_set=sorted(values), meta=_meta("canonical_value", column, contract_field=field["name"])
                )
            )
        elif isinstance(values, list):
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=column, value_set=list(values), mostly=1.0 - unknown_share, meta=_meta("unknown_category", column, contract_field=field["name"])
                )
            )
        if "range" in field:
            low, high = field["range"]
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=column, min_value=low, max_value=high, meta=_meta("value_range", column, contract_field=field["name"])
                )
            )
    return expectations


def department_category_columns(feed: str) -> list[str]:
    """Event columns holding a department's own category list (kept as given): watched for drift
    and vanished categories. Canonical fields such as status are left out: their mix moves with
    the age of the records (recent work orders are still open), not with the feed's health."""
    return [column for field, column in mapped_fields(feed) if field.get("type") == "category" and isinstance(field.get("values"), list)]


def key_columns(feed: str) -> list[str]:
    """Optional columns a feed fills: watched for going empty. Required ones are row-level checks;
    region columns come from the gazetteer and are watched by the region-resolution check."""
    return [column for field, column in mapped_fields(feed) if not field.get("required") and field["type"] != "region"]
