#!/usr/bin/env python3
"""A Kafka broker for the logs harness's `kafka` scenario, run outside the
measured agent for the whole session (its CPU is not the agent's):

  kafka-broker.py serve DIR   start one KRaft broker (tests/e2e/kafka_servers.py,
                              jars from scripts/servers/kafka.sh or $KAFKA_LIBS),
                              create the topic `bench` (6 partitions), write
                              DIR/bootstrap; run until SIGTERM/SIGINT, then stop it

  KAFKA_BROKERS=$(cat DIR/bootstrap) then goes to the agent's environment.
"""

import os
import shutil
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))


def serve(workdir):
    from kafka_servers import KafkaCluster, find_or_fetch_kafka
    os.makedirs(workdir, exist_ok=True)
    libs, why = find_or_fetch_kafka()
    if not libs:
        print("kafka-broker: no Kafka: %s" % why, file=sys.stderr)
        return 1
    # a fresh broker every session: old data would not match the new cluster id
    shutil.rmtree(os.path.join(workdir, "cluster"), ignore_errors=True)
    # the default log segment settings keep every run's messages: the broker
    # writes them to disk as a real one would
    cluster = KafkaCluster(libs, os.path.join(workdir, "cluster"), name="bench",
                           extra={"log.retention.bytes": str(8 << 30)})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        cluster.start()
        cluster.create_topic("bench", partitions=6)
        with open(os.path.join(workdir, "bootstrap"), "w") as f:
            f.write(cluster.bootstrap)
        print("kafka-broker: %s ready" % cluster.bootstrap, flush=True)
        while not stop.wait(1):
            if not cluster.nodes[0].alive():
                print("kafka-broker: the broker exited", file=sys.stderr)
                return 1
        return 0
    finally:
        try:
            os.unlink(os.path.join(workdir, "bootstrap"))
        except FileNotFoundError:
            pass
        cluster.cleanup()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
