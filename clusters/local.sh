#!/usr/bin/env bash
# A multi-node Ray cluster on this machine: a head and N worker nodes, each its own raylet with its own CPUs and
# a resource naming it (metaray_head, metaray_w1, ...). Everything binds to 127.0.0.1; token authentication is on.
#
#   clusters/local.sh start [WORKERS]     # prints the address: metaray run EXP.yaml --address 127.0.0.1:6390
#   clusters/local.sh status
#   clusters/local.sh stop                # stops this cluster's processes only (not other Ray instances)
#
# Settings (environment): METARAY_RAY_PORT (6390), METARAY_DASHBOARD_PORT (8266), METARAY_HEAD_CPUS (1),
# METARAY_NODE_CPUS (1), METARAY_WORKERS (2). RAY_AUTH_MODE=token unless you set it yourself; the token is
# ~/.ray/auth_token (generated once) or RAY_AUTH_TOKEN.
set -euo pipefail

PORT=${METARAY_RAY_PORT:-6390}
DASHBOARD_PORT=${METARAY_DASHBOARD_PORT:-8266}
HEAD_CPUS=${METARAY_HEAD_CPUS:-1}
NODE_CPUS=${METARAY_NODE_CPUS:-1}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
RAY=${RAY:-ray}
ADDRESS=127.0.0.1:$PORT

ours() {  # PIDs of this cluster's processes: every Ray process started for it names its GCS address or port
  pgrep -f -- "(gcs[-_]address[= ]$ADDRESS|gcs_server_port=$PORT|address=$ADDRESS)( |$)" || true
}

start() {
  local workers=${1:-${METARAY_WORKERS:-2}}
  if [ -n "$(ours)" ]; then
    echo "a cluster already runs at $ADDRESS (clusters/local.sh stop first)" >&2
    exit 1
  fi
  if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
    "$RAY" get-auth-token --generate >/dev/null 2>&1 || true
  fi
  "$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="$HEAD_CPUS" \
    --resources='{"metaray_head": 1}' --include-dashboard=true --dashboard-host=127.0.0.1 \
    --dashboard-port="$DASHBOARD_PORT" --dashboard-agent-listen-port=$((PORT + 100)) \
    --ray-client-server-port=$((PORT + 1)) --disable-usage-stats >/dev/null
  for i in $(seq 1 "$workers"); do
    "$RAY" start --address="$ADDRESS" --node-ip-address=127.0.0.1 --num-cpus="$NODE_CPUS" \
      --resources="{\"metaray_w$i\": 1}" --dashboard-agent-listen-port=$((PORT + 100 + i)) \
      --disable-usage-stats >/dev/null
  done
  echo "Ray cluster: $((workers + 1)) nodes at $ADDRESS (token auth: $RAY_AUTH_MODE)"
  echo "dashboard:   http://127.0.0.1:$DASHBOARD_PORT"
  echo "run:         metaray run EXPERIMENT.yaml --address $ADDRESS"
}

stop() {
  local pids
  pids=$(ours)
  [ -z "$pids" ] && { echo "no cluster at $ADDRESS"; return 0; }
  # the raylets first, so that they take their workers with them; then everything else of this cluster
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    [ -z "$(ours)" ] && break
    sleep 0.1
  done
  pids=$(ours)
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  echo "stopped the cluster at $ADDRESS"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  status) RAY_ADDRESS=$ADDRESS "$RAY" status ;;
  *) echo "usage: clusters/local.sh start [WORKERS] | status | stop" >&2; exit 2 ;;
esac
