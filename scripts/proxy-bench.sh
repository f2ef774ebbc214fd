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
#   --protocols      instead: the gRPC and the Kafka benchmarks one after the other with their
#                    defaults (about two minutes), each printing its rig/direct ratios
#   --kafka-instructions [MESSAGES]
#                    instead: CPU instructions per produced message (valgrind's callgrind,
#                    independent of machine load, user space only), direct and through rig's
#                    Kafka proxy, and the proxy's own share (default 20000 messages)
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
    --protocols) subcommand=protocols ;;
    --kafka-instructions) subcommand=kafka-instructions ;;
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

case $subcommand in
protocols)
  cargo build --quiet --release --locked -p rig-benches --bin proxy-bench
  bin=${CARGO_TARGET_DIR:-target}/release/proxy-bench
  "$bin" grpc
  "$bin" kafka
  ;;
kafka-instructions)
  command -v valgrind >/dev/null || { echo "proxy-bench.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
  messages=${args[0]:-20000}
  cargo build --quiet --release --locked -p rig-benches --bin proxy-bench
  bin=${CARGO_TARGET_DIR:-target}/release/proxy-bench
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  # One round after the harness's warm-up of messages/10 + 1.
  produced=$((messages + messages / 10 + 1))
  declare -A total
  for path in direct rig; do
    valgrind --tool=callgrind --callgrind-out-file="$out/$path.out" \
      "$bin" kafka --only "$path" --messages "$messages" --rounds 1 --threads 1 \
      --json "$out/$path.json" >"$out/$path.log" 2>&1 || { cat "$out/$path.log" >&2; exit 1; }
    total[$path]=$(callgrind_annotate "$out/$path.out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    echo "$path: ${total[$path]} instructions for $produced messages: $((total[$path] / produced)) per message"
  done
  # The proxy is the only tokio runtime in the process: its tasks' inclusive cost is the
  # proxy's (relays, observer, event JSON). The difference of the totals says the same, plus
  # the noise of librdkafka batching differently from run to run.
  proxy=$(callgrind_annotate --inclusive=yes "$out/rig.out" |
    awk '/tokio::runtime::task::raw::poll \[/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')
  requests=$(awk -F': ' '/"kafka_events"/ { gsub(",", "", $2); print $2 }' "$out/rig.json")
  echo "rig's Kafka proxy: ${proxy:-0} instructions in its tasks: $((${proxy:-0} / produced)) per produced message, $((${proxy:-0} / (requests > 0 ? requests : 1))) per observed request ($requests requests)"
  echo "(totals rig - direct: $(((total[rig] - total[direct]) / produced)) per produced message)"
  ;;
*)
  exec cargo run --quiet --release --locked -p rig-benches --bin proxy-bench "${features[@]}" -- \
    "$subcommand" ${args[@]+"${args[@]}"}
  ;;
esac
