"""OAuth2 client credentials (the `oauth2` map of the HTTP outputs) against a
local token endpoint and real receivers guarded by a bearer check
(oauth2_server.py): VictoriaMetrics behind remote_write, Loki behind the
loki output.

  test_remote_write_oauth2_refresh_and_401   the token request as RFC 6749 4.4 says
      (Basic client authentication, grant_type, scope, endpoint params), a 3 s token
      renewed before it expires, a rotated client_secret_file, every token revoked
      (401: fetched again and sent once more); every sample in VictoriaMetrics
  test_loki_token_endpoint_down_nothing_lost   the token endpoint failing for a while
      (503, garbage, an RFC 6749 error): requests held, retried with backoff, counted;
      every line in Loki exactly once afterwards
  test_oauth2_config_errors                   one way to authenticate, with file:line
"""

from __future__ import annotations

import base64
import subprocess
import time
import urllib.parse

import pytest

from drover_e2e import Delivery, WriterProcess, wait_until, yaml_str
from metrics_servers import Answer, payloads, victoria  # noqa: F401
from oauth2_server import BearerGuard, TokenServer
from servers import loki, loki_bin, start_loki  # noqa: F401
from test_loki_output import (SEL, as_records, drover_config, loki_output, node_paths, read_back,
                              start_time, wait_loki_count)
from test_remote_write import VM_REL, compare_eventually, config, produced

CLIENT_ID = "drover agent@e2e"
SECRET_1 = "s3:cr/t+one&"
SECRET_2 = "second secret"


def oauth2_map(ts: TokenServer, secret_file: str, extra: str = "") -> str:
    return ("oauth2:\n"
            "  client_id: %s\n"
            "  client_secret_file: %s\n"
            "  token_url: %s\n"
            "%s" % (yaml_str(CLIENT_ID), yaml_str(secret_file), yaml_str(ts.url), extra))


def token_metric(d, result: str) -> float:
    return d.metrics().get("drover_oauth2_token_requests_total", result=result)


@pytest.mark.time_limit(150)
def test_remote_write_oauth2_refresh_and_401(start_drover, payloads, victoria, tmp_path):
    payloads.set("/metrics", Answer(b"# TYPE oauth_total counter\noauth_total 42\n"
                                    b"# TYPE oauth_gauge gauge\noauth_gauge{k=\"v\"} 1.5\n"))
    secret = tmp_path / "client-secret"
    secret.write_text(SECRET_1 + "\n")
    job = "- job_name: oauth\n  static_configs: [{targets: [%s]}]\n" % payloads.address
    with TokenServer(CLIENT_ID, SECRET_1, expires_in=3, scope="metrics.write tenant:7",
                     params={"audience": "https://metrics.example/", "resource": "a b"}) as ts, \
            BearerGuard(victoria.port, ts) as guard:
        cfg, out = config(tmp_path, job, guard.url_for("/api/v1/write"), rw_extra=oauth2_map(
            ts, str(secret),
            "  scopes: [metrics.write, \"tenant:7\"]\n"
            "  endpoint_params: {audience: \"https://metrics.example/\", resource: a b}\n"))
        d = start_drover(cfg)
        d.wait_ready()

        # the token request itself
        wait_until(lambda: ts.fetches(), 15, what="a token request")
        first = ts.fetches()[0]
        assert not first["why"], first["why"]
        user, _, pw = base64.b64decode(first["headers"]["Authorization"][6:]).decode().partition(":")
        assert user == urllib.parse.quote_plus(CLIENT_ID) and pw == urllib.parse.quote_plus(SECRET_1)
        form = urllib.parse.parse_qs(first["body"].decode())
        assert form == {"grant_type": ["client_credentials"], "scope": ["metrics.write tenant:7"],
                        "audience": ["https://metrics.example/"], "resource": ["a b"]}, form

        # 3 s tokens: renewed before they expire, so no request is ever refused
        wait_until(lambda: len(ts.fetches(ok=True)) >= 4 and guard.accepted >= 8, 30,
                   what="four tokens fetched and requests sent with them")
        assert guard.rejected == 0, guard.reasons[:5]
        assert len(guard.seen) >= 3, guard.seen
        fetches = ts.fetches(ok=True)
        gaps = [b["time"] - a["time"] for a, b in zip(fetches, fetches[1:])]
        # renewed in the token's last 20%, when a request asks for it
        assert all(1.5 < g < 4.5 for g in gaps), gaps

        # the secret rotates: the file is read again at the next fetch
        with ts.lock:
            ts.client_secrets.add(SECRET_2)
        n = len(ts.fetches())
        secret.write_text(SECRET_2 + "\n")
        wait_until(lambda: [r for r in ts.fetches()[n:] if r["secret"] == SECRET_2], 15,
                   what="a token fetched with the new secret")
        with ts.lock:
            ts.client_secrets.discard(SECRET_1)
        n = len(ts.fetches())
        wait_until(lambda: len(ts.fetches()) >= n + 1, 15, what="one more token")
        assert [r["secret"] for r in ts.fetches()[n:]] == [SECRET_2] * len(ts.fetches()[n:])

        # every token revoked: the next request gets a 401, a new token is
        # fetched at once and the request sent again; nothing is dropped
        with ts.lock:
            ts.expires_in = None  # tokens without expires_in: kept until a 401
        n = len(ts.fetches(ok=True))
        wait_until(lambda: len(ts.fetches(ok=True)) >= n + 1, 10, what="a token without expiry")
        time.sleep(2.5)
        n, rejected = len(ts.fetches(ok=True)), guard.rejected
        assert n == len(ts.fetches(ok=True)), "a token without expires_in is kept"
        ts.revoke_all()
        wait_until(lambda: guard.rejected > rejected and len(ts.fetches(ok=True)) > n, 15,
                   what="a 401 and a new token")
        accepted = guard.accepted
        wait_until(lambda: guard.accepted > accepted + 2, 15, what="requests with the new token")
        assert all(r.startswith("token tok-") for r in guard.reasons), guard.reasons[-5:]

        m = d.metrics()
        assert m.get("drover_dropped_records_total", name="rw") == 0, \
            m.find("drover_dropped_records_total")
        assert m.get("drover_oauth2_token_requests_total", name="rw", result="error") == 0
        assert m.get("drover_oauth2_token_requests_total", name="rw", result="ok") == \
            len(ts.fetches(ok=True))
        assert d.stop() == 0
        compare_eventually(produced(out), lambda: victoria.export('{job="oauth"}'), rel=VM_REL)


