"""drover's container image (scripts/build-image.sh), run as a container
runtime would run it, without one: unpacked from the OCI layout with umoci,
its drover started in its root filesystem (chroot, as the image's user
65532 with the supplementary group 0, the root filesystem read-only, a tmpfs for the data directory, the
node's log directory bind-mounted at the same path, as the chart's hostPath
mounts do), on the demo configuration the image carries.

The image is $DROVER_IMAGE_DIR when set (scripts/test.sh builds it once),
else built here into the test's directory. Needs root (chroot, mounts).

  test_image_runs_the_demo          the lines a kubelet stand-in writes come out
                                    on stdout; /readyz and /metrics answer
  test_image_holds_what_drover_needs  only drover, its libraries, their copyright
                                    files, CA bundle, passwd/group, the demo config;
                                    the docker-archive has the same configuration
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from drover_e2e import HOST, REPO, Metrics, find_or_build_drover, free_port, wait_until
from kubelet_writer import KubeletWriter

BUILD_TIMEOUT = 900
RUN_TIMEOUT = 60
UNPRIVILEGED = "65532:65532"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail("%s is not installed (scripts/setup.sh installs it)" % tool, pytrace=False)
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> str:
    """The build's output directory: oci/ (tags VERSION, latest), the
    docker-archive, image-size.txt."""
    if os.geteuid() != 0:
        pytest.fail("the image tests run the image with chroot and mounts: they need root",
                    pytrace=False)
    _need("umoci")
    _need("skopeo")
    env = os.environ.get("DROVER_IMAGE_DIR")
    if env:
        if not os.path.isfile(os.path.join(env, "oci", "index.json")):
            pytest.fail("DROVER_IMAGE_DIR=%s holds no oci/index.json" % env, pytrace=False)
        return env
    out = str(tmp_path_factory.mktemp("image"))
    p = subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh"), out], cwd=REPO,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=BUILD_TIMEOUT)
    if p.returncode != 0:
        pytest.fail("scripts/build-image.sh failed:\n%s" % p.stderr.decode()[-4000:],
                    pytrace=False)
    return out


def version() -> str:
    """The version of the drover this checkout builds."""
    binary, why = find_or_build_drover()
    assert binary, why
    return subprocess.run([binary, "--version"], capture_output=True, check=True,
                          timeout=30).stdout.decode().split()[1]


def unpack(image_dir: str, tag: str, dest) -> tuple[str, dict]:
    """umoci unpack: (the root filesystem, the runtime config.json)."""
    bundle = str(dest / ("bundle-" + tag))
    subprocess.run(["umoci", "unpack", "--image", "%s/oci:%s" % (image_dir, tag), bundle],
                   check=True, capture_output=True, timeout=120)
    with open(os.path.join(bundle, "config.json")) as f:
        return os.path.join(bundle, "rootfs"), json.load(f)


# The root filesystem read-only (as readOnlyRootFilesystem), a tmpfs owned by
# the image's user on the data directory, the log directory at its own path;
# the user 65532 with the supplementary group 0, which is what reading the
# kubelet's log files (root:root, 0640, as kubelet_writer makes them) takes
# without any capability: the chart's supplementalGroups [0].
RUN_IN_IMAGE = r'''
set -e
root=$1 logs=$2; shift 2
mkdir -p "$root$logs"
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=0755,uid=65532,gid=65532 tmpfs "$root/var/lib/drover"
mount --bind "$logs" "$root$logs"
exec chroot --userspec=65532:65532 --groups=0 "$root" "$@"
'''


def run_in_image(rootfs: str, logs: str, args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             RUN_IN_IMAGE, "sh", rootfs, logs, *args],
                            env=env, stdin=subprocess.DEVNULL, **kw)


def image_env(config: dict) -> dict:
    return dict(e.split("=", 1) for e in config["process"]["env"])


@pytest.mark.time_limit(600)
def test_image_runs_the_demo(image_dir, tmp_path):
    rootfs, config = unpack(image_dir, "latest", tmp_path)
    proc = config["process"]
    assert proc["args"] == ["/usr/bin/drover", "-c", "/etc/drover/conf.d"], proc["args"]
    assert (proc["user"]["uid"], proc["user"]["gid"]) == (65532, 65532)

    logs = tmp_path / "node-logs"
    logs.mkdir()
    os.chmod(logs, 0o755)
    w = KubeletWriter(str(logs), seed=3)
    c = w.add_container("demo", "web-0", "app")
    lines = ["image line %d" % i for i in range(20)]
    for line in lines:
        w.log(c, line.encode())
    w.close()

    port = free_port()
    env = image_env(config)
    env.update({"DROVER_HTTP_LISTEN": "%s:%d" % (HOST, port), "DEMO_LOG_DIR": str(logs)})
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = run_in_image(rootfs, str(logs), proc["args"], env, stdout=out, stderr=err)
    try:
        def ready() -> bool:
            if p.poll() is not None:
                raise AssertionError("drover in the image exited (rc=%s):\n%s"
                                     % (p.returncode, err_path.read_text()[-3000:]))
            try:
                return urllib.request.urlopen("http://%s:%d/readyz" % (HOST, port),
                                              timeout=2).status == 200
            except OSError:
                return False
        wait_until(ready, timeout=RUN_TIMEOUT, interval=0.2)
        wait_until(lambda: all(line in out_path.read_text() for line in lines),
                   timeout=RUN_TIMEOUT, interval=0.2)
        body = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, port), timeout=5).read()
        m = Metrics(body.decode())
        assert m.get("drover_input_records_total", name="pods") >= len(lines), body[:2000]
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            raise AssertionError("drover in the image did not stop on SIGTERM")
    assert rc == 0, err_path.read_text()[-3000:]
    assert "level=error" not in err_path.read_text(), err_path.read_text()[-3000:]


def test_image_holds_what_drover_needs(image_dir, tmp_path):
    with open(os.path.join(image_dir, "oci", "index.json")) as f:
        tags = {m["annotations"]["org.opencontainers.image.ref.name"]
                for m in json.load(f)["manifests"]}
    ver = version()
    assert tags == {ver, "latest"}, tags
    rootfs, config = unpack(image_dir, ver, tmp_path)

    # no shell, no distribution: every file is drover, a library it loads,
    # a copyright file, or one of the few files it reads
    files = sorted(os.path.relpath(os.path.join(d, n), rootfs)
                   for d, _, names in os.walk(rootfs) for n in names)
    libs = [f for f in files if ".so" in os.path.basename(f)]
    others = [f for f in files if f not in libs and not
              (f.startswith("usr/share/doc/") and f.endswith("/copyright"))]
    assert others == sorted(["etc/drover/conf.d/demo.yaml", "etc/group", "etc/nsswitch.conf",
                             "etc/passwd", "etc/ssl/certs/ca-certificates.crt",
                             "usr/bin/drover"]), others
    assert not os.path.exists(os.path.join(rootfs, "bin", "sh"))
    assert any(f.startswith("usr/share/doc/") for f in files)

    # the libraries in the image are all drover needs: it runs from them alone
    p = subprocess.run(["chroot", "--userspec=" + UNPRIVILEGED, rootfs, "/usr/bin/drover",
                        "--version"], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().split() == ["drover", ver]
    p = subprocess.run(["chroot", "--userspec=" + UNPRIVILEGED, rootfs, "/usr/bin/drover",
                        "--check-config", "-c", "/etc/drover/conf.d"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode() + p.stdout.decode()

    # the docker-archive is the same image
    tar = os.path.join(image_dir, "drover-%s.tar" % ver)
    p = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--config",
                        "docker-archive:" + tar], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    cfg = json.loads(p.stdout)["config"]
    assert cfg["User"] == UNPRIVILEGED
    assert cfg["Entrypoint"] == ["/usr/bin/drover"]
    assert cfg["Cmd"] == ["-c", "/etc/drover/conf.d"]
    assert "2020/tcp" in cfg["ExposedPorts"]
    with open(os.path.join(image_dir, "image-size.txt")) as f:
        print(f.read())
