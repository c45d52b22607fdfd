#!/usr/bin/env bash
# Builds drover's container image without a container daemon, with umoci
# (and skopeo for a docker-archive), both from Debian.
#
#   scripts/build-image.sh [OUT_DIR]        (default: zig-out-image)
#
# The image is as small as a dynamically linked drover allows: no
# distribution inside, only drover (ReleaseFast), the shared libraries it
# loads (from this machine's Debian packages, with their copyright files),
# the CA bundle, /etc/passwd and /etc/group naming the user it runs as
# (drover, 65532), and the demo configuration in /etc/drover/conf.d, so that
# running the image with no arguments works anywhere. In Kubernetes the
# chart (packaging/helm/drover) mounts its own configuration over that
# directory.
#
# Writes:
#   OUT_DIR/oci                      an OCI image layout, tags VERSION and latest
#   OUT_DIR/drover-VERSION.tar       the same as a docker-archive
#                                    (`docker load`, `ctr images import`, `podman load`)
#   OUT_DIR/image-size.txt           the size report it also prints
# Push it with e.g. `skopeo copy oci:OUT_DIR/oci:VERSION docker://REGISTRY/drover:VERSION`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-zig-out-image}" && cd "${1:-zig-out-image}" && pwd)

die() { echo "build-image: ERROR: $*" >&2; exit 1; }
for tool in umoci skopeo ldd dpkg-query; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (scripts/setup.sh installs umoci and skopeo)"
done

ZIG=$(bash scripts/setup.sh)
"$ZIG" build -Doptimize=ReleaseFast -p "$OUT/build"
BIN="$OUT/build/bin/drover"
VERSION=$("$BIN" --version | awk '{print $2}')
[ -n "$VERSION" ] || die "drover --version printed no version"

# ---- the root filesystem ----
ROOT="$OUT/rootfs"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{usr/bin,etc/drover/conf.d,etc/ssl/certs,tmp,var/lib/drover,usr/share/doc}
chmod 1777 "$ROOT/tmp"
install -m 0755 "$BIN" "$ROOT/usr/bin/drover"

# Every shared library drover loads, at the path the dynamic loader looks it
# up under (the file itself, not the symlink), and the loader.
copy_path() {
  local src=$1
  mkdir -p "$ROOT$(dirname "$src")"
  cp -L "$src" "$ROOT$src"
}
libs=$(ldd "$BIN" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}')
[ -n "$libs" ] || die "ldd found no libraries in $BIN"
for lib in $libs; do
  copy_path "$lib"
done

# The copyright file of every Debian package those libraries come from.
pkgs=$(for lib in $libs; do dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null || dpkg-query -S "$lib"; done |
  cut -d: -f1 | sort -u)
for pkg in $pkgs; do
  if [ -f "/usr/share/doc/$pkg/copyright" ]; then
    mkdir -p "$ROOT/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$ROOT/usr/share/doc/$pkg/copyright"
  fi
done

cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\ndrover:x:65532:65532:drover:/var/lib/drover:/sbin/nologin\n' \
  >"$ROOT/etc/passwd"
printf 'root:x:0:\ndrover:x:65532:\n' >"$ROOT/etc/group"
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
cp conf.d/demo.yaml "$ROOT/etc/drover/conf.d/demo.yaml"
chown -R 0:0 "$ROOT"
chown 65532:65532 "$ROOT/var/lib/drover"

# ---- the image ----
LAYOUT="$OUT/oci"
BUNDLE="$OUT/bundle"
rm -rf "$LAYOUT" "$BUNDLE"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:build"
umoci unpack --image "$LAYOUT:build" "$BUNDLE" >/dev/null
cp -a "$ROOT/." "$BUNDLE/rootfs/"
umoci repack --image "$LAYOUT:build" --history.created_by "scripts/build-image.sh" "$BUNDLE"
rm -rf "$BUNDLE"
umoci config --image "$LAYOUT:build" --tag "$VERSION" \
  --os linux --architecture amd64 \
  --config.user 65532:65532 \
  --config.workingdir / \
  --config.entrypoint /usr/bin/drover \
  --config.cmd -c --config.cmd /etc/drover/conf.d \
  --config.env DROVER_HTTP_LISTEN=0.0.0.0:2020 \
  --config.env DEMO_DATA_DIR=/var/lib/drover \
  --config.exposedports 2020/tcp \
  --config.stopsignal SIGTERM \
  --config.label org.opencontainers.image.title=drover \
  --config.label org.opencontainers.image.version="$VERSION" \
  --config.label org.opencontainers.image.description="Per-node log and metrics agent for Kubernetes"
umoci tag --image "$LAYOUT:$VERSION" latest
umoci rm --image "$LAYOUT:build"
umoci gc --layout "$LAYOUT"

rm -f "$OUT"/drover-*.tar
skopeo --insecure-policy copy -q "oci:$LAYOUT:$VERSION" "docker-archive:$OUT/drover-$VERSION.tar:drover:$VERSION"

# ---- what it weighs ----
rootfs_bytes=$(du -sb "$ROOT" | cut -f1)
bin_bytes=$(stat -c %s "$ROOT/usr/bin/drover")
libs_bytes=$(for lib in $libs; do stat -L -c %s "$lib"; done | awk '{s += $1} END {print s}')
layer_bytes=$(python3 - "$LAYOUT" "$VERSION" <<'PY'
import json, os, sys
layout, tag = sys.argv[1], sys.argv[2]
index = json.load(open(os.path.join(layout, "index.json")))
desc = next(m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
def blob(d):
    algo, digest = d["digest"].split(":")
    return os.path.join(layout, "blobs", algo, digest)
manifest = json.load(open(blob(desc)))
print(sum(layer["size"] for layer in manifest["layers"]))
PY
)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
{
  echo "drover image $VERSION ($(echo "$libs" | wc -w) shared libraries from $(echo "$pkgs" | wc -w) Debian packages)"
  echo "  compressed (what a registry stores and a node pulls): $(mib "$layer_bytes")"
  echo "  unpacked: $(mib "$rootfs_bytes") (drover $(mib "$bin_bytes"), libraries $(mib "$libs_bytes"))"
  echo "  $LAYOUT (tags $VERSION, latest), $OUT/drover-$VERSION.tar"
} | tee "$OUT/image-size.txt"