@pytest.mark.time_limit(150)
def test_loki_token_endpoint_down_nothing_lost(start_loki, start_drover, track, tmp_path):
    srv = start_loki()
    secret = tmp_path / "client-secret"
    secret.write_text(SECRET_1)
    root = tmp_path / "node"
    with TokenServer(CLIENT_ID, SECRET_1, expires_in=60) as ts, \
            BearerGuard(srv.http_port, ts) as guard:
        ts.fail_mode = "503"
        w = WriterProcess(str(root), str(tmp_path), seed=913, rate=300, duration=14)
        track(w.start())
        time.sleep(0.5)
        out = loki_output("loki", guard.url_for("/loki/api/v1/push"), batch_wait="200ms")
        out += "".join("    " + line + "\n" for line in
                       oauth2_map(ts, str(secret), "  scopes: [logs]\n").splitlines())
        ts.scope = "logs"
        d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[out]))
        d.wait_ready()

        # 503, then garbage, then an RFC 6749 error: nothing reaches Loki,
        # nothing is dropped, the failures are retried with backoff and counted
        wait_until(lambda: len(ts.fetches()) >= 2, 15, what="two failed token requests")
        ts.fail_mode = "garbage"
        n = len(ts.fetches())
        wait_until(lambda: len(ts.fetches()) > n, 15, what="a garbage answer")
        ts.fail_mode = "invalid_client"
        n = len(ts.fetches())
        wait_until(lambda: len(ts.fetches()) > n, 20, what="an invalid_client answer")
        assert guard.accepted == 0 and guard.rejected == 0, "requests went out without a token"
        m = d.metrics()
        assert m.get("drover_oauth2_token_requests_total", name="loki", result="error") >= 4
        assert m.get("drover_dropped_records_total") == 0
        assert m.get("drover_output_records_total", name="loki") == 0
        tries = ts.fetches()
        gaps = [b["time"] - a["time"] for a, b in zip(tries, tries[1:])]
        assert gaps[0] >= 0.4 and max(gaps) >= 1.5, gaps  # backoff, not a busy loop
        log = d.log_text()
        assert "oauth2: cannot get a token" in log
        assert "token endpoint answered 503" in log
        assert "token endpoint answer is not JSON" in log
        assert "token endpoint answered 401: invalid_client: client disabled" in log

        ts.fail_mode = ""  # the endpoint recovers
        expected = w.finish()
        t0 = start_time(expected)
        c = wait_loki_count(srv, SEL, t0, len(expected), timeout=60)
        entries = read_back(srv, SEL, t0)
        m = d.metrics()
        assert d.stop() == 0
        dl = Delivery(expected, as_records(entries))
        print("\noauth2 loki: %d lines, Loki count %d, token requests %d (%d failed)\n  %s"
              % (len(expected), c, len(ts.fetches()), len(ts.fetches()) - ts.issued, dl.summary()))
        dl.assert_exactly_once()
        assert guard.rejected == 0, guard.reasons[:5]
        assert ts.issued == 1, "one 60 s token serves the whole run"
        assert m.get("drover_oauth2_token_requests_total", name="loki", result="ok") == 1
        assert m.get("drover_dropped_records_total") == 0


def test_oauth2_config_errors(drover_bin, tmp_path):
    def check(outputs: str) -> str:
        path = tmp_path / "drover.yaml"
        path.write_text("inputs:\n  - {name: pods, type: tail, paths: [/nonexistent/*.log]}\n"
                        "outputs:\n" + outputs)
        p = subprocess.run([drover_bin, "--check-config", "-c", str(path)],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        assert p.returncode != 0, p.stdout
        return p.stderr.decode() + p.stdout.decode()

    base = ("  - name: out\n    type: %s\n    match: pods\n    url: http://127.0.0.1:1/push\n")
    err = check(base % "loki" + "    basic_auth: {username: u, password: p}\n"
                "    oauth2:\n      client_id: a\n      client_secret: b\n"
                "      token_url: http://127.0.0.1:1/token\n")
    assert "drover.yaml:10:7: outputs[0].oauth2: cannot be set with basic_auth" in err, err
    err = check(base % "remote_write" + "    oauth2: {client_id: a, client_secret: b, "
                "token_url: \"http://127.0.0.1:1/t\"}\n    sigv4: {region: eu-west-1}\n")
    assert "drover.yaml:9:12: outputs[0].sigv4: cannot be set with oauth2" in err, err
    err = check(base % "http" + "    oauth2: {client_id: a, token_url: \"http://127.0.0.1:1/t\"}\n")
    assert "oauth2: set one of client_secret and client_secret_file" in err, err
    err = check(base % "http" + "    oauth2: {client_id: a, client_secret: b, "
                "token_url: \"http://127.0.0.1:1/t\", endpoint_params: {grant_type: x}}\n")
    assert "drover.yaml:8:99: oauth2.endpoint_params.grant_type: set by drover itself" in err, err
