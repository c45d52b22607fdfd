"""A remote-write receiver in front of a real one that demands AWS SigV4,
as Amazon Managed Service for Prometheus does: it recomputes each
request's signature from what it received (its own implementation of the
canonical request, string to sign and key derivation, written from AWS's
description of SigV4), answers 403 when the signature, the credential
scope or the date is wrong, and forwards the request otherwise.

    with SigV4Verifier(upstream_port, access_key, secret_key, "eu-west-1", "aps") as v:
        v.url          # http://127.0.0.1:PORT/api/v1/write
        v.accepted, v.rejected, v.reasons
        v.allow(access_key, secret_key, session_token)   # temporary credentials too

check() alone serves other services' fakes (an STS that demands SigV4).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.server
import threading
import urllib.error
import urllib.parse
import urllib.request

from drover_e2e import HOST

FORWARDED = ("Content-Encoding", "Content-Type", "X-Prometheus-Remote-Write-Version", "User-Agent")


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_path(path: str) -> str:
    out = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(urllib.parse.quote(seg, safe="-_.~"))
    p = "/" + "/".join(out)
    return p + "/" if out and path.endswith("/") else p


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((urllib.parse.quote(urllib.parse.unquote(k), safe="-_.~"),
                      urllib.parse.quote(urllib.parse.unquote(v), safe="-_.~")))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


class SigV4Verifier:
    def __init__(self, upstream_port: int, access_key: str, secret_key: str, region: str,
                 service: str):
        self.upstream = "http://%s:%d" % (HOST, upstream_port)
        # access key -> (secret key, the session token it must come with, or None)
        self.keys: dict[str, tuple[str, str | None]] = {}
        if access_key:
            self.keys[access_key] = (secret_key, None)
        self.region, self.service = region, service
        self.accepted = 0
        self.rejected = 0
        self.reasons: list[str] = []
        self.tokens: set[str] = set()
        self.signed_by: dict[str, int] = {}  # well-signed requests by access key
        self.lock = threading.Lock()
        verifier = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                why = verifier.check(self, body)
                if why:
                    with verifier.lock:
                        verifier.rejected += 1
                        verifier.reasons.append(why)
                    self.answer(403, why.encode())
                    return
                with verifier.lock:
                    verifier.accepted += 1
                status, text = verifier.forward(self, body)
                self.answer(status, text)

            def answer(self, status: int, text: bytes):
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://%s:%d/api/v1/write" % (HOST, self.port)

    def __enter__(self) -> "SigV4Verifier":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def allow(self, access_key: str, secret_key: str, session_token: str | None = None) -> None:
        """Temporary credentials handed out: requests signed with them are
        accepted, and only with their own session token."""
        with self.lock:
            self.keys[access_key] = (secret_key, session_token)

    def check(self, h, body: bytes) -> str:
        """Why the request is refused, or ""."""
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "no SigV4 Authorization header"
        fields = dict(f.strip().split("=", 1) for f in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        cred = fields.get("Credential", "").split("/")
        with self.lock:
            secret_key, want_token = self.keys.get(cred[0], (None, None))
        if len(cred) != 5 or secret_key is None or cred[2:] != [self.region, self.service,
                                                                "aws4_request"]:
            return "wrong credential scope %s" % fields.get("Credential")
        amz_date = h.headers.get("X-Amz-Date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            return "bad X-Amz-Date %r" % amz_date
        now = datetime.datetime.now(datetime.timezone.utc)
        if abs((now - when).total_seconds()) > 300 or cred[1] != amz_date[:8]:
            return "X-Amz-Date %s is not now" % amz_date
        signed = fields.get("SignedHeaders", "").split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return "host and x-amz-date must be signed"
        lines = []
        for name in signed:
            values = h.headers.get_all(name) or []
            if not values:
                return "signed header %s is missing" % name
            lines.append("%s:%s" % (name, ",".join(" ".join(v.split()) for v in values)))
        path, _, query = h.path.partition("?")
        creq = "\n".join([h.command, _canonical_path(path), _canonical_query(query),
                          "\n".join(lines) + "\n", ";".join(signed), _sha256(body)])
        scope = "%s/%s/%s/aws4_request" % (cred[1], self.region, self.service)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256(creq.encode())])
        key = _hmac(("AWS4" + secret_key).encode(), cred[1])
        for part in (self.region, self.service, "aws4_request"):
            key = _hmac(key, part)
        want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, fields.get("Signature", "")):
            return "signature does not match"
        token = h.headers.get("X-Amz-Security-Token")
        if want_token is not None and (token != want_token or
                                       "x-amz-security-token" not in signed):
            return "the session token of %s is missing, wrong or not signed" % cred[0]
        with self.lock:
            if token:
                self.tokens.add(token)
            self.signed_by[cred[0]] = self.signed_by.get(cred[0], 0) + 1
        return ""

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
