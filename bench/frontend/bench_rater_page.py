"""Rater page figures: server time of the annotate page, bytes shipped, Enter-to-next in Chromium.

Run (PostgreSQL + Chromium, like the tests):
    pytest bench/frontend/bench_rater_page.py -o python_files='bench_*.py' -p no:cacheprovider -s
Writes bench/results/frontend.json and prints one line per figure.
"""
import gzip
import io
import json
import os
import re
import statistics
import time
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.db import connection

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls between Playwright steps

from annotation.importer import import_items  # noqa: E402
from annotation.models import Annotation  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, login  # noqa: E402
from tests.factories import UserFactory, add_member, make_project  # noqa: E402

LOADS = 200
BROWSER_ITEMS = 40
ITEMS = 5000
RESULTS = Path(__file__).resolve().parents[1] / "results" / "frontend.json"

RESPONSE = """Here is a way to do it.

1. Read the file line by line.
2. Keep a running **count** per key.

```python
from collections import Counter

def top_words(path, n=10):
    counts = Counter()
    with open(path) as f:
        for line in f:
            counts.update(line.split())
    return counts.most_common(n)
```

| step | cost |
|---|---|
| read | O(n) |
| sort | O(k log k) |

This runs in linear time; see [the docs](https://docs.python.org/3/library/collections.html).
"""


def _p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _project(mode, **config):
    project = make_project(mode, **config)
    n = {"pairwise": 2, "ranking": project.config.get("k", 4), "rating": 1}[mode]
    rows = [{"id": f"q{i}", "prompt": f"Question {i}: how do I count words in a big file?",
             "responses": [f"Variant {j} of answer {i}.\n\n{RESPONSE}" for j in range(n)]} for i in range(ITEMS)]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    import_items(project=project, stream=io.BytesIO(body), filename="bench.jsonl")
    # Steady state: autovacuum analyses the tables within a minute of a bulk import. Without fresh
    # statistics PostgreSQL plans the queue's claim query as a nested loop and it grows with every answer.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_item, annotation_itemresponse, annotation_assignment, annotation_response")
    return project


def _static_bytes(html: str) -> dict:
    paths = re.findall(r'<script src="/static/([^"]+)"', html) + re.findall(r'<link rel="stylesheet" href="/static/([^"]+)"', html)
    raw = gz = 0
    for p in paths:
        data = Path(finders.find(p)).read_bytes()
        raw += len(data)
        gz += len(gzip.compress(data, 9))
    return {"files": paths, "bytes": raw, "gzip_bytes": gz}


@pytest.mark.django_db(transaction=True)
def test_rater_page_figures(client, live_server):
    results = {"load_average_before": os.getloadavg()[0]}
    rater = UserFactory(username="bench")
    pairwise = _project("pairwise")
    add_member(pairwise, rater)
    client.force_login(rater)
    url = f"/p/{pairwise.slug}/"
    client.get(url)  # lease an item, warm caches
    queries = []
    with connection.execute_wrapper(lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)):
        html = client.get(url).content.decode()
    timings = []
    for _ in range(LOADS):
        t0 = time.perf_counter()
        r = client.get(url)
        timings.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
    results["annotate_page_ms"] = {"loads": LOADS, "p50": round(_p(timings, .5), 2), "p95": round(_p(timings, .95), 2),
                                   "max": round(max(timings), 2), "queries": len(queries), "html_bytes": len(html)}

    # Submitting and getting the next item's partial, as htmx does on Enter.
    timings = []
    for i in range(LOADS):
        page = client.get(f"/p/{pairwise.slug}/stage/").content.decode()
        action = re.search(r'<form id="annotate-form"[^>]*action="([^"]+)"', page).group(1)
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
        t0 = time.perf_counter()
        r = client.post(action, {"choice": "A", "strength": "slight", "idempotency_key": key}, HTTP_HX_REQUEST="true")
        timings.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
    results["submit_and_next_partial_ms"] = {"posts": LOADS, "p50": round(_p(timings, .5), 2),
                                             "p95": round(_p(timings, .95), 2), "max": round(max(timings), 2)}
    results["shipped_pairwise_page"] = _static_bytes(html)
    ranking = make_project("ranking")
    add_member(ranking, rater)
    results["shipped_ranking_page"] = _static_bytes(client.get(f"/p/{ranking.slug}/").content.decode())

    # Enter to the next item on screen, in Chromium against the live server.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport=DESKTOP).new_page()
        login(page, live_server, "bench")
        page.goto(f"{live_server.url}{url}")
        page.evaluate("""() => {
            document.addEventListener('keydown', e => { if (e.key === 'Enter') { window.__t0 = performance.now(); window.__t1 = null; } }, true);
            document.addEventListener('htmx:afterSettle', () => requestAnimationFrame(() => { window.__t1 = performance.now(); }));
        }""")
        enter = []
        for _ in range(BROWSER_ITEMS):
            old = page.locator("#annotate-form").get_attribute("data-item")
            page.keyboard.press("1")
            page.keyboard.press("w")
            page.keyboard.press("Enter")
            page.wait_for_function("old => window.__t1 && document.querySelector('#annotate-form').dataset.item !== old", arg=old)
            enter.append(page.evaluate("window.__t1 - window.__t0"))
        browser.close()
    results["enter_to_next_item_ms"] = {"items": BROWSER_ITEMS, "p50": round(_p(enter, .5), 1),
                                        "p95": round(_p(enter, .95), 1), "max": round(max(enter), 1)}
    assert Annotation.objects.filter(rater=rater).count() == LOADS + BROWSER_ITEMS
    results["load_average_after"] = os.getloadavg()[0]
    results["machine"] = f"{os.cpu_count()} CPUs; database {connection.vendor}; {ITEMS} items in the project"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print("\n" + json.dumps(results, indent=2))
