/*
 * The librdkafka configuration of a kafka output, made from its options.
 *
 * Every option maps to one or two librdkafka properties; `properties`
 * passes any other one through. The properties the options own are refused
 * there (kafka_property_is_ours): set twice, one of the two settings would
 * silently lose, and some are what at-least-once delivery rests on
 * (delivery reports for every message, the statistics the self-metrics
 * read). librdkafka checks every value itself, so a wrong one is a
 * configuration error naming the property.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http_client.h"
#include "kafka.h"

static const char *const owned_properties[] = {
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "compression.codec",
    "compression.type",
    "compression.level",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "linger.ms",
    "queue.buffering.max.ms",
    "batch.size",
    "batch.num.messages",
    "queue.buffering.max.kbytes",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.max.bytes",
    "statistics.interval.ms",
    "delivery.report.only.error",
    "partitioner",
    "security.protocol",
    "log.queue",
    NULL,
};

bool kafka_property_is_ours(const char *name)
{
    for (const char *const *p = owned_properties; *p; p++)
        if (strcmp(name, *p) == 0)
            return true;
    /* TLS and SASL settings come from the tls.* and sasl.* options */
    return strncmp(name, "ssl.", 4) == 0 || strncmp(name, "sasl.", 5) == 0 ||
           strcmp(name, "enable.ssl.certificate.verification") == 0;
}

