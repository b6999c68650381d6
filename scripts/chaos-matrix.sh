#!/usr/bin/env bash
# Seeded chaos runs one after the other, and a Markdown table of their
# results (docs/reliability.md keeps the table of the last full matrix).
#
#   bash scripts/chaos-matrix.sh [OUT_ROOT]
#
# Environment:
#   CHAOS_DURATION   fault phase per run (default 3m)
#   CHAOS_FAULTS     fault list (default kill,pause,partition,restart,wipe)
#   CHAOS_MATRIX     runs as "workload:nodes:seed" words (default: 20 runs,
#                    flash and mixed on 3 and 5 nodes, 5 seeds each)
#   CHAOS_BIN_DIR    where holdfast-chaos and holdfast-server are (default:
#                    $CARGO_TARGET_DIR/release, built here if missing)
#   CHAOS_EXTRA      more `holdfast-chaos run` arguments, e.g.
#                    "--server-arg=--unsafe-chaos-bug=ack-before-commit"
#
# Each run is bounded by `timeout` (SIGINT, which makes the harness drop
# its cluster; SIGKILL 30 s later); its nodes die with it (PDEATHSIG).
# Output: OUT_ROOT/<workload>-n<nodes>-s<seed>/ per run (the data
# directories of passed runs are deleted, history, report and timeline are
# kept) and OUT_ROOT/table.md, one row per run as soon as it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
out_root=${1:-/var/tmp/chaos-runs/matrix}
duration=${CHAOS_DURATION:-3m}
faults=${CHAOS_FAULTS:-kill,pause,partition,restart,wipe}
bin_dir=${CHAOS_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
extra=${CHAOS_EXTRA:-}
default_matrix=""
for workload in flash mixed; do
    for nodes in 3 5; do
        for seed in 1 2 3 4 5; do
            default_matrix+=" $workload:$nodes:$((seed + nodes * 10))"
        done
    done
done
matrix=${CHAOS_MATRIX:-$default_matrix}

if [ ! -x "$bin_dir/holdfast-chaos" ] || [ ! -x "$bin_dir/holdfast-server" ]; then
    cargo build --release --locked -p holdfast-server -p holdfast-chaos
fi

# Seconds in a duration like 3m, 90s, 500ms (rounded up).
seconds_of() {
    case $1 in
        *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
        *s) echo "${1%s}" ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *) echo "$1" ;;
    esac
}
# Fault phase plus the harness's own overtime bound (120 s) and the check.
limit=$(( $(seconds_of "$duration") + 300 ))

mkdir -p "$out_root"
table="$out_root/table.md"
commit=$(git rev-parse --short HEAD)
{
    echo "Commit $commit, $duration per run, faults $faults${extra:+, $extra}, started $(date -u +%FT%TZ)."
    echo
    echo "| workload | nodes | seed | ops | faults | oversell | lost | duplicate | linearizable | converged | unavailable p50 (ms) | p99 (ms) | exit | wall (s) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$table"

for run in $matrix; do
    IFS=: read -r workload nodes seed <<< "$run"
    dir="$out_root/$workload-n$nodes-s$seed"
    rm -rf "$dir"
    mkdir -p "$dir"
    # Flash: 32 clients and 5 s rounds keep each row's history small enough
    # for the linearizability search; mixed spreads over 40 SKUs a round.
    case $workload in
        flash) shape=(--clients 32 --round 5s) ;;
        *) shape=(--clients 32) ;;
    esac
    start=$(date +%s)
    set +e
    # shellcheck disable=SC2086 # $extra is a list of arguments
    timeout --signal=INT --kill-after=30 "$limit" \
        "$bin_dir/holdfast-chaos" run --nodes "$nodes" --duration "$duration" \
        --seed "$seed" --faults "$faults" --workload "$workload" "${shape[@]}" \
        --server-bin "$bin_dir/holdfast-server" --out "$dir" $extra \
        > "$dir/stdout.txt" 2> "$dir/stderr.txt"
    code=$?
    set -e
    wall=$(( $(date +%s) - start ))
    summary=$(head -n 1 "$dir/report.txt" 2>/dev/null || true)
    field() { sed -n "s/.*$1=\([a-z0-9]*\).*/\1/p" <<< "$summary"; }
    ops=$(sed -n 's/^chaos: \([0-9]*\) ops.*/\1/p' <<< "$summary")
    injected=$(sed -n 's/.* \([0-9]*\) faults,.*/\1/p' <<< "$summary")
    p50=$(sed -n 's/^unavailability after faults: .* p50=\([0-9.]*\) ms.*/\1/p' "$dir/report.txt" 2>/dev/null | cut -d. -f1)
    echo "| $workload | $nodes | $seed | ${ops:-—} | ${injected:-—} | $(field oversell) | $(field lost) | $(field duplicate) | $(field linearizable) | $(field converged) | ${p50:-—} | $(field p99) | $code | $wall |" >> "$table"
    if [ "$code" -eq 0 ]; then
        rm -rf "$dir/data"
    fi
    echo "chaos-matrix: $workload n$nodes seed $seed: exit $code in $wall s: ${summary:-no report}"
done
echo "chaos-matrix: table in $table"
