"""An OAuth2 token endpoint and a receiver guard for the oauth2 tests, on
127.0.0.1.

TokenServer is an RFC 6749 client-credentials endpoint: it checks each
token request (POST, form-encoded, grant_type=client_credentials, the
client authenticated by HTTP Basic over the form-escaped id and secret,
the scope and the extra parameters it was told to expect), records it,
and hands out tokens that expire after `expires_in` seconds. It can be
made to fail (503, a garbage answer, a JSON error) and can revoke every
token it gave. With jwt_subject, the tokens are unsecured JWTs (RFC 7519
section 6: alg "none", empty signature) naming that subject, with iat and
exp: what Kafka's default OAUTHBEARER validator takes, and what librdkafka
reads the token's lifetime and principal from.

BearerGuard is a reverse proxy in front of a real receiver
(VictoriaMetrics, Loki) that lets through only requests whose
`Authorization: Bearer` token the TokenServer gave and still holds valid,
answering 401 otherwise, as a managed backend does.

    with TokenServer("id", "secret", expires_in=3) as ts, BearerGuard(port, ts) as g:
        ts.url, g.url_for("/api/v1/write"), ts.requests, g.accepted, g.rejected
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from drover_e2e import HOST

FORWARDED = ("Content-Encoding", "Content-Type", "X-Prometheus-Remote-Write-Version",
             "X-Scope-OrgID", "User-Agent")


class _Server:
    """A threading HTTP server on a free loopback port, as a context manager."""

    def __init__(self, handler):
        self.server = http.server.ThreadingHTTPServer((HOST, 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _answer(h, status: int, body: bytes, content_type: str = "application/json") -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


class TokenServer(_Server):
    def __init__(self, client_id: str, client_secret: str, *, expires_in: int | None = 3600,
                 scope: str | None = None, params: dict | None = None,
                 jwt_subject: str | None = None):
        self.client_id = client_id
        self.jwt_subject = jwt_subject
        self.client_secrets = {client_secret}  # those accepted (a rotation holds two)
        self.expires_in = expires_in
        self.scope = scope
        self.params = dict(params or {})
        self.fail_mode = ""  # "", "503", "garbage", "invalid_client"
        self.requests: list[dict] = []  # every token request: {time, ok, why, form, headers}
        self.valid: dict[str, float] = {}  # token -> expiry (monotonic; inf: none)
        self.issued = 0
        self.lock = threading.Lock()
        ts = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = ts.handle(self, body)
                _answer(self, status, answer)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return "http://%s:%d/oauth2/token" % (HOST, self.port)

    def check(self, h, body: bytes) -> str:
        """Why the token request is wrong, or ""."""
        if h.path != "/oauth2/token":
            return "path %s" % h.path
        if h.headers.get("Content-Type", "") != "application/x-www-form-urlencoded":
            return "Content-Type %r" % h.headers.get("Content-Type")
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return "no Basic client authentication"
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if (urllib.parse.unquote_plus(user) != self.client_id or
                urllib.parse.unquote_plus(password) not in self.client_secrets):
            return "wrong client credentials %r:%r" % (user, password)
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
        if form.pop("grant_type", None) != ["client_credentials"]:
            return "grant_type is not client_credentials"
        want_scope = [self.scope] if self.scope is not None else None
        if form.pop("scope", None) != want_scope:
            return "scope %r, want %r" % (form.get("scope"), want_scope)
        got = {k: v[0] for k, v in form.items() if len(v) == 1}
        if got != self.params or len(got) != len(form):
            return "parameters %r, want %r" % (form, self.params)
        return ""

    @staticmethod
    def secret_of(h) -> str:
        """The client secret a request authenticated with ("" when none)."""
        auth = h.headers.get("Authorization", "")
        try:
            pair = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
        except ValueError:
            return ""
        return urllib.parse.unquote_plus(pair.partition(":")[2])

    def handle(self, h, body: bytes) -> tuple[int, bytes]:
        why = self.check(h, body)
        rec = {"time": time.monotonic(), "why": why, "body": body,
               "headers": dict(h.headers.items()), "mode": self.fail_mode,
               "secret": self.secret_of(h)}
        with self.lock:
            self.requests.append(rec)
            if why:
                return 400, json.dumps({"error": "invalid_request",
                                        "error_description": why}).encode()
            if self.fail_mode == "503":
                return 503, b"token service unavailable"
            if self.fail_mode == "garbage":
                return 200, b"\x00\xffnot json at all{{{"
            if self.fail_mode == "invalid_client":
                return 401, b'{"error":"invalid_client","error_description":"client disabled"}'
            self.issued += 1
            token = "tok-%d-%s" % (self.issued, base64.urlsafe_b64encode(
                self.issued.to_bytes(4, "big")).decode().rstrip("="))
            if self.jwt_subject is not None:
                token = self.unsecured_jwt(token)
            answer = {"access_token": token, "token_type": "Bearer"}
            if self.expires_in is not None:
                answer["expires_in"] = self.expires_in
                self.valid[token] = time.monotonic() + self.expires_in
            else:
                self.valid[token] = float("inf")
            return 200, json.dumps(answer).encode()

    def unsecured_jwt(self, token_id: str) -> str:
        def b64(obj) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")
        now = int(time.time())
        life = self.expires_in if self.expires_in is not None else 3600
        claims = {"sub": self.jwt_subject, "iat": now, "exp": now + life, "jti": token_id}
        return "%s.%s." % (b64({"alg": "none"}), b64(claims))

    def token_ok(self, token: str) -> bool:
        with self.lock:
            return self.valid.get(token, 0.0) > time.monotonic()

    def revoke_all(self) -> None:
        with self.lock:
            self.valid.clear()

    def fetches(self, *, ok: bool | None = None) -> list[dict]:
        """The token requests, all or those that were (not) well formed."""
        with self.lock:
            return [r for r in self.requests if ok is None or (not r["why"]) == ok]


class BearerGuard(_Server):
    def __init__(self, upstream_port: int, tokens: TokenServer):
        self.upstream = "http://%s:%d" % (HOST, upstream_port)
        self.tokens = tokens
        self.accepted = 0
        self.rejected = 0
        self.reasons: list[str] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        guard = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                auth = self.headers.get("Authorization", "")
                token = auth[7:] if auth.startswith("Bearer ") else ""
                if not token or not guard.tokens.token_ok(token):
                    with guard.lock:
                        guard.rejected += 1
                        guard.reasons.append("no token" if not token else "token %s" % token)
                    _answer(self, 401, b"unauthorized", "text/plain")
                    return
                with guard.lock:
                    guard.accepted += 1
                    guard.seen.add(token)
                status, text = guard.forward(self, body)
                _answer(self, status, text, "text/plain")

        super().__init__(Handler)

    def url_for(self, path: str) -> str:
        return "http://%s:%d%s" % (HOST, self.port, path)

    def forward(self, h, body: bytes) -> tuple[int, bytes]:
        headers = {k: h.headers[k] for k in FORWARDED if h.headers.get(k)}
        req = urllib.request.Request(self.upstream + h.path, data=body, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 502, str(e).encode()
