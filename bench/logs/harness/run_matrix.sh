#!/usr/bin/env bash
# Run the log-agent benchmark matrix for one or more agent profiles, runs
# interleaved (run 1 of every agent/scenario, then run 2, ...) so that drift
# on the machine hits all agents alike.
#
#   run_matrix.sh [-s "256M 1G"] [-r 3] [-S "null loki http"] [-i 60] [-q 600] [-f cri]
#                 [-d /tmp/logbench-data] [-o /tmp/logbench-results] PROFILE_DIR...
#
#   -s  dataset sizes (generated with gen_pods.py on first use, seed 1)
#   -r  runs per (agent, scenario, size)
#   -S  scenarios to run (each profile runs those it defines)
#   -i  idle measurement seconds per agent (0 = skip)
#   -d  where datasets live;  -o  where results.jsonl and summary.md go
#   -f  dataset format: cri (default) or docker
#   -q  before each run wait up to this many seconds for the machine to be
#       quiet (other load < 0.15 cores); -1 = do not check (default 600)
#
# A profile is a directory with profile.sh (see agents/fluent-bit/profile.sh),
# given as a path (absolute or relative to the current directory), or as a name
# looked up in ../agents/ next to this copy (drover's bench/logs/agents) and then
# in the shared harness's agents/ ($SHARED_BENCH, default the ../shared/bench/logs
# beside this checkout), e.g. `drover` or `fluent-bit`.
set -euo pipefail
BENCH_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export BENCH_HOME
SIZES="256M 1G"; RUNS=3; SCEN="null loki http"; IDLE=60
DATA_ROOT=/tmp/logbench-data; OUT=/tmp/logbench-results; FORMAT=cri; QUIET=600
while getopts "s:r:S:i:d:o:f:q:h" opt; do
  case $opt in
    s) SIZES=$OPTARG ;; r) RUNS=$OPTARG ;; S) SCEN=$OPTARG ;; i) IDLE=$OPTARG ;;
    d) DATA_ROOT=$OPTARG ;; o) OUT=$OPTARG ;; f) FORMAT=$OPTARG ;; q) QUIET=$OPTARG ;;
    *) sed -n "2,22p" "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n "2,22p" "$0"; exit 2; }
SHARED_BENCH=${SHARED_BENCH:-$BENCH_HOME/../../../../shared/bench/logs}
PROFILES=()
for prof in "$@"; do  # resolve every profile to an absolute directory up front
  for cand in "$prof" "$BENCH_HOME/../agents/$prof" "$SHARED_BENCH/agents/$prof"; do
    if [ -f "$cand/profile.sh" ]; then PROFILES+=("$(cd "$cand" && pwd)"); continue 2; fi
  done
  echo "run_matrix: no profile.sh in $prof (nor in $BENCH_HOME/../agents/$prof or $SHARED_BENCH/agents/$prof)" >&2
  exit 2
done
set -- "${PROFILES[@]}"
mkdir -p "$OUT" "$DATA_ROOT"
RESULTS="$OUT/results.jsonl"

dataset() {  # size -> directory (generated once)
  local size=$1 d
  d="$DATA_ROOT/k8slogs-$FORMAT-$(echo "$size" | tr 'A-Z' 'a-z')"
  if [ ! -f "$d/manifest.json" ]; then
    python3 "$BENCH_HOME/gen_pods.py" "$d" --size "$size" --format "$FORMAT" --force >&2
  fi
  echo "$d"
}

run_one() {  # profile_dir scenario data_dir label run_index
  local prof=$1 sc=$2 data=$3 label=$4 r=$5
  (
    # shellcheck disable=SC1091
    source "$prof/profile.sh"
    case " $SCENARIOS " in *" $sc "*) ;; *) exit 0 ;; esac
    cfg_var="CONFIG_$sc"; done_var="DONE_$sc"; poll_var="POLL_$sc"; prom_var="POLL_PROM_$sc"
    args=(throughput --data "$data" --label "$label" --name "$AGENT_NAME"
          --scenario "$AGENT_NAME/$sc" --agent-version "$AGENT_VERSION"
          --agent-cmd "$AGENT_CMD" --config "$prof/${!cfg_var}"
          --done "${!done_var}" --runs 1 --run-index "$r" --quiet-wait "$QUIET" --results "$RESULTS")
    if [ -n "${!poll_var:-}" ]; then args+=(--poll-cmd "${!poll_var}"); fi
    if [ -n "${!prom_var:-}" ]; then args+=(--poll-prom "${!prom_var}"); fi
    python3 "$BENCH_HOME/run_bench.py" "${args[@]}" || echo "run_matrix: $AGENT_NAME/$sc on $label failed" >&2
  )
}

for size in $SIZES; do
  data=$(dataset "$size")
  for r in $(seq 1 "$RUNS"); do
    for sc in $SCEN; do
      for prof in "$@"; do
        run_one "$prof" "$sc" "$data" "$size" "$r"
      done
    done
  done
done

if [ "$IDLE" != 0 ]; then
  idle_data="$DATA_ROOT/k8slogs-$FORMAT-idle"
  [ -f "$idle_data/manifest.json" ] || python3 "$BENCH_HOME/gen_pods.py" "$idle_data" --size 0 --format "$FORMAT" --force >&2
  for r in $(seq 1 "$RUNS"); do
  for prof in "$@"; do
    (
      # shellcheck disable=SC1091
      source "$prof/profile.sh"
      [ -n "${IDLE_CONFIG:-}" ] || exit 0
      args=(idle --data "$idle_data" --label idle --name "$AGENT_NAME" --scenario "$AGENT_NAME/idle"
            --agent-version "$AGENT_VERSION" --agent-cmd "$AGENT_CMD" --config "$prof/$IDLE_CONFIG"
            --duration "$IDLE" --results "$RESULTS")
      if [ -n "${IDLE_SINK:-}" ]; then args+=(--sink); fi
      python3 "$BENCH_HOME/run_bench.py" "${args[@]}" || echo "run_matrix: $AGENT_NAME idle failed" >&2
    )
  done
  done
fi

python3 "$BENCH_HOME/summarize.py" "$RESULTS" | tee "$OUT/summary.md"
