#!/usr/bin/env bash
# Installs the independent peers the integration tests talk to (Debian packages), when this
# user is root and apt-get exists. Tests whose peer is still missing skip with the reason.
# Usage: install-peers.sh [mosquitto]   (no argument: every test peer)
set -u
only="${1:-}"
pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || pkgs+=(mosquitto-clients)
command -v mbpoll >/dev/null 2>&1 || pkgs+=(mbpoll)
command -v tshark >/dev/null 2>&1 || pkgs+=(tshark)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] || pkgs+=(prometheus-alertmanager)
command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
if [ "$only" = "mosquitto" ]; then
  pkgs=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto)
fi
if [ ${#pkgs[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-peers: not root or no apt-get; tests needing ${pkgs[*]} will skip" >&2
  exit 0
fi
echo "install-peers: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
  || echo "install-peers: apt-get install failed; tests needing ${pkgs[*]} will skip" >&2
# Debian starts services from postinst when it can; the tests start their own on free ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  pkill -f "/usr/bin/$svc" >/dev/null 2>&1 || true
done
exit 0
