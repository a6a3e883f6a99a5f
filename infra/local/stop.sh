#!/usr/bin/env bash
# Stop the local stack started by start.sh from the same state directory. Idempotent.
# Only processes this stack started are signalled: each service's process group (from
# its pid file), then any process left whose command line names this stack's own Ray
# temp directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${IIDS_LOCAL_STATE:-$ROOT/runs/local}"
TIMEOUT_S="${IIDS_STOP_TIMEOUT_S:-30}"
log() { echo "stop.sh: $*" >&2; }

group_alive() {  # group_alive PGID: does any live (non-zombie) process remain in it?
  ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

stop_group() {  # stop_group NAME [leader]: TERM NAME's group (or only its leader)
  local pidfile="$STATE/$1.pid" pid
  [[ -f "$pidfile" ]] || { log "$1: not running"; return 0; }
  pid="$(cat "$pidfile")"
  if group_alive "$pid"; then
    log "$1: stopping process group $pid"
    if [[ "${2:-}" == leader ]]; then
      kill -TERM "$pid" 2>/dev/null || true
    else
      kill -TERM -- "-$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + TIMEOUT_S))
    while group_alive "$pid" && ((SECONDS < deadline)); do sleep 1; done
    if group_alive "$pid"; then
      log "$1: still running after ${TIMEOUT_S}s, killing"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  else
    log "$1: not running"
  fi
  rm -f "$pidfile"
}

# `ray start --block` drains the node and stops every Ray process it started when it
# gets SIGTERM itself; signalling its children first would leave it waiting on them.
stop_group ray leader
# Ray may start some processes in sessions of their own; they carry the temp dir.
if [[ -f "$STATE/ray.tempdir" ]]; then
  tempdir="$(cat "$STATE/ray.tempdir")"
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    cmdline="$({ tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null || true)"
    if [[ "$cmdline" == *"$tempdir"* ]]; then
      log "ray: stopping leftover process $pid"
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$STATE/ray.tempdir"
fi
stop_group weed
rm -f "$STATE/env.sh"
