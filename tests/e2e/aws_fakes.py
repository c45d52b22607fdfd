"""Local stand-ins for the services that hand out temporary AWS
credentials, answering in their documented request and response shapes
and recording every request they get:

    AwsFakes()             one HTTP server on loopback holding three services:
      .sts_url             STS query API (POST /, form-encoded): Action=
                           AssumeRoleWithWebIdentity (unsigned; RoleArn,
                           RoleSessionName, WebIdentityToken checked against
                           .web_identity) and Action=AssumeRole (SigV4-signed
                           for service sts with a key of .assume_role_keys)
      .container_url       the container credential endpoint (GET
                           /container/creds, Authorization checked against
                           .container_token)
      .imds_url            IMDSv2: PUT /latest/api/token with
                           X-aws-ec2-metadata-token-ttl-seconds, then GETs of
                           /latest/meta-data/iam/security-credentials/[ROLE]
                           with X-aws-ec2-metadata-token
      .lifetime_s          how long handed-out credentials live
      .on_issue(ak, sk, token)   called for every set handed out
      .fail_next[source]   answers to give instead of the next ones (status, body)
      .requests            (source, method, path, headers, body) of each request
      .issued[source]      the access keys handed out, in order

A request that does not have the shape the service wants is refused the
way the service refuses it (STS: an ErrorResponse; IMDS: 401), and
recorded in .refusals.
"""

from __future__ import annotations

import datetime
import http.server
import secrets
import threading
import urllib.parse

from drover_e2e import HOST
from sigv4_verifier import SigV4Verifier

IMDS_ROLE = "eks-node-role"


def _expiration(lifetime_s: float) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sts_credentials_xml(action: str, ak: str, sk: str, token: str, exp: str) -> bytes:
    return ("<%(a)sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
            "  <%(a)sResult>\n"
            "    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/amp/drover</Arn>"
            "<AssumedRoleId>AROAEXAMPLE:drover</AssumedRoleId></AssumedRoleUser>\n"
            "    <Credentials>\n"
            "      <AccessKeyId>%(ak)s</AccessKeyId>\n"
            "      <SecretAccessKey>%(sk)s</SecretAccessKey>\n"
            "      <SessionToken>%(token)s</SessionToken>\n"
            "      <Expiration>%(exp)s</Expiration>\n"
            "    </Credentials>\n"
            "  </%(a)sResult>\n"
            "  <ResponseMetadata><RequestId>%(id)s</RequestId></ResponseMetadata>\n"
            "</%(a)sResponse>\n" % {"a": action, "ak": ak, "sk": sk, "token": token, "exp": exp,
                                    "id": secrets.token_hex(8)}).encode()


def _sts_error_xml(code: str, message: str) -> bytes:
    return ("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
            "  <Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>\n"
            "  <RequestId>%s</RequestId>\n</ErrorResponse>\n"
            % (code, message, secrets.token_hex(8))).encode()


