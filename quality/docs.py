"""Data Docs of a quality run, built by great-expectations' own site builder into
``<out>/quality/YYYY-MM/data_docs/`` and made to render offline: every CDN asset the pages load is
rewritten to the vendored copy under ``static/vendor/`` (see static/vendor.yaml)."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier, ValidationResultIdentifier

from quality.validation import QualityRun
from schemas import read_yaml

STATIC_DIR = Path(__file__).resolve().parent / "static"
SITE_NAME = "riskwatch_quality"


def vendor_manifest() -> dict:
    return read_yaml(STATIC_DIR / "vendor.yaml")


def build(run: QualityRun, site_dir: Path) -> Path:
    """Build the site from the run's validation results; return the index page."""
    site_dir = Path(site_dir)
    if site_dir.exists():
        shutil.rmtree(site_dir)          # idempotent per month: no pages left from an earlier run
    context = run.context
    for name, suite in run.suites.items():
        context.suites.add_or_update(suite)
    run_time = dt.datetime.now(dt.timezone.utc)
    for suite_name, label, result in run.results:
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=RunIdentifier(run_name=run.run_name, run_time=run_time),
            batch_identifier=re.sub(r"[^\w.@-]+", "_", label),
        )
        context.validation_results_store.set(key, result)
    context.add_data_docs_site(site_name=SITE_NAME, site_config={
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    try:
        context.build_data_docs(site_names=[SITE_NAME])
    finally:
        context.delete_data_docs_site(SITE_NAME)
    make_offline(site_dir)
    return site_dir / "index.html"


def make_offline(site_dir: Path) -> None:
    """Copy the vendored assets into the site and point every page at them."""
    manifest = vendor_manifest()
    vendor_dir = Path(site_dir) / "static" / "vendor"
    shutil.copytree(STATIC_DIR / "vendor", vendor_dir, dirs_exist_ok=True)
    urls = sorted(manifest["assets"], key=lambda a: -len(a["url"]))
    for page in Path(site_dir).rglob("*.html"):
        rel = os.path.relpath(site_dir, page.parent).replace(os.sep, "/")
        text = page.read_text(encoding="utf-8")
        for asset in urls:
            # Longest URLs first: "vega@5" must not eat the start of "vega-lite@5".
            text = re.sub(re.escape(asset["url"]) + r'(?=["\'?])', f"{rel}/static/vendor/{asset['path']}", text)
        for image in manifest.get("site_images", []):
            text = re.sub(re.escape(image["url_prefix"]) + r'([^"\'?]+)(\?[^"\']*)?', rf"{rel}/{image['site_dir']}\1", text)
        text = re.sub(r'(<(?:script|link)\b[^>]*?)' + r'((?:\s+(?:integrity|crossorigin)="[^"]*")+)', lambda m: m.group(1), text)
        page.write_text(text, encoding="utf-8")


def external_urls(site_dir: Path) -> list[str]:
    """Absolute URLs the built pages would load (src/href of scripts, styles, images)."""
    found = set()
    for page in Path(site_dir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r'<(?:script|link|img)\b[^>]*?(?:src|href)="(https?://[^"]+)"', text):
            found.add(m.group(1))
    return sorted(found)