static bool set(rd_kafka_conf_t *kc, const char *name, const char *value, dr_error *err)
{
    char why[512];
    if (rd_kafka_conf_set(kc, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return true;
    dr_error_set(err, "librdkafka property %s: %s", name, why);
    return false;
}

static bool set_int(rd_kafka_conf_t *kc, const char *name, int64_t v, dr_error *err)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    return set(kc, name, s, err);
}

static bool set_brokers(rd_kafka_conf_t *kc, const kafka_conf *conf, dr_error *err)
{
    size_t len = 1;
    for (size_t i = 0; i < conf->brokers.n; i++)
        len += strlen(conf->brokers.v[i]) + 1;
    char *list = malloc(len);
    if (!list) {
        dr_error_set(err, "out of memory");
        return false;
    }
    list[0] = '\0';
    for (size_t i = 0; i < conf->brokers.n; i++) {
        if (i)
            strcat(list, ",");
        strcat(list, conf->brokers.v[i]);
    }
    bool ok = set(kc, "bootstrap.servers", list, err);
    free(list);
    return ok;
}

/* A secret from a file, read once at start (librdkafka keeps its own copy). */
static bool set_from_file(rd_kafka_conf_t *kc, const char *name, const char *path, const char *what,
                          dr_error *err)
{
    dr_file_secret s = {0};
    const char *value;
    char why[256];
    bool ok = dr_file_secret_read(&s, what, path, &value, why, sizeof why) == 0;
    if (!ok)
        dr_error_set(err, "%s", why);
    else
        ok = set(kc, name, value, err);
    dr_file_secret_free(&s);
    return ok;
}

static const char *const acks_values[] = {"all", "1", "0"};
static const char *const compression_values[] = {"zstd", "snappy", "lz4", "gzip", "none"};
static const char *const sasl_values[] = {NULL, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512",
                                          "OAUTHBEARER"};

static bool set_delivery(rd_kafka_conf_t *kc, const kafka_conf *conf, dr_error *err)
{
    if (conf->idempotence && conf->acks != 0) {
        dr_error_set(err, "idempotence needs acks: all (set idempotence: false for acks %s)",
                     acks_values[conf->acks]);
        return false;
    }
    const char *part = conf->partitioner ? conf->partitioner : "murmur2_random";
    return set(kc, "acks", acks_values[conf->acks], err) &&
           set(kc, "enable.idempotence", conf->idempotence ? "true" : "false", err) &&
           set(kc, "compression.codec", compression_values[conf->compression], err) &&
           set_int(kc, "compression.level", conf->compression_level, err) &&
           set_int(kc, "linger.ms", conf->linger_ms, err) &&
           set_int(kc, "batch.size", (int64_t)conf->batch_bytes, err) &&
           set_int(kc, "batch.num.messages", conf->batch_messages, err) &&
           set_int(kc, "queue.buffering.max.kbytes", (int64_t)(conf->buffer_bytes / 1024), err) &&
           set_int(kc, "message.timeout.ms", conf->delivery_timeout_ms, err) &&
           set_int(kc, "message.max.bytes", (int64_t)conf->message_max_bytes, err) &&
           set_int(kc, "statistics.interval.ms", conf->statistics_interval_ms, err) &&
           set(kc, "delivery.report.only.error", "false", err) &&
           set(kc, "client.id", conf->client_id, err) && set(kc, "partitioner", part, err) &&
           set(kc, "log.queue", "true", err);
}

static bool set_tls(rd_kafka_conf_t *kc, const kafka_conf *conf, dr_error *err)
{
    if (conf->tls_ca_file && !set(kc, "ssl.ca.location", conf->tls_ca_file, err))
        return false;
    if (!!conf->tls_cert_file != !!conf->tls_key_file) {
        dr_error_set(err, "tls.cert_file and tls.key_file go together");
        return false;
    }
    if (conf->tls_cert_file && (!set(kc, "ssl.certificate.location", conf->tls_cert_file, err) ||
                                !set(kc, "ssl.key.location", conf->tls_key_file, err)))
        return false;
    if (conf->tls_key_password && !set(kc, "ssl.key.password", conf->tls_key_password, err))
        return false;
    if (conf->tls_insecure_skip_verify &&
        (!set(kc, "enable.ssl.certificate.verification", "false", err) ||
         !set(kc, "ssl.endpoint.identification.algorithm", "none", err)))
        return false;
    return true;
}

static bool set_sasl(rd_kafka_conf_t *kc, const kafka_conf *conf, dr_error *err)
{
    if (conf->sasl_mechanism == KAFKA_SASL_NONE)
        return true;
    if (!set(kc, "sasl.mechanism", sasl_values[conf->sasl_mechanism], err))
        return false;
    if (conf->sasl_mechanism != KAFKA_SASL_OAUTHBEARER) {
        if (!conf->sasl_username || (!conf->sasl_password && !conf->sasl_password_file)) {
            dr_error_set(err,
                         "sasl.mechanism %s needs sasl.username and sasl.password (or "
                         "sasl.password_file)",
                         sasl_values[conf->sasl_mechanism]);
            return false;
        }
        if (conf->sasl_password && conf->sasl_password_file) {
            dr_error_set(err, "sasl.password and sasl.password_file: set one");
            return false;
        }
        return set(kc, "sasl.username", conf->sasl_username, err) &&
               (conf->sasl_password ? set(kc, "sasl.password", conf->sasl_password, err)
                                    : set_from_file(kc, "sasl.password", conf->sasl_password_file,
                                                    "sasl.password_file", err));
    }
    /* OAUTHBEARER: drover's OAuth2 client fetches the tokens and hands them
     * to librdkafka when it asks (kafka.c, which checked the options);
     * librdkafka's own OIDC client is missing from many builds of it,
     * Debian's among them. */
    return true;
}

static bool set_security_protocol(rd_kafka_conf_t *kc, const kafka_conf *conf, dr_error *err)
{
    bool tls = conf->tls_enabled || conf->tls_ca_file || conf->tls_cert_file;
    bool sasl = conf->sasl_mechanism != KAFKA_SASL_NONE;
    const char *proto = tls ? (sasl ? "sasl_ssl" : "ssl") : (sasl ? "sasl_plaintext" : "plaintext");
    return set(kc, "security.protocol", proto, err);
}

static bool set_properties(rd_kafka_conf_t *kc, const dr_cfg_node *map, dr_error *err)
{
    if (!map || map->type == DR_CFG_NULL)
        return true;
    if (map->type != DR_CFG_MAP) {
        dr_error_set(err, "%s:%d:%d: properties: expected a map of librdkafka properties",
                     map->file, map->line, map->col);
        return false;
    }
    for (size_t i = 0; i < map->n; i++) {
        const dr_cfg_node *k = map->pairs[i].key, *v = map->pairs[i].val;
        if (v->type != DR_CFG_SCALAR) {
            dr_error_set(err, "%s:%d:%d: properties.%s: expected a string or a number", v->file,
                         v->line, v->col, k->str);
            return false;
        }
        if (kafka_property_is_ours(k->str)) {
            dr_error_set(err, "%s:%d:%d: properties.%s: set by the output's own options", k->file,
                         k->line, k->col, k->str);
            return false;
        }
        char why[512];
        if (rd_kafka_conf_set(kc, k->str, v->str, why, sizeof why) != RD_KAFKA_CONF_OK) {
            dr_error_set(err, "%s:%d:%d: properties.%s: %s", k->file, k->line, k->col, k->str, why);
            return false;
        }
    }
    return true;
}

rd_kafka_conf_t *kafka_make_conf(dr_instance *inst, dr_error *err)
{
    kafka_conf *conf = inst->conf;
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (!kc) {
        dr_error_set(err, "out of memory");
        return NULL;
    }
    if (set_brokers(kc, conf, err) && set_delivery(kc, conf, err) && set_tls(kc, conf, err) &&
        set_sasl(kc, conf, err) && set_security_protocol(kc, conf, err) &&
        set_properties(kc, conf->properties, err))
        return kc;
    rd_kafka_conf_destroy(kc);
    return NULL;
}
