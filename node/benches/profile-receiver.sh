#!/usr/bin/env bash
# Profile the receiving side of an initial sync (figure 1 of benches/sync.rs)
# with callgrind: instruction counts, so the shares hold on a loaded machine.
#
#   cargo build --release --bin yui
#   node/benches/profile-receiver.sh                 # N = 1000, output in /tmp/yui-profile-*/
#   N=2000 YUI_BIN=/path/to/yui node/benches/profile-receiver.sh
#   callgrind_annotate --inclusive=yes /tmp/yui-profile-*/callgrind.out | head -80
#   PROFILER=perf N=10000 node/benches/profile-receiver.sh   # time samples instead (cpu-clock, dwarf)
#   perf report -i /tmp/yui-profile-*/perf.data --children --no-demangle --percent-limit 2
#
# Same setup as the benchmark, by hand: `yui ca init`; per node `yui init`,
# `yui ca issue`, `yui cert install`, `yui serve`; the source is filled with
# the first N records of peers/lib/gen.js through the API (knowledge: title,
# body, category "other", tags); then an empty receiver runs under
# `valgrind --tool=callgrind` and adds the source with `POST /api/v1/peers`
# (no proxy). Instrumentation is switched on just before that POST and off
# once /metrics shows N knowledge records, so start-up is not counted.
# Needs valgrind (or perf), node, python3, curl.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${YUI_BIN:-$here/target/release/yui}
N=${N:-1000}
PEERS=${PEERS_DIR:-$here/../shared/peers}
ROOT=$(mktemp -d /tmp/yui-profile-XXXXXX)
echo "data in $ROOT, binary $BIN, N = $N"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$BIN" ca init --ca-dir "$ROOT/ca" --name profile >/dev/null
setup() { # name
    local d="$ROOT/$1"
    "$BIN" --data-dir "$d" init --town "$1" >/dev/null
    "$BIN" ca issue --ca-dir "$ROOT/ca" --csr "$d/node.csr.pem" --out "$ROOT/ca/$1.cert.pem" >/dev/null
    "$BIN" --data-dir "$d" cert install --cert "$ROOT/ca/$1.cert.pem" --ca-cert "$ROOT/ca/ca.cert.pem" >/dev/null
}
serve() { # name, wrapper...  -> sets $pid; addresses in $ROOT/<name>.out
    local name=$1
    shift
    "$@" "$BIN" --data-dir "$ROOT/$name" serve --api-listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 \
        >"$ROOT/$name.out" 2>"$ROOT/$name.log" </dev/null &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1200); do
        grep -q '^API token:' "$ROOT/$name.out" 2>/dev/null && grep -q '^Peers:' "$ROOT/$name.out" && return 0
        sleep 0.1
    done
    echo "$name did not start" >&2
    exit 1
}
api_of() { awk '/^API:/ {print $2}' "$ROOT/$1.out" | sed -e 's#/*$##' -e 's#/api/v1$##'; }
peers_of() { awk '/^Peers:/ {print $2}' "$ROOT/$1.out" | sed 's#/*$##'; }
token_of() { tr -d '\n' <"$(awk -F': ' '/^API token:/ {print $2}' "$ROOT/$1.out")"; }
count_of() { # name
    curl -s "$(api_of "$1")/metrics" | awk -F' ' '/^yui_records\{collection="knowledge",/ {print $NF}' | head -1
}

setup src
setup dst
serve src
node "$PEERS/lib/gen.js" --jsonl "$N" >"$ROOT/kb.jsonl"
echo "workload sha256 $(sha256sum <"$ROOT/kb.jsonl" | cut -c1-64)"
python3 - "$(api_of src)" "$(token_of src)" "$ROOT/kb.jsonl" <<'EOF'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, token, path = sys.argv[1:4]
recs = [json.loads(l) for l in open(path, encoding="utf-8")]
def create(r):
    body = json.dumps({"fields": {"title": r["title"], "body": r["body"], "category": "other",
                                  "tags": r["tags"]}}).encode()
    req = urllib.request.Request(base + "/api/v1/records/knowledge", data=body, method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 201, resp.status
with ThreadPoolExecutor(8) as ex:
    list(ex.map(create, recs))
print(f"source filled with {len(recs)} records")
EOF

if [ "${PROFILER:-callgrind}" = perf ]; then
    serve dst
    dst=$pid
    perf record -e cpu-clock -F 499 --call-graph dwarf,32768 -p "$dst" -o "$ROOT/perf.data" \
        2>"$ROOT/perf.log" &
    perf_pid=$!
    sleep 1
else
    serve dst valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$ROOT/callgrind.out"
    dst=$pid
    callgrind_control -i on "$dst" >/dev/null
fi
t0=$(date +%s.%N)
curl -sf -X POST -H "Authorization: Bearer $(token_of dst)" -H 'Content-Type: application/json' \
    -d "{\"url\": \"$(peers_of src)\"}" "$(api_of dst)/api/v1/peers" >/dev/null
for _ in $(seq 36000); do
    c=$(count_of dst)
    [ "${c:-0}" -ge "$N" ] && break
    sleep 0.05
done
t1=$(date +%s.%N)
if [ "${PROFILER:-callgrind}" = perf ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    echo "receiver has ${c:-0} knowledge records after $(echo "$t1 - $t0" | bc) s (perf attached)"
    echo "receiver CPU (utime+stime ticks since start): $(awk '{print $14+$15}' "/proc/$dst/stat")"
    kill -TERM "$dst"
    wait "$dst" || true
    echo "profile: $ROOT/perf.data"
else
    callgrind_control -i off "$dst" >/dev/null
    echo "receiver has ${c:-0} knowledge records after $(echo "$t1 - $t0" | bc) s under callgrind"
    kill -TERM "$dst"
    wait "$dst" || true
    echo "profile: $ROOT/callgrind.out"
    echo "callgrind_annotate --inclusive=yes $ROOT/callgrind.out | head -80"
fi
