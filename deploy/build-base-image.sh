#!/usr/bin/env bash
# Build Debian bookworm base images from Debian's packages alone (no registry pull) and `docker import` them:
#   bmc-hub-base:bookworm      python3 (3.11), pip and venv: the app image's BASE_IMAGE
#   bmc-hub-postgres:15        PostgreSQL 15 from Debian (deploy/postgres/: the official image's settings)
# Usage: deploy/build-base-image.sh [--mirror URL]   (needs root, debootstrap and a Docker daemon)
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR="${MIRROR:-http://deb.debian.org/debian}"
[ "${1:-}" = "--mirror" ] && MIRROR="$2"
SUITE=bookworm
WORK="$(mktemp -d /tmp/bmc-hub-rootfs.XXXXXX)"
cleanup() {  # debootstrap mounts /proc and /sys inside the root: unmount before removing, never cross mounts
  grep -o " $WORK/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

build() {  # build NAME TAG PACKAGES [CHANGE...]
  local name="$1" tag="$2" packages="$3"; shift 3
  local root="$WORK/$name"
  echo "== $name:$tag — debootstrap $SUITE with $packages"
  debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$MIRROR" >"$WORK/$name.log" 2>&1 \
    || { tail -n 30 "$WORK/$name.log"; exit 1; }
  # The host's CA bundle, so pip inside builds trusts the same TLS chain the host does (a proxy's CA included).
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
         "$root"/usr/share/man/* "$root"/usr/share/locale/*
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" -c . | docker import "${changes[@]}" - "$name:$tag" >/dev/null
  docker image ls "$name:$tag" --format '   {{.Repository}}:{{.Tag}} {{.Size}}'
}

build bmc-hub-base bookworm "python3,python3-pip,python3-venv,ca-certificates" \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'ENV LANG=C.UTF-8' 'CMD ["python3"]'

build bmc-hub-postgres-rootfs 15 "postgresql-15,ca-certificates" \
  'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'ENV LANG=C.UTF-8' 'ENV PGDATA=/var/lib/postgresql/data' 'EXPOSE 5432'

echo "== bmc-hub-postgres:15 — entrypoint on top (deploy/postgres/Dockerfile)"
docker build --quiet --network none -t bmc-hub-postgres:15 deploy/postgres >/dev/null 2>&1
docker image ls bmc-hub-postgres:15 --format '   {{.Repository}}:{{.Tag}} {{.Size}}'
