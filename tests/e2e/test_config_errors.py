"""(e) Broken configurations: --check-config reports every error with its
file:line:col and exits 1; a normal start refuses them and exits non-zero."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

ERROR_RE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<key>[^:\n]+): (?P<msg>.+)$",
                      re.M)

BROKEN = """\
agent:
  data_dir: {data}
  http: {{ listen: "127.0.0.1:0" }}
  grace_period: 5 parsecs
inputs:
  - name: pods
    type: tail
    paths: [{root}/containers/*.log]
    read_from: middle
    max_record_bytes: 12XB
    bogus_option: 1
outputs:
  - name: out
    type: file
    match: pods
    fsync_interval: -1s
"""


def position(text: str, line_no: int, needle: str) -> tuple[int, int]:
    """1-based (line, column) of needle on that line."""
    line = text.splitlines()[line_no - 1]
    col = line.index(needle)
    return line_no, col + 1


def run(binary, *args, timeout=15, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=e)


@pytest.fixture
def broken(tmp_path):
    text = BROKEN.format(data=tmp_path / "data", root=tmp_path / "node")
    p = tmp_path / "broken.yaml"
    p.write_text(text)
    return str(p), text


def expected_errors(text):
    # (line, col, key): the column of the offending value, or of the key for
    # an unknown key and of the map for a missing one.
    return {
        (*position(text, 4, "5 parsecs"), "agent.grace_period"),
        (*position(text, 9, "middle"), "inputs[0].read_from"),
        (*position(text, 10, "12XB"), "inputs[0].max_record_bytes"),
        (*position(text, 11, "bogus_option"), "inputs[0].bogus_option"),
        (*position(text, 13, "name"), "outputs[0].path"),
        (*position(text, 16, "-1s"), "outputs[0].fsync_interval"),
    }


def parse_errors(stderr: str, path: str):
    found = set()
    for m in ERROR_RE.finditer(stderr):
        assert m.group("file") == path, "error names another file: %r" % m.group(0)
        found.add((int(m.group("line")), int(m.group("col")), m.group("key")))
    return found


def test_check_config_reports_every_error_with_position(drover_bin, broken):
    path, text = broken
    p = run(drover_bin, "-c", path, "--check-config")
    err = p.stderr.decode()
    assert p.returncode == 1, "exit %d, stderr:\n%s" % (p.returncode, err)
    found = parse_errors(err, path)
    want = expected_errors(text)
    assert want <= found, "missing errors %s\nstderr:\n%s" % (sorted(want - found), err)
    assert found <= want, "unexpected errors %s\nstderr:\n%s" % (sorted(found - want), err)
    assert "invalid" in err
    assert p.stdout.decode().strip() == "", "stdout should be empty: %r" % p.stdout


def test_start_with_broken_config_exits_nonzero(drover_bin, broken, tmp_path):
    path, text = broken
    p = run(drover_bin, "-c", path)
    err = p.stderr.decode()
    assert p.returncode != 0, "drover started with a broken config:\n%s" % err
    found = parse_errors(err, path)
    assert expected_errors(text) <= found, "stderr:\n%s" % err
    assert not (tmp_path / "data").exists(), "a refused config must not create data_dir"


def test_yaml_syntax_error_has_position(drover_bin, tmp_path):
    p_ = tmp_path / "syntax.yaml"
    p_.write_text("agent:\n  data_dir: [1, 2\ninputs: []\n")
    p = run(drover_bin, "-c", str(p_), "--check-config")
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert re.search(r"^%s:\d+:\d+: " % re.escape(str(p_)), err, re.M), err


def test_duplicate_key_has_position(drover_bin, tmp_path):
    p_ = tmp_path / "dup.yaml"
    p_.write_text("agent:\n  data_dir: /tmp/x\n  data_dir: /tmp/y\ninputs: []\noutputs: []\n")
    p = run(drover_bin, "-c", str(p_), "--check-config")
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert re.search(r"^%s:3:\d+: .*duplicate" % re.escape(str(p_)), err, re.M), err


def test_config_dir_errors_name_the_file(drover_bin, tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "10-agent.yaml").write_text(
        'agent:\n  data_dir: "${E2E_DATA:-%s}"\n  http: { listen: "127.0.0.1:0" }\n'
        % (tmp_path / "data"))
    (d / "20-pipeline.yaml").write_text(
        "inputs:\n"
        "  - name: pods\n"
        "    type: tail\n"
        '    paths: ["${E2E_ROOT}/containers/*.log"]\n'
        "    rotate_wait: 10 minutes\n"
        "outputs:\n"
        '  - { name: out, type: file, match: pods, path: "${E2E_OUT}" }\n')
    (d / "README.txt").write_text("not yaml: [")  # not *.yaml: ignored
    env = {"E2E_ROOT": str(tmp_path / "node"), "E2E_OUT": str(tmp_path / "out.ndjson")}
    p = run(drover_bin, "-c", str(d), "--check-config", env=env)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert re.search(r"^%s:5:18: inputs\[0\]\.rotate_wait: " % re.escape(str(d / "20-pipeline.yaml")),
                     err, re.M), err

    # an unset variable without a default is an error at its position
    env.pop("E2E_OUT")
    os.environ.pop("E2E_OUT", None)
    (d / "20-pipeline.yaml").write_text(
        (d / "20-pipeline.yaml").read_text().replace("10 minutes", "10m"))
    p = run(drover_bin, "-c", str(d), "--check-config", env=env)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert re.search(r"^%s:7:\d+: outputs\[0\]\.path: .*E2E_OUT" % re.escape(str(d / "20-pipeline.yaml")),
                     err, re.M), err

    # and with everything set the same directory is fine
    env["E2E_OUT"] = str(tmp_path / "out.ndjson")
    p = run(drover_bin, "-c", str(d), "--check-config", env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert "ok" in p.stdout.decode()


def test_good_config_checks_ok(drover_bin, tmp_path):
    p_ = tmp_path / "good.yaml"
    p_.write_text(BROKEN.format(data=tmp_path / "data", root=tmp_path / "node")
                  .replace("5 parsecs", "5s").replace("middle", "tail").replace("12XB", "1MiB")
                  .replace("    bogus_option: 1\n", "").replace("-1s", "1s")
                  .replace("    match: pods\n", "    match: pods\n    path: %s\n" % (tmp_path / "o.ndjson")))
    p = run(drover_bin, "-c", str(p_), "--check-config")
    assert p.returncode == 0, p.stderr.decode()
    assert not (tmp_path / "data").exists(), "--check-config must not create data_dir"


def test_cli_basics(drover_bin, tmp_path):
    p = run(drover_bin, "--version")
    assert p.returncode == 0 and p.stdout.decode().startswith("drover "), p
    p = run(drover_bin, "--help")
    assert p.returncode == 0 and "--check-config" in p.stdout.decode(), p
    p = run(drover_bin, "--describe", "all")
    names = p.stdout.decode().split()
    assert p.returncode == 0 and {"tail", "file", "stdout", "null"} <= set(names), p
    p = run(drover_bin, "--describe", "tail")
    assert p.returncode == 0 and "partial_timeout" in p.stdout.decode(), p
    p = run(drover_bin, "--describe", "no-such-plugin")
    assert p.returncode != 0 and p.stderr.decode(), p
    p = run(drover_bin, "--no-such-flag")
    assert p.returncode != 0, p
    p = run(drover_bin, "-c", str(tmp_path / "missing.yaml"), "--check-config")
    assert p.returncode == 1 and p.stderr.decode().strip(), p


SIGV4_CONFIG = """\
inputs:
  - name: s
    type: prometheus_scrape
    scrape_configs: [{job_name: a, static_configs: [{targets: ["127.0.0.1:1"]}]}]
outputs:
  - name: rw
    type: remote_write
    match: s
    url: http://127.0.0.1:1/api/v1/write
%s
"""


@pytest.mark.parametrize("extra, more_env, want", [
    ("    sigv4: {region: eu-west-1, use_fips_sts_endpoint: true}", {},
     "sigv4.use_fips_sts_endpoint: not supported yet"),
    ("    sigv4: {region: eu-west-1, profile: p}", {}, "no profile [p]"),
    ("    sigv4: {region: eu-west-1}", {}, "sigv4: no credentials"),
    ("    sigv4: {access_key: a, secret_key: b}", {}, "sigv4: no region"),
    ("    sigv4: {region: r, access_key: a}", {}, "access_key and secret_key go together"),
    ("    sigv4: {region: r, access_key: a, secret_key: b}\n    bearer_token: x", {},
     "outputs[0].bearer_token: cannot be set with sigv4: choose one way to authenticate"),
    ("    sigv4: {region: r, acces_key: a}", {}, "sigv4: unknown key \"acces_key\""),
    ("    sigv4: {region: r, access_key: a, secret_key: b, external_id: x}", {},
     "external_id and role_session_name go with role_arn"),
    # container credentials over plain http only from loopback or the link-local hosts
    ("    sigv4: {region: r}", {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://example.com/creds"},
     "over http only a loopback host"),
    ("    sigv4: {region: r}", {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1.example/"},
     "over http only a loopback host"),
])
def test_sigv4_config_errors(drover_bin, tmp_path, extra, more_env, want):
    p = tmp_path / "sigv4.yaml"
    p.write_text(SIGV4_CONFIG % extra)
    env = {k: "" for k in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                           "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                           "AWS_CONTAINER_CREDENTIALS_FULL_URI")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance to ask here
    env.update(more_env)
    creds = tmp_path / "credentials"  # a file without profile p, and no keys anywhere else
    creds.write_text("[other]\naws_access_key_id = a\naws_secret_access_key = b\n")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(creds) if "profile" in extra else str(
        tmp_path / "none")
    r = run(drover_bin, "--check-config", "-c", str(p), env=env)
    assert r.returncode == 1, r
    assert want in r.stderr.decode() + r.stdout.decode()
