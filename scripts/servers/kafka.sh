#!/usr/bin/env bash
# Gets Apache Kafka for the end-to-end tests: its jars from Maven Central,
# fetched once with Maven and cached outside the checkout, keyed by version:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/kafka-<version>/libs/*.jar
#
# Usage: kafka.sh [VERSION]; 4.4.0 unless told. The tests also run a 3.9.1
# broker: librdkafka before 2.6.1 (Debian 12 has 2.0.2) cannot log in to
# Kafka 4 brokers with SCRAM (it repeats the client nonce, which Kafka 4
# rejects), so SCRAM is proven against the Kafka 3 line.
#
# Prints that libs directory on stdout (and nothing else); progress and
# errors go to stderr. Idempotent: when the jars are there it returns at
# once. Concurrent callers serialize on a lock.
#
# The jars are those of org.apache.kafka:kafka_2.13 (the broker, in KRaft
# mode: `java -cp 'libs/*' kafka.Kafka server.properties`), kafka-tools (the
# command-line tools, such as org.apache.kafka.tools.TopicCommand) and their
# runtime dependencies, plus an slf4j binding of the slf4j-api Kafka brings (it brings none): a pom.xml of
# our own, then `mvn dependency:copy-dependencies`. About 90 jars, 55 MB.
set -euo pipefail

KAFKA_VERSION=${1:-4.4.0}
SLF4J_VERSION=1.7.36
LOCK_TIMEOUT=1200

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover-test/kafka-$KAFKA_VERSION"
LIBS="$CACHE_DIR/libs"

say() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: ERROR: $*" >&2; exit 1; }

usable() { [ -f "$LIBS/.complete" ] && [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$LIBS/kafka-tools-$KAFKA_VERSION.jar" ]; }

if usable; then
  echo "$LIBS"
  exit 0
fi

command -v java >/dev/null 2>&1 || die "java is not on PATH (Kafka $KAFKA_VERSION needs Java 17 or newer: scripts/setup.sh installs it)"
command -v mvn >/dev/null 2>&1 || die "mvn is not on PATH (scripts/setup.sh installs maven)"
command -v flock >/dev/null 2>&1 || die "flock (util-linux) is not on PATH"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
if ! flock -n 9; then
  say "another download of Kafka $KAFKA_VERSION is under way; waiting for it (at most ${LOCK_TIMEOUT}s)"
  flock -w "$LOCK_TIMEOUT" 9 || die "timed out waiting for the lock $CACHE_DIR/.lock"
fi
if usable; then
  echo "$LIBS"
  exit 0
fi

WORK=$(mktemp -d "$CACHE_DIR/fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>drover-test</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
START=$(date +%s)
say "fetching Kafka $KAFKA_VERSION and its dependencies with Maven"
if ! (cd "$WORK" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$WORK/libs" \
  -DincludeScope=runtime >&2); then
  die "mvn dependency:copy-dependencies failed (above)"
fi
# Kafka 3 (through ZooKeeper's client) brings a log4j 1 binding that, not
# configured, prints nothing and would win over slf4j-simple.
rm -f "$WORK/libs"/slf4j-reload4j-*.jar "$WORK/libs"/reload4j-*.jar
ls "$WORK/libs"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "no kafka_2.13-$KAFKA_VERSION.jar came"
rm -rf "$LIBS"
mv "$WORK/libs" "$LIBS"
touch "$LIBS/.complete"
say "fetched $(ls "$LIBS"/*.jar | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(($(date +%s) - START))s"
echo "$LIBS"
