#!/usr/bin/env bash
# The proxy benchmark (README "Benchmarks"): direct vs rig's observing proxy vs haproxy and
# nginx (when installed) vs a minimal pingora proxy (with --pingora), in one run, on loopback.
#
#   scripts/proxy-bench.sh [--install-peers] [--pingora] [--quick] [proxy-bench options...]
#   scripts/proxy-bench.sh --grpc [--quick] [grpc options...]
#
#   --install-peers  apt-get install haproxy, nginx and nginx's stream module first (root)
#   --pingora        also build and measure the pingora peer (needs cmake; installed with
#                    --install-peers; the first build takes a few minutes)
#   --quick          about one minute instead of about four
#   --grpc           gRPC unary calls/s direct vs through rig's proxy in grpc mode instead
#                    (about a minute; JSON to target/proxy-bench-grpc.json)
#   --kafka          instead: Kafka produce throughput through rig's Kafka proxy vs direct,
#                    against librdkafka's mock cluster (needs librdkafka-dev; options after it
#                    go to `proxy-bench kafka`, e.g. --messages, --rounds)
# Any other option goes to proxy-bench (`--help` lists them). The table goes to stdout, the
# JSON to target/proxy-bench.json unless --json says otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

install=0
subcommand=run
features=()
args=()
for arg in "$@"; do
  case "$arg" in
    --install-peers) install=1 ;;
    --pingora) features=(--features pingora) ;;
    --grpc) subcommand=grpc ;;
    --kafka) subcommand=kafka ;;
    *) args+=("$arg") ;;
  esac
done

if [[ $install == 1 ]]; then
  packages=(haproxy nginx libnginx-mod-stream)
  [[ ${#features[@]} -gt 0 ]] && packages+=(cmake)
  sudo=()
  [[ $(id -u) != 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [[ ${#features[@]} -gt 0 ]] && ! command -v cmake >/dev/null; then
  echo "proxy-bench.sh: --pingora needs cmake to build pingora; add --install-peers or install it" >&2
  exit 2
fi

exec cargo run --quiet --release --locked -p rig-benches --bin proxy-bench "${features[@]}" -- \
  "$subcommand" ${args[@]+"${args[@]}"}
