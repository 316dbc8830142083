#!/usr/bin/env bash
# `make demo`: generate demo PKI, start the echo backend and two Envoy 1.40s
# with the certbound filter, show real curl calls, then shut everything down:
#   envoy/envoy.yaml        :8443  client certificates from the demo CA
#                                  (RFC 8705 section 2.1, PKI method)
#   envoy/self-signed.yaml  :8444  any client certificate, e.g. self-signed
#                                  (RFC 8705 section 2.2, self-signed method)
# Expects `make build` and `make venv` to have run (the Makefile does that).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=target/venv/bin/python
ENVOY=target/venv/bin/envoy
WASM=target/wasm32-wasip1/release/certbound.wasm
LOGS=target/demo
READY_TIMEOUT=${READY_TIMEOUT:-30}

[[ -x $ENVOY && -x $PY ]] || { echo "demo: missing $ENVOY; run 'make venv'" >&2; exit 1; }
[[ -f $WASM ]] || { echo "demo: missing $WASM; run 'make build'" >&2; exit 1; }
command -v curl >/dev/null || { echo "demo: curl is required" >&2; exit 1; }
mkdir -p "$LOGS"

for port in 8443 9901 8444 9902 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: 127.0.0.1:$port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

"$PY" envoy/demo.py gen
# CERTBOUND_JWKS=<JWKS JSON>: Envoy passes it to the wasm VM (host_env_keys).
set -a
# shellcheck disable=SC1091
. envoy/certs/demo.env
set +a

backend_pid="" envoy_pid="" self_signed_pid=""
cleanup() {
  local rc=$?
  for pid in $envoy_pid $self_signed_pid $backend_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $envoy_pid $self_signed_pid $backend_pid; do
    wait "$pid" 2>/dev/null || true
  done
  echo "demo: stopped Envoy and the backend (logs in $LOGS/)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" envoy/demo.py backend >"$LOGS/backend.log" 2>&1 &
backend_pid=$!
"$ENVOY" -c envoy/envoy.yaml --concurrency 1 --disable-hot-restart \
  --log-level info >"$LOGS/envoy.log" 2>&1 &
envoy_pid=$!
"$ENVOY" -c envoy/self-signed.yaml --concurrency 1 --disable-hot-restart \
  --log-level info >"$LOGS/envoy-self-signed.log" 2>&1 &
self_signed_pid=$!

alive() { # running, and not a zombie
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

# Poll until Envoy's admin says ready and the backend accepts connections,
# bounded by READY_TIMEOUT seconds; bail out early if either process died.
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fs -o /dev/null --max-time 1 http://127.0.0.1:9901/ready &&
      curl -fs -o /dev/null --max-time 1 http://127.0.0.1:9902/ready &&
      curl -s -o /dev/null --max-time 1 http://127.0.0.1:8080/; do
  for p in "envoy:$envoy_pid" "envoy-self-signed:$self_signed_pid" "backend:$backend_pid"; do
    if ! alive "${p#*:}"; then
      echo "demo: ${p%%:*} exited during startup; last log lines:" >&2
      tail -n 15 "$LOGS/${p%%:*}.log" >&2
      exit 1
    fi
  done
  if ((SECONDS >= deadline)); then
    echo "demo: not ready after ${READY_TIMEOUT}s; see $LOGS/envoy*.log" >&2
    exit 1
  fi
  sleep 0.1 # poll interval
done

TOKEN=$("$PY" envoy/demo.py mint --cert envoy/certs/client-a.pem)
cat <<EOF

Envoy 1.40 + certbound.wasm on https://localhost:8443 -> echo backend on 127.0.0.1:8080
\$ TOKEN=\$($PY envoy/demo.py mint --cert envoy/certs/client-a.pem)
  TOKEN=${TOKEN:0:24}... (ES256, cnf.x5t#S256=$("$PY" envoy/demo.py thumbprint --cert envoy/certs/client-a.pem))
EOF

fail=0
call() { # call TITLE EXPECTED_STATUS CLIENT [PORT]; CLIENT: envoy/certs/CLIENT{,-key}.pem
  local title=$1 want=$2 client=$3 port=${4:-8443} out status
  printf '\n== %s (expect %s)\n' "$title" "$want"
  printf '$ curl -sS -i --cacert envoy/certs/ca.pem --cert envoy/certs/%s.pem --key envoy/certs/%s-key.pem -H "Authorization: Bearer $TOKEN" https://localhost:%s/demo\n' "$client" "$client" "$port"
  out=$(curl -sS -i --cacert envoy/certs/ca.pem \
    --cert "envoy/certs/$client.pem" --key "envoy/certs/$client-key.pem" \
    -H "Authorization: Bearer $TOKEN" "https://localhost:$port/demo" | tr -d '\r')
  # Print the token's text as $TOKEN to keep the echo readable.
  printf '%s\n' "${out//"$TOKEN"/\$TOKEN}" | sed 's/^/  /'
  status=$(printf '%s\n' "$out" | awk 'NR==1 {print $2}')
  if [[ $status != "$want" ]]; then
    echo "demo: expected $want, got ${status:-nothing}" >&2
    fail=1
  fi
}
call "token bound to client-a, sent with client-a's certificate" 200 client-a
call "the same token, sent with client-b's certificate" 401 client-b

# RFC 8705 section 2.2: each app makes its own self-signed certificate; the
# token is bound to it, and that binding is all envoy/self-signed.yaml trusts.
for app in app-1 app-2; do
  "$PY" envoy/demo.py self-signed --cn "$app" --cert "envoy/certs/$app.pem" --key "envoy/certs/$app-key.pem"
done
TOKEN=$("$PY" envoy/demo.py mint --cert envoy/certs/app-1.pem)
cat <<EOF

Self-signed method: envoy/self-signed.yaml on https://localhost:8444 accepts ANY client
certificate (trust_chain_verification: ACCEPT_UNTRUSTED); the token's binding is the only trust.
\$ $PY envoy/demo.py self-signed --cert envoy/certs/app-1.pem --key envoy/certs/app-1-key.pem  # app-2 alike
\$ TOKEN=\$($PY envoy/demo.py mint --cert envoy/certs/app-1.pem)
  TOKEN=${TOKEN:0:24}... (ES256, cnf.x5t#S256=$("$PY" envoy/demo.py thumbprint --cert envoy/certs/app-1.pem))
EOF
call "token bound to app-1's self-signed certificate, sent with it" 200 app-1 8444
call "the same token, sent with app-2's self-signed certificate" 401 app-2 8444
echo
if ((fail)); then echo "demo: FAILED" >&2; exit 1; fi
echo "demo: OK (200 for the bound certificate, 401 for another one; CA-issued and self-signed)"
