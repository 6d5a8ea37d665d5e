"""Web hardening (issue 14): login throttling, a Content-Security-Policy on every page, HSTS and the proxy's
scheme when cookies are secure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import AdminFactory, UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def post_login(client, username, password, url="/accounts/login/"):
    return client.post(url, {"username": username, "password": password, "next": "/"}, REMOTE_ADDR="203.0.113.9")


def test_fifty_wrong_passwords_then_the_right_one_does_not_log_in(client):
    UserFactory(username="rita")  # password pw-12345678
    for _ in range(50):
        post_login(client, "rita", "wrong-guess")
    response = post_login(client, "rita", "pw-12345678")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    page = response.content.decode()
    assert "Too many failed log-ins" in page and "Try again in 15 minutes" in page
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert client.get("/").status_code == 302  # still signed out


def test_a_few_mistakes_do_not_lock_and_a_success_starts_the_count_again(client):
    UserFactory(username="rita")
    for _ in range(3):
        assert post_login(client, "rita", "wrong-guess").status_code == 200
    assert post_login(client, "rita", "pw-12345678").status_code == 302
    client.logout()
    for _ in range(3):
        post_login(client, "rita", "wrong-guess")
    assert post_login(client, "rita", "pw-12345678").status_code == 302


def test_the_django_admin_login_is_throttled_too(client):
    AdminFactory(username="boss")
    for _ in range(50):
        post_login(client, "boss", "wrong-guess", url="/admin/login/")
    response = post_login(client, "boss", "pw-12345678", url="/admin/login/")
    assert response.status_code == 429 and "_auth_user_id" not in client.session


@pytest.mark.parametrize("path, who", [
    ("/accounts/login/", None), ("/admin/login/", None), ("/admin/", "admin"), ("/api/docs/", "admin"),
    ("/no-such-page/", "rater"), ("/manage/", "rater"), ("/", "rater"), ("/api/schema/", "admin"),
])
def test_every_page_carries_the_content_security_policy(client, path, who):
    if who:
        client.force_login(AdminFactory() if who == "admin" else UserFactory())
    response = client.get(path)
    policy = response["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'",
                      "frame-ancestors 'none'"):
        assert directive in policy, (path, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_the_api_docs_page_has_no_inline_script_or_style(admin_client):
    html = admin_client.get("/api/docs/").content.decode()
    assert "<style" not in html and "<script>" not in html


def settings_with(**env) -> dict:
    """Settings as a fresh process reads them from the environment."""
    code = ("import json, django; from django.conf import settings; django.setup(); "
            "print(json.dumps({k: getattr(settings, k) for k in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
            "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_PROXY_SSL_HEADER', "
            "'SECURE_SSL_REDIRECT')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x" * 50, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_secure_cookies_bring_hsts_and_the_proxys_scheme():
    secure = settings_with(DEBUG="false", SECURE_COOKIES="true")
    assert secure["SESSION_COOKIE_SECURE"] and secure["CSRF_COOKIE_SECURE"]
    assert secure["SECURE_HSTS_SECONDS"] == 31_536_000 and secure["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert secure["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert secure["SECURE_SSL_REDIRECT"] is False
    tuned = settings_with(DEBUG="false", SECURE_COOKIES="true", SECURE_HSTS_SECONDS="600",
                          SECURE_HSTS_INCLUDE_SUBDOMAINS="true", SECURE_SSL_REDIRECT="true")
    assert tuned["SECURE_HSTS_SECONDS"] == 600 and tuned["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and tuned["SECURE_SSL_REDIRECT"]
    plain = settings_with(DEBUG="true", SECURE_COOKIES="false")
    assert plain["SECURE_HSTS_SECONDS"] == 0 and plain["SECURE_PROXY_SSL_HEADER"] is None


def test_hsts_is_sent_on_a_request_the_proxy_marks_as_https(client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
