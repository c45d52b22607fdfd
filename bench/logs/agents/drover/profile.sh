# Agent profile for drover, sourced by the log benchmark harness's
# run_matrix.sh (bash). Build drover with `zig build -Doptimize=ReleaseFast`
# and point DROVER at the binary. Use our copy of the harness
# (bench/logs/harness: its sink also counts Loki protobuf + snappy):
#   DROVER=zig-out/bin/drover bench/logs/harness/run_matrix.sh bench/logs/agents/drover
: "${DROVER:?set DROVER to the drover binary}"
AGENT_NAME=drover
AGENT_VERSION="$("$DROVER" --version 2>/dev/null | head -1)"
# One command for every scenario: configs whose first line says "oneshot"
# run with --oneshot (drover then exits by itself at the end of the data).
# exec keeps drover itself the measured process.
AGENT_CMD="bash -c 'if head -1 \"\$1\" | grep -q oneshot; then exec \"\$0\" --oneshot -c \"\$1\"; else exec \"\$0\" -c \"\$1\"; fi' $DROVER {{CONFIG}}"

SCENARIOS="null null_poll loki loki_json http kafka k8s_loki k8s_loki_noparse"

# tail -> null; --oneshot: the process exits once everything is read and
# delivered (its checkpoints saved), so wall time includes the shutdown.
CONFIG_null=null.yaml
DONE_null=exit

# same pipeline without --oneshot; completion read from drover's own counter
CONFIG_null_poll=null-poll.yaml
DONE_null_poll=poll
POLL_PROM_null_poll="http://127.0.0.1:{{METRICS_PORT}}/metrics drover_output_records_total name=out"

# tail -> loki output, protobuf + snappy (the default) -> sink.py; completion:
# the sink counted every record (and every long one), then SIGTERM.
CONFIG_loki=loki.yaml
DONE_loki=sink

# the same with format: json (uncompressed), as Fluent Bit's loki output sends
CONFIG_loki_json=loki-json.yaml
DONE_loki_json=sink

# tail -> http output, NDJSON, uncompressed -> sink.py /ingest
CONFIG_http=http.yaml
DONE_http=sink

# tail -> kafka output (defaults: NDJSON records, zstd, acks all) -> the broker
# of bench/logs/kafka-broker.py (KAFKA_BROKERS); completion: drover's count of
# delivered records (delivery reports in), polled.
CONFIG_kafka=kafka.yaml
DONE_kafka=poll
POLL_PROM_kafka="http://127.0.0.1:{{METRICS_PORT}}/metrics drover_output_records_total name=out"

# DaemonSet-like: tail -> kubernetes filter (LIST + WATCH of the sink's stub API,
# {{SINK_URL}}, token {{TOKEN_FILE}}, node {{NODE_NAME}}) -> parse (JSON messages)
# -> grep -> loki, protobuf + snappy -> sink.py; completion: the sink counted every
# record. Our copy of the harness is needed (the shared sink has no LIST/WATCH).
CONFIG_k8s_loki=k8s-loki.yaml
DONE_k8s_loki=sink
# variant (not in the default lists): the same without the parse filter
CONFIG_k8s_loki_noparse=k8s-loki-noparse.yaml
DONE_k8s_loki_noparse=sink

# Idle: the 51 empty files of the idle tree, watched, no traffic; tail ->
# loki, with the sink started to stand in for Loki.
IDLE_CONFIG=idle.yaml
IDLE_SINK=1
