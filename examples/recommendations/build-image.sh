#!/usr/bin/env bash
# Builds the image the publish step runs in, offline: no registry is reachable on these
# machines, so instead of `FROM python:3.11-slim` (./Dockerfile, for machines that can pull)
# the root filesystem is assembled from this host: the Python that the repo venv resolves to
# (its standard library, without tests and GUI modules), the shared libraries it and the
# extension modules load (from ldd), and in its site-packages only the kaon SDK (from
# sdk-python/src) and what the SDK imports (grpcio, protobuf, cloudpickle, tqdm,
# typing_extensions). The job scripts are not in the image: the pipeline mounts them.
#
# The tag hashes the assembled files, so an unchanged host reuses the image; prints the
# image reference on stdout (progress goes to stderr). `kaon demo` calls it when podman is
# on PATH and KAON_RECOMMENDATIONS_IMAGE is not set.
#
#   examples/recommendations/build-image.sh [python]   # default: the repo's .venv/bin/python
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
NAME=localhost/kaon-recommendations-publish
VENV_PYTHON=${1:-$REPO/.venv/bin/python}

command -v podman >/dev/null || { echo "build-image.sh: podman is not on PATH" >&2; exit 2; }
VENV_PYTHON=$(command -v "$VENV_PYTHON") ||
  { echo "build-image.sh: no Python at ${1:-$REPO/.venv/bin/python} (run scripts/setup.sh)" >&2; exit 2; }

# The interpreter behind the venv, its prefix, and where the venv keeps the SDK's deps.
read -r PYBIN PREFIX STDLIB DYNLOAD SITE VERSION < <("$VENV_PYTHON" - <<'EOF'
import os, sys, sysconfig, site
print(os.path.realpath(sys.executable), sys.base_prefix,
      sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix}),
      os.path.join(sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix}), "lib-dynload"),
      site.getsitepackages()[0], "%d.%d" % sys.version_info[:2])
EOF
)

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/kaon-publish-image-XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT

# The interpreter and its standard library, at the same paths as on the host.
mkdir -p "$ROOTFS$PREFIX/bin" "$ROOTFS$STDLIB"
cp -p "$PYBIN" "$ROOTFS$PREFIX/bin/python$VERSION"
tar -C "$STDLIB" -c \
  --exclude=./site-packages --exclude=./test --exclude=./idlelib --exclude=./tkinter \
  --exclude=./turtledemo --exclude=./ensurepip --exclude=./lib2to3 --exclude='./config-*' \
  --exclude='*/tests' --exclude=./unittest/test . | tar -C "$ROOTFS$STDLIB" -x

# What the SDK needs, in the interpreter's own site-packages (no venv inside the image).
SITE_OUT="$ROOTFS$STDLIB/site-packages"
mkdir -p "$SITE_OUT"
for dep in grpc google/protobuf google/_upb cloudpickle tqdm typing_extensions.py; do
  [[ -e $SITE/$dep ]] || { echo "build-image.sh: $SITE/$dep is missing (run scripts/setup.sh)" >&2; exit 2; }
  mkdir -p "$(dirname "$SITE_OUT/$dep")"
  cp -a "$SITE/$dep" "$SITE_OUT/$dep"
done
cp -a "$REPO/sdk-python/src/kaon" "$SITE_OUT/kaon"
find "$SITE_OUT/kaon" -name __pycache__ -prune -exec rm -rf {} +

# Shared libraries the interpreter and every extension module load, at the paths ldd names.
mapfile -t objects < <(find "$ROOTFS$PREFIX" -name '*.so*' -type f; echo "$ROOTFS$PREFIX/bin/python$VERSION")
libs=$(for o in "${objects[@]}"; do ldd "${o}" 2>/dev/null || true; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
for lib in $libs; do
  [[ -e $ROOTFS$lib ]] && continue
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
done
[[ -e $ROOTFS$PREFIX/lib/libpython$VERSION.so.1.0 ]] ||
  { echo "build-image.sh: libpython was not found by ldd" >&2; exit 1; }

# `python` on the image's PATH, and a writable /tmp.
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
ln -s "$PREFIX/bin/python$VERSION" "$ROOTFS/usr/local/bin/python"
ln -s "$PREFIX/bin/python$VERSION" "$ROOTFS/usr/local/bin/python3"

HASH=$(cd "$ROOTFS" && {
  find . \( -type f -o -type l \) -printf '%p %l %m\n' | LC_ALL=C sort
  find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
TAG="$NAME:$HASH"

if ! podman image exists "$TAG"; then
  echo "build-image.sh: building $TAG from this host's Python ($PREFIX)" >&2
  tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -c . |
    podman import -q \
      --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
      --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
      --change 'CMD ["python"]' \
      - "$TAG" >/dev/null
  # The image must run the SDK before anyone relies on it.
  podman run --rm --network none --pull never "$TAG" python -c 'from kaon import job' >&2 || {
    podman rmi -f "$TAG" >/dev/null 2>&1 || true
    echo "build-image.sh: the assembled image cannot import the kaon SDK" >&2
    exit 1
  }
fi
echo "$TAG"
