#!/bin/bash
# vtpmmgrd demo on a simulated Xen host, no hypervisor needed:
#   swtpm (TPM 2.0)          stands in for the host's hardware TPM
#   real xenstored + shims   stand in for Xen (vtpm-sim-host)
#   vtpm-sim-xl              does what `xl create` does for vtpm=["backend=0,uuid=..."]
#   vtpm-sim-guest           is the guest's xen-tpmfront, serving /dev/tpm0 on a socket
#   tcsd + tpm-tools         are the guest's TPM 1.2 client software
# It installs the Debian packages it needs, builds, runs, and cleans up.
# Needs root (xenstored, tcsd). Usage: scripts/demo.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
BUILD=${BUILD:-$TOP/build}
UUID=${UUID:-8a6d5a1e-3b4c-4d2e-9f10-2a3b4c5d6e7f}
DOMID=7

if [[ ${1:-} != --no-build ]]; then
  bash scripts/install-deps.sh >/dev/null
  cmake -S . -B "$BUILD" -G Ninja -DVTPM_TESTS=ON >/dev/null  # the simulated host is a test target
  cmake --build "$BUILD" -j "$(nproc)" --target vtpmmgrd vtpm-worker vtpmctl vtpm-sim-host vtpm-sim-xl vtpm-sim-guest
fi

W=$(mktemp -d /tmp/vtpmmgrd-demo.XXXXXX)
chmod 755 "$W"
pids=()
cleanup() {
  set +e
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[i]}" 2>/dev/null; wait "${pids[i]}" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket
for p in range(20000, 60000, 2):
    try:
        a=socket.socket(); a.bind(("127.0.0.1",p)); b=socket.socket(); b.bind(("127.0.0.1",p+1)); a.close(); b.close(); print(p); break
    except OSError: pass'; }

step "host TPM 2.0: swtpm"
PORT=$(free_port)
mkdir -p "$W/swtpm"
swtpm socket --tpm2 --server type=tcp,port=$PORT,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((PORT+1)),bindaddr=127.0.0.1 \
  --tpmstate dir="$W/swtpm" --flags not-need-init,startup-clear --pid file="$W/swtpm.pid" --daemon
pids+=("$(cat "$W/swtpm.pid")")
echo "swtpm on 127.0.0.1:$PORT"

step "simulated Xen host: real xenstored, grant/event-channel shim"
coproc SIMHOST { exec "$BUILD/tests/sim/vtpm-sim-host"; }
pids+=("$SIMHOST_PID")
while read -r line <&"${SIMHOST[0]}"; do
  [[ $line == ready ]] && break
  eval "$line"
done
echo "XENSTORED_PATH=$XENSTORED_PATH"

cat > "$W/vtpmmgrd.conf" <<CONF
[daemon]
state_dir = "$W/state"
runtime_dir = "$W/run"
log_target = "stderr"
[host_tpm]
tcti = "swtpm:host=127.0.0.1,port=$PORT"
persist_srk = true
[engine]
kind = "libtpms"
worker_path = "$BUILD/src/tpm/vtpm-worker"
CONF
mkdir -p "$W/state" "$W/run"
start_daemon() {
  LD_PRELOAD=$VTPM_SIM_PRELOAD "$BUILD/src/daemon/vtpmmgrd" --config "$W/vtpmmgrd.conf" 2>>"$W/vtpmmgrd.log" &
  DAEMON=$!
  pids+=("$DAEMON")
  for _ in $(seq 100); do grep -q "vtpmmgrd ready" "$W/vtpmmgrd.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "vtpmmgrd did not start:"; cat "$W/vtpmmgrd.log"; exit 1
}
step "vtpmmgrd (first start provisions SRK, storage key and master key in swtpm)"
start_daemon
tail -n 2 "$W/vtpmmgrd.log"

step "xl create: guest domid $DOMID with vtpm=[\"backend=0,uuid=$UUID\"]"
"$BUILD/tests/sim/vtpm-sim-xl" create $DOMID --uuid "$UUID"

step "guest: xen-tpmfront connects; its /dev/tpm0 is served on a socket"
start_guest() {
  "$BUILD/tests/sim/vtpm-sim-guest" $DOMID --socket "$W/guest-tpm.sock" >"$W/guest.log" 2>&1 &
  GUEST=$!
  pids+=("$GUEST")
  for _ in $(seq 300); do [[ -S $W/guest-tpm.sock ]] && return 0; sleep 0.1; done
  echo "guest did not connect:"; cat "$W/guest.log"; exit 1
}
start_guest
head -n 2 "$W/guest.log"
chmod 666 "$W/guest-tpm.sock"

step "guest: tcsd (trousers) on the guest's TPM"
TPORT=$(free_port)
mkdir -p "$W/tcsd"
chown tss:tss "$W/tcsd"
printf 'port = %s\nsystem_ps_file = %s/tcsd/system.data\n' "$TPORT" "$W" > "$W/tcsd.conf"
chown root:tss "$W/tcsd.conf"; chmod 0640 "$W/tcsd.conf"
TCSD_USE_TCP_DEVICE=1 TCSD_TCP_DEVICE_HOSTNAME=127.0.0.1 TCSD_TCP_DEVICE_PORT=1 TCSD_UN_SOCKET_DEVICE_PATH="$W/guest-tpm.sock" \
  /usr/sbin/tcsd -f -e -c "$W/tcsd.conf" >"$W/tcsd.log" 2>&1 &
pids+=("$!")
sleep 0.5
export TSS_TCSD_PORT=$TPORT

step "guest: tpm_version"
tpm_version 2>"$W/tpm-tools.err" || { echo "tpm_version failed:"; cat "$W/tpm-tools.err" "$W/tcsd.log" "$W/guest.log" "$W/vtpmmgrd.log"; exit 1; }
step "guest: tpm_getpubek (EK made at manufacture, no owner yet)"
tpm_getpubek 2>/dev/null | head -n 4
step "guest: tpm_takeownership -y -z"
tpm_takeownership -y -z 2>/dev/null && echo "owned"
EK1=$(tpm_getpubek -z 2>/dev/null | sha256sum | cut -c1-16)

step "vtpmctl list"
"$BUILD/src/ctl/vtpmctl" --socket "$W/run/control.sock" list

step "restart vtpmmgrd (SIGTERM) while the guest stays connected"
kill -TERM "$DAEMON"; wait "$DAEMON" || true
start_daemon
tpm_version 2>/dev/null | head -n 2
EK2=$(tpm_getpubek -z 2>/dev/null | sha256sum | cut -c1-16)
echo "EK fingerprint before restart $EK1, after $EK2"
if [[ -n $EK1 && $EK1 == "$EK2" ]]; then
  echo "same EK, still owned: state survived the restart"
else
  echo "EK changed or unreadable after the restart"; cat "$W/vtpmmgrd.log"; exit 1
fi
step "daemon log (last lines; every line names domid, devid and uuid)"
tail -n 6 "$W/vtpmmgrd.log"
