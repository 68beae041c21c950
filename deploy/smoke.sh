#!/usr/bin/env bash
# Smoke test of the deployment: build the image, start the compose stack (PostgreSQL, migrate, two app
# replicas), check both answer /_stcore/health, run CLI jobs in a container, screenshot the dashboard served
# by a container with Chromium, report image size and build times, then remove everything it started.
#
# Usage: deploy/smoke.sh [--keep]      (needs a Docker daemon, docker-compose or `docker compose`, Chromium)
# Images: BASE_IMAGE (default bmc-hub-base:bookworm) and POSTGRES_IMAGE (default bmc-hub-postgres:15), both
# made from Debian's packages by deploy/build-base-image.sh when missing. Elsewhere, set
# BASE_IMAGE=python:3.11-slim POSTGRES_IMAGE=postgres:15 to use the public images.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
KEEP=false; [ "${1:-}" = "--keep" ] && KEEP=true

export BASE_IMAGE="${BASE_IMAGE:-bmc-hub-base:bookworm}"
export POSTGRES_IMAGE="${POSTGRES_IMAGE:-bmc-hub-postgres:15}"
export COMPOSE_PROJECT_NAME="bmchubsmoke"
OUT="${SMOKE_OUT:-$ROOT/bench/out/smoke}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/bmc-hub-smoke.XXXXXX)"

if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
COMPOSE+=(-f docker-compose.yml)
export HUB_PORT="127.0.0.1:"   # "127.0.0.1::8501": a free host port per replica, on loopback only
export POSTGRES_PASSWORD="smoke$RANDOM$RANDOM"
touch "$WORK/empty.env"
export HUB_ENV_FILE="$WORK/empty.env"

say() { printf '== %s\n' "$*"; }
secs() { python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$1"; }
cleanup() {
  if ! $KEEP; then
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || ! docker image inspect "$POSTGRES_IMAGE" >/dev/null 2>&1; then
  say "base images missing: deploy/build-base-image.sh"
  deploy/build-base-image.sh
fi

say "build bmc-hub:latest (cold: no cache) FROM $BASE_IMAGE"
t=$(date +%s.%N)
docker build --quiet --no-cache --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t bmc-hub:latest . >/dev/null 2>&1
COLD=$(secs "$t")
t=$(date +%s.%N)
docker build --quiet --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t bmc-hub:latest . >/dev/null 2>&1
WARM=$(secs "$t")
# A source change: every layer from COPY lib on rebuilds; the dependency layer stays cached.
MARKER="lib/_smoke_marker_$$.py"; echo "# $RANDOM" > "$MARKER"
t=$(date +%s.%N)
docker build --quiet --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t bmc-hub:latest . >/dev/null 2>&1 \
  || { rm -f "$MARKER"; exit 1; }
rm -f "$MARKER"
SOURCE=$(secs "$t")
docker build --quiet --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t bmc-hub:latest . >/dev/null 2>&1
SIZE=$(docker image inspect bmc-hub:latest --format '{{.Size}}' | python3 -c "import sys; print(f'{int(sys.stdin.read())/1e6:.0f} MB')")
echo "   cold build ${COLD} s; warm: unchanged ${WARM} s, after a source change ${SOURCE} s; image ${SIZE}"

say "compose: db, then migrate, then two app replicas"
"${COMPOSE[@]}" up -d --scale app=2 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
MIGRATE=$("${COMPOSE[@]}" ps -q migrate)
[ "$(docker inspect "$MIGRATE" --format '{{.State.ExitCode}}')" = "0" ] || { docker logs "$MIGRATE"; exit 1; }
echo "   migrate exited 0: $(docker logs "$MIGRATE" 2>&1 | tail -n 1)"

BASES=()
for i in 1 2; do
  port=$("${COMPOSE[@]}" port --index "$i" app 8501 | sed 's/.*://')
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 90); do
    [ "$(curl -fsS "$base/_stcore/health" 2>/dev/null)" = "ok" ] && break; sleep 1
  done
  [ "$(curl -fsS "$base/_stcore/health")" = "ok" ] || { "${COMPOSE[@]}" logs app | tail -n 40; exit 1; }
  echo "   replica $i: $base/_stcore/health → ok"
  BASES+=("$base")
done

say "CLI jobs in a container (the app image, the compose network and settings)"
"${COMPOSE[@]}" run --rm -T app python manage.py doctor --json >"$WORK/doctor.json" 2>"$WORK/doctor.log" || true
"${COMPOSE[@]}" exec -T --index 1 app python manage.py demo-data --json >/dev/null 2>&1 || true
python3 - "$WORK/doctor.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
checks = {c["name"]: c["status"] for c in report.get("checks", [])} if isinstance(report.get("checks"), list) else report.get("checks", {})
print("   doctor --json:", ", ".join(f"{k} {v}" for k, v in checks.items()) or report)
bad = [k for k, v in checks.items() if k in ("database", "migrations") and v not in ("ok", True)]
sys.exit(1 if bad else 0)
PY
docker cp samples/abonnementer-demo.xlsx "$("${COMPOSE[@]}" ps -q app | head -n 1)":/tmp/export.xlsx
"${COMPOSE[@]}" exec -T --index 1 app python manage.py import-subscriptions /tmp/export.xlsx --apply --json \
  >"$WORK/import.json" 2>"$WORK/import.log" || true
python3 - "$WORK/import.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
print(f"   import-subscriptions --apply: run {result.get('run_id')}, rows {result.get('rows')}, created "
      f"{result.get('created')}, unmatched {result.get('unmatched')}, errors {len(result.get('errors', []))}")
sys.exit(0 if result.get("run_id") else 1)
PY
RUNS=$("${COMPOSE[@]}" exec -T --index 2 app python manage.py runs --json)
echo "   the other replica's container sees the run: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1])["runs"][0]; print(r["run_id"], r["kind"], r["status"])' "$RUNS")"

say "Chromium screenshot of the dashboard served by replica 2"
python3 - "${BASES[1]}" "$OUT/dashboard.png" <<'PY'
import sys
from playwright.sync_api import sync_playwright
base, out = sys.argv[1], sys.argv[2]
args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base)
    page.get_by_text("Customers").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=out, full_page=True)
    browser.close()
print(f"   {out}")
PY

say "passed: cold build ${COLD} s, warm ${WARM} s / ${SOURCE} s, image ${SIZE}, 2 replicas healthy, CLI jobs ran"
