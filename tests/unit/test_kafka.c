/*
 * The kafka output's checks that need no broker: Kafka's topic-name rule,
 * the librdkafka properties the output owns, and the configuration errors
 * (its own and librdkafka's, which checks each property when the producer
 * is made). Delivery is tested against real brokers (tests/e2e).
 */
#include <stdio.h>
#include <string.h>

#include "../../plugins/outputs/kafka/kafka.h"
#include "test.h"

void test_kafka_topic_names(void)
{
    CHECK(kafka_topic_name_valid("logs", 4));
    CHECK(kafka_topic_name_valid("team-a.logs_v2", 14));
    CHECK(kafka_topic_name_valid("..x", 3));
    CHECK(!kafka_topic_name_valid("", 0));
    CHECK(!kafka_topic_name_valid(".", 1));
    CHECK(!kafka_topic_name_valid("..", 2));
    CHECK(!kafka_topic_name_valid("a b", 3));
    CHECK(!kafka_topic_name_valid("a/b", 3));
    CHECK(!kafka_topic_name_valid("caf\xc3\xa9", 5));
    char name[251];
    memset(name, 'a', sizeof name);
    CHECK(kafka_topic_name_valid(name, 249));
    CHECK(!kafka_topic_name_valid(name, 250));
}

void test_kafka_owned_properties(void)
{
    CHECK(kafka_property_is_ours("bootstrap.servers"));
    CHECK(kafka_property_is_ours("linger.ms"));
    CHECK(kafka_property_is_ours("queue.buffering.max.ms"));
    CHECK(kafka_property_is_ours("ssl.ca.location"));
    CHECK(kafka_property_is_ours("sasl.password"));
    CHECK(kafka_property_is_ours("enable.ssl.certificate.verification"));
    CHECK(kafka_property_is_ours("delivery.report.only.error"));
    CHECK(!kafka_property_is_ours("socket.keepalive.enable"));
    CHECK(!kafka_property_is_ours("queue.buffering.max.messages"));
    CHECK(!kafka_property_is_ours("debug"));
}

/* The errors of an agent with one kafka output with these options. */
static const char *kafka_errors(const char *options)
{
    char pipeline[2048];
    snprintf(pipeline, sizeof pipeline,
             "inputs:\n  - {name: t, type: tail, paths: [\"/nonexistent/*.log\"]}\n"
             "outputs:\n  - {name: k, type: kafka, match: t, brokers: [\"127.0.0.1:1\"]%s%s}\n",
             options[0] ? ", " : "", options);
    return dt_config_errors(NULL, pipeline);
}

static void check_refused(const char *options, const char *want)
{
    const char *got = kafka_errors(options);
    if (!CHECK(strstr(got, want) != NULL))
        fprintf(stderr, "  options: {%s}\n  want: %s\n  got: %s\n", options, want, got);
}

void test_kafka_config_errors(void)
{
    CHECK_STR(kafka_errors("topic: logs"), "");
    CHECK_STR(kafka_errors("topic: logs, format: msgpack, compression: lz4, acks: leader, "
                           "idempotence: false, headers: [ns=kubernetes.namespace, stream], "
                           "properties: {socket.keepalive.enable: true}"),
              "");
    check_refused("", "topic");
    check_refused("topic: \"a b\"", "is not a Kafka topic name");
    check_refused("topic: logs, acks: none", "idempotence needs acks: all");
    check_refused("topic: logs, properties: {linger.ms: 3}",
                  "properties.linger.ms: set by the output's own options");
    check_refused("topic: logs, properties: {ssl.ca.location: /x}", "properties.ssl.ca.location");
    check_refused("topic: logs, properties: {no.such.property: 1}",
                  "properties.no.such.property: No such configuration property");
    check_refused("topic: logs, properties: [a]", "properties: expected a map");
    check_refused("topic: logs, headers: [\"=x\"]", "expected name=key or key");
    check_refused("topic: logs, buffer_max_bytes: 1MiB", "at least twice message_max_bytes");
    check_refused("topic: logs, sasl: {mechanism: PLAIN}", "needs sasl.username and sasl.password");
    check_refused("topic: logs, sasl: {mechanism: OAUTHBEARER, oauthbearer: {client_id: x}}",
                  "needs sasl.oauthbearer.token_url");
    check_refused("topic: logs, tls: {cert_file: /x.pem}",
                  "tls.cert_file and tls.key_file go together");
    check_refused("topic: logs, sasl: {mechanism: SCRAM-SHA-256, username: u, "
                  "password_file: /nonexistent/pw}",
                  "sasl.password_file");
    check_refused("topic: logs, compression: brotli", "compression");
}