class AwsFakes:
    def __init__(self, region: str = "eu-west-1"):
        self.region = region
        self.lifetime_s = 60.0
        self.on_issue = lambda ak, sk, token: None
        self.fail_next: dict[str, list[tuple[int, bytes]]] = {}
        self.requests: list[tuple[str, str, str, dict, bytes]] = []
        self.refusals: list[str] = []
        self.issued: dict[str, list[str]] = {}
        # what the callers must present
        self.web_identity = {"RoleArn": "", "RoleSessionName": "", "token_file": ""}
        self.container_token_file = ""
        self.imds_tokens: set[str] = set()
        # AssumeRole: signed by one of these, for this role
        self.assume_role_checker = SigV4Verifier(0, None, None, region, "sts")
        self.assume_role = {"RoleArn": "", "RoleSessionName": "", "ExternalId": None}
        self.lock = threading.Lock()
        fakes = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_PUT(self):
                fakes.handle(self)

            def do_GET(self):
                fakes.handle(self)

            def do_POST(self):
                fakes.handle(self)

            def answer(self, status: int, body: bytes, ctype: str = "text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def sts_url(self) -> str:
        return "http://%s:%d" % (HOST, self.port)

    @property
    def container_url(self) -> str:
        return "http://%s:%d/container/creds" % (HOST, self.port)

    @property
    def imds_url(self) -> str:
        return "http://%s:%d" % (HOST, self.port)

    def __enter__(self) -> "AwsFakes":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.assume_role_checker.server.server_close()
        self.thread.join(10)

    # ---- the services ------------------------------------------------------------------

    def handle(self, h) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", "0") or 0))
        path = h.path
        source = ("container" if path.startswith("/container/") else
                  "imds" if path.startswith("/latest/") else "sts")
        with self.lock:
            self.requests.append((source, h.command, path, dict(h.headers.items()), body))
            failing = self.fail_next.get(source)
            fail = failing.pop(0) if failing else None
        if fail:
            h.answer(fail[0], fail[1])
            return
        if source == "sts":
            status, text, ctype = self.sts(h, body)
        elif source == "container":
            status, text, ctype = self.container(h)
        else:
            status, text, ctype = self.imds(h, body)
        h.answer(status, text, ctype)

    def refuse(self, why: str) -> None:
        with self.lock:
            self.refusals.append(why)

    def issue(self, source: str, prefix: str) -> tuple[str, str, str, str]:
        ak = prefix + secrets.token_hex(6).upper()
        sk = secrets.token_urlsafe(30)
        token = "IQoJ" + secrets.token_urlsafe(90) + "/+=="
        with self.lock:
            self.issued.setdefault(source, []).append(ak)
        self.on_issue(ak, sk, token)
        return ak, sk, token, _expiration(self.lifetime_s)

    def sts(self, h, body: bytes) -> tuple[int, bytes, str]:
        xml = "text/xml"
        if h.command != "POST" or h.path != "/":
            self.refuse("sts: %s %s" % (h.command, h.path))
            return 404, _sts_error_xml("InvalidAction", "POST / only"), xml
        if not h.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self.refuse("sts: content type %s" % h.headers.get("Content-Type"))
            return 400, _sts_error_xml("MalformedInput", "a form is expected"), xml
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), True).items()}
        if form.get("Version") != "2011-06-15":
            self.refuse("sts: version %s" % form.get("Version"))
            return 400, _sts_error_xml("InvalidParameterValue", "Version"), xml
        action = form.get("Action")
        if action == "AssumeRoleWithWebIdentity":
            want = self.web_identity
            with open(want["token_file"]) as f:
                token = f.read().strip()
            for k in ("RoleArn", "RoleSessionName"):
                if form.get(k) != want[k]:
                    self.refuse("sts: %s %r" % (k, form.get(k)))
                    return 400, _sts_error_xml("ValidationError", k), xml
            if form.get("WebIdentityToken") != token or "Authorization" in h.headers:
                self.refuse("sts: web identity token %r" % form.get("WebIdentityToken"))
                return 400, _sts_error_xml("InvalidIdentityToken", "token mismatch"), xml
            ak, sk, tok, exp = self.issue("web_identity", "ASIAWEB")
            return 200, _sts_credentials_xml(action, ak, sk, tok, exp), xml
        if action == "AssumeRole":
            why = self.assume_role_checker.check(h, body)
            if why:
                self.refuse("sts: AssumeRole signature: " + why)
                return 403, _sts_error_xml("SignatureDoesNotMatch", why), xml
            for k, v in self.assume_role.items():
                if form.get(k) != v:
                    self.refuse("sts: AssumeRole %s %r" % (k, form.get(k)))
                    return 400, _sts_error_xml("ValidationError", k), xml
            ak, sk, tok, exp = self.issue("assume_role", "ASIAROLE")
            return 200, _sts_credentials_xml(action, ak, sk, tok, exp), xml
        self.refuse("sts: action %r" % action)
        return 400, _sts_error_xml("InvalidAction", "unknown action"), xml

    def container(self, h) -> tuple[int, bytes, str]:
        with open(self.container_token_file) as f:
            want = f.read().strip()
        if h.command != "GET" or h.headers.get("Authorization") != want:
            self.refuse("container: %s with Authorization %r" % (h.command,
                                                                h.headers.get("Authorization")))
            return 401, b'{"message":"unauthorized"}', "application/json"
        ak, sk, tok, exp = self.issue("container", "ASIAPOD")
        doc = ('{"AccessKeyId":"%s","SecretAccessKey":"%s","Token":"%s",'
               '"AccountId":"123456789012","Expiration":"%s"}' % (ak, sk, tok.replace("/", "\\/"),
                                                                  exp))
        return 200, doc.encode(), "application/json"

    def imds(self, h, body: bytes) -> tuple[int, bytes, str]:
        if h.path == "/latest/api/token":
            ttl = h.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if h.command != "PUT" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                self.refuse("imds: token %s ttl %r" % (h.command, ttl))
                return 400, b"", "text/plain"
            token = "AQAEA" + secrets.token_urlsafe(40)
            with self.lock:
                self.imds_tokens.add(token)
            return 200, token.encode(), "text/plain"
        with self.lock:
            known = h.headers.get("X-aws-ec2-metadata-token") in self.imds_tokens
        if h.command != "GET" or not known:
            self.refuse("imds: %s %s without a session token" % (h.command, h.path))
            return 401, b"", "text/plain"
        base = "/latest/meta-data/iam/security-credentials/"
        if h.path == base:
            return 200, IMDS_ROLE.encode(), "text/plain"
        if h.path != base + IMDS_ROLE:
            return 404, b"", "text/plain"
        ak, sk, tok, exp = self.issue("imds", "ASIAIMDS")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = ('{\n  "Code" : "Success",\n  "LastUpdated" : "%s",\n  "Type" : "AWS-HMAC",\n'
               '  "AccessKeyId" : "%s",\n  "SecretAccessKey" : "%s",\n  "Token" : "%s",\n'
               '  "Expiration" : "%s"\n}' % (now, ak, sk, tok, exp))
        return 200, doc.encode(), "text/plain"
