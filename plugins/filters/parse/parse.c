/*
 * parse filter: turns a structured log line (JSON, logfmt, or text a regex
 * with named groups describes) into fields, and optionally takes the
 * record's time and message from them.
 *
 * The work is done by dr_parse_record (parse.h), which other filters can
 * call too; this file is the configuration, the counters and what to do
 * with a record that does not parse.
 */
#include <stdlib.h>

#include "../keys.h"
#include "drover/plugin.h"
#include "parse.h"

typedef struct parse_conf {
    int format;
    char *key;
    char *pattern;
    char *time_key;
    char *time_format;
    bool keep_time;
    bool keep_original;
    char *message_key;
    char *prefix;
    int on_error;
    int64_t max_depth;
    int64_t max_fields;
    int64_t max_values;
} parse_conf;

/* In the order of dr_parse_format. */
static const char *const format_choices[] = {"json", "logfmt", "regex", NULL};

enum { ON_ERROR_KEEP = 0, ON_ERROR_DROP = 1 };
static const char *const on_error_choices[] = {"keep", "drop", NULL};

static const dr_option parse_options[] = {
    {"format", DR_OPT_ENUM, offsetof(parse_conf, format), NULL, DR_OPT_REQUIRED, format_choices, 0,
     0,
     "How the key's value is read. `json`: one JSON object; each member becomes a field (a "
     "string as text, with its escapes decoded; a number, true, false, null, object or array "
     "as JSON, written as it is by the outputs). Anything but an object (an array, a scalar, "
     "invalid JSON) does not parse. `logfmt`: `key=value` pairs separated by spaces; values "
     "bare or in double quotes (with `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r` decoded); a key alone "
     "is `true`; every value is a string. `regex`: the `pattern`; each named group that took "
     "part in the match becomes a string field."},
    {"key", DR_OPT_STRING, offsetof(parse_conf, key), "message", 0, NULL, 0, 0,
     "The record key to parse: `message` or a field an earlier filter added (any readable "
     "key works, but only those two can be removed by `keep_original: false`). A record "
     "without the key passes unchanged and is not counted as an error."},
    {"pattern", DR_OPT_STRING, offsetof(parse_conf, pattern), NULL, 0, NULL, 0, 0,
     "For `format: regex` (required there, refused otherwise): a PCRE2 regular expression on "
     "bytes with named groups, such as `'^(?<ip>\\S+) \\S+ (?<user>\\S+) \\[(?<ts>[^\\]]+)\\] "
     "\"(?<request>[^\"]*)\" (?<status>\\d{3}) (?<bytes>\\S+)'`. It is searched for anywhere "
     "in the value unless anchored with `^` (and `$`). Each named group that matched becomes "
     "a string field; unnamed groups are ignored. A value it does not match does not parse. "
     "Checked when the configuration is loaded: a pattern without a named group, or one that "
     "does not compile (the error names the offset), is refused."},
    {"time_key", DR_OPT_STRING, offsetof(parse_conf, time_key), NULL, 0, NULL, 0, 0,
     "A parsed field (by its name in the text, before `prefix`) holding the record's time. "
     "When it parses with `time_format`, it becomes the record's time (`time` in the outputs) "
     "and the field is removed, unless `keep_time`. When it does not parse, the record keeps "
     "the time it had (from the container runtime), the field is stored like any other (so "
     "that the value is not lost), the rest of the parse stands, and it is counted in "
     "`drover_filter_parse_time_errors_total`. When the name occurs twice, the last "
     "decides. A record without the field keeps its time and is not counted. For `format: "
     "regex`, a group of this name must exist."},
    {"time_format", DR_OPT_STRING, offsetof(parse_conf, time_format), "rfc3339", 0, NULL, 0, 0,
     "How `time_key` is written. `rfc3339`: `2026-11-25T04:10:38.123456789Z` or with an "
     "offset `+01:00` (fraction optional). `unix`: seconds since 1970, optionally with a "
     "fraction (`1795579838.123456`); `unix_ms`: milliseconds; `unix_ns`: nanoseconds; each "
     "an integer with an optional fraction (digits past the nanosecond are cut; no exponent), "
     "as a JSON number or a string. Anything else is a strptime format (glibc's conversions, "
     "English month and day names), such as `'%d/%b/%Y:%H:%M:%S %z'` for nginx and Apache "
     "logs, plus `%L` or `%f` for the digits of a fraction of a second (`'%Y-%m-%d "
     "%H:%M:%S,%L'`). The whole value must match (trailing spaces aside). Without `%z` the "
     "time is UTC; without a year, in the current year. `%s` is refused (use `unix`), as is "
     "an unknown conversion."},
    {"keep_time", DR_OPT_BOOL, offsetof(parse_conf, keep_time), "false", 0, NULL, 0, 0,
     "Keep the `time_key` field as a field as well (Fluent Bit's `Time_Keep`). Its name "
     "follows the rule for reserved names: a field `time` is kept as `time_`."},
    {"keep_original", DR_OPT_BOOL, offsetof(parse_conf, keep_original), "true", 0, NULL, 0, 0,
     "Leave the parsed key as it was. `false` (Fluent Bit's `Keep_Log Off`, the default "
     "`Preserve_Key Off` of its parser filter, Vector's `drop_field: true`) removes it once "
     "the value parsed: a field is removed; the message, which a record always has, becomes "
     "empty, unless `message_key` gives it a new value."},
    {"message_key", DR_OPT_STRING, offsetof(parse_conf, message_key), NULL, 0, NULL, 0, 0,
     "A parsed field (by its name in the text, before `prefix`) whose value becomes the "
     "message, such as `msg` for JSON logs that keep their text there; the field is then not "
     "stored (Vector's `.message = del(.msg)`). A non-string JSON value becomes its JSON "
     "text. This replaces the message whatever `keep_original` says (copy the message to a "
     "field with the modify filter first to keep the line). Without it, a parsed field "
     "called `message` never replaces the message: it is stored as `message_`. When the "
     "value has no such field, the message stays as `keep_original` leaves it."},
    {"prefix", DR_OPT_STRING, offsetof(parse_conf, prefix), NULL, 0, NULL, 0, 0,
     "Put before the name of every field stored, such as `app.` or `app_` (the closest to "
     "Fluent Bit's `Merge_Log_Key`, flattened). With a prefix, parsed names such as `time` "
     "or `stream` become ordinary fields (`app.time`). May not start with `kubernetes.`."},
    {"on_error", DR_OPT_ENUM, offsetof(parse_conf, on_error), "keep", 0, on_error_choices, 0, 0,
     "A record whose value does not parse (or would break a limit below): `keep` passes it "
     "unchanged, `drop` drops it, counted in "
     "`drover_dropped_records_total{reason=\"parse_error\"}`. Either way it is counted in "
     "`drover_filter_parse_errors_total`. A time that does not parse is not such an error "
     "(see `time_key`)."},
    {"max_depth", DR_OPT_INT, offsetof(parse_conf, max_depth), "64", 0, NULL, 1, 1000,
     "JSON: how deep arrays and objects may nest; a deeper value does not parse."},
    {"max_fields", DR_OPT_INT, offsetof(parse_conf, max_fields), "1000", 0, NULL, 1, 65535,
     "The most fields one value may yield (members of the JSON object, logfmt pairs, named "
     "groups of the pattern); a value with more does not parse (a pattern with more is "
     "refused). Storing a field costs a look-up among the record's others, so this bounds the "
     "work a hostile line can cause."},
    {"max_values", DR_OPT_INT, offsetof(parse_conf, max_values), "100000", 0, NULL, 1, 100000000,
     "JSON: the most values in one document, nested ones included (each costs about 64 bytes "
     "while the line is parsed); a document with more does not parse."},
    {0},
};

typedef struct parse_state {
    dr_parse_ctx *ctx;
    dr_counter *errors;
    dr_counter *time_errors;
    dr_counter *regex_errors; /* format regex only */
} parse_state;

static void parse_destroy(dr_instance *inst)
{
    parse_state *st = inst->state;
    if (!st)
        return;
    dr_parse_ctx_free(st->ctx);
    free(st);
    inst->state = NULL;
}

static void spec_from_conf(const parse_conf *conf, dr_parse_spec *spec)
{
    dr_parse_spec_init(spec, (dr_parse_format)conf->format);
    spec->key = conf->key;
    spec->pattern = conf->pattern;
    spec->time_key = conf->time_key;
    spec->time_format = conf->time_format;
    spec->keep_time = conf->keep_time;
    spec->keep_original = conf->keep_original;
    spec->message_key = conf->message_key;
    spec->prefix = conf->prefix;
    spec->max_depth = (uint32_t)conf->max_depth;
    spec->max_fields = (uint32_t)conf->max_fields;
    spec->max_values = (uint32_t)conf->max_values;
}

static int parse_init(dr_instance *inst, dr_error *err)
{
    parse_conf *conf = inst->conf;
    parse_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    dr_parse_spec spec;
    spec_from_conf(conf, &spec);
    int rc = dr_parse_ctx_new(&spec, &st->ctx, err);
    if (rc < 0) {
        parse_destroy(inst);
        return rc;
    }
    st->errors = dr_counter_new(inst, "drover_filter_parse_errors_total",
                                "Records whose key did not parse (or broke a limit of the "
                                "filter); on_error says whether they were kept or dropped.",
                                NULL, NULL);
    st->time_errors =
        dr_counter_new(inst, "drover_filter_parse_time_errors_total",
                       "Parsed records whose time field did not match time_format; they kept "
                       "the time they had.",
                       NULL, NULL);
    if (spec.format == DR_PARSE_REGEX)
        st->regex_errors = dr_filter_regex_errors_counter(inst);
    return 0;
}

/* The reason as a logfmt value: the JSON parser's messages quote the byte
 * at fault, which may be a double quote itself. */
static void logfmt_value(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '"' || *s == '\\')
            out[o++] = '\\';
        out[o++] = *s;
    }
    out[o] = '\0';
}

static void log_reason(dr_instance *inst, const char *why)
{
    char value[sizeof(dr_error)];
    logfmt_value(why, value, sizeof value);
    dr_log(inst, DR_LOG_DEBUG, "record did not parse", "error=\"%s\"", value);
}

/* A record that did not parse: counted, logged (rate-limited) and kept or
 * dropped. Returns true when it was dropped. */
static bool parse_failed(dr_instance *inst, dr_record *r, int rc)
{
    parse_conf *conf = inst->conf;
    parse_state *st = inst->state;
    dr_counter_add(st->errors, 1);
    if (rc == DR_ERR && st->regex_errors)
        dr_filter_regex_gave_up(inst, st->regex_errors, dr_parse_regex(st->ctx));
    else
        log_reason(inst, dr_parse_why(st->ctx));
    if (conf->on_error != ON_ERROR_DROP)
        return false;
    r->flags |= DR_REC_DROPPED;
    return true;
}

static void parse_filter(dr_instance *inst, dr_chunk *c)
{
    parse_state *st = inst->state;
    uint64_t dropped = 0, time_errors = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        int rc = dr_parse_record(st->ctx, c, r);
        if (rc == DR_PARSE_BAD_TIME)
            time_errors++;
        else if (rc < 0 && parse_failed(inst, r, rc))
            dropped++;
    }
    if (time_errors)
        dr_counter_add(st->time_errors, time_errors);
    if (dropped)
        dr_count_drop(inst, "parse_error", dropped);
}

const dr_plugin dr_plugin_parse = {
    .abi = DR_PLUGIN_ABI,
    .name = "parse",
    .kind = DR_FILTER,
    .description =
        "Parses a key of each record (the message by default) as JSON, logfmt or a regex with "
        "named groups, and adds what it finds as fields; it can also take the record's time "
        "and message from them.\n\n"
        "```yaml\nfilters:\n"
        "  # {\"level\":\"info\",\"msg\":\"started\",\"ts\":1795579838.5,\"req\":{\"id\":7}}\n"
        "  - type: parse\n    format: json\n    message_key: msg\n    time_key: ts\n"
        "    time_format: unix\n"
        "  # 10.0.0.1 - ann [25/Nov/2026:04:10:38 +0000] \"GET / HTTP/1.1\" 200 612\n"
        "  - type: parse\n    format: regex\n"
        "    pattern: '^(?<ip>\\S+) \\S+ (?<user>\\S+) \\[(?<ts>[^\\]]+)\\] "
        "\"(?<request>[^\"]*)\" (?<status>\\d{3}) (?<bytes>\\S+)'\n"
        "    time_key: ts\n    time_format: '%d/%b/%Y:%H:%M:%S %z'\n"
        "  # level=warn msg=\"disk almost full\" used=91%\n"
        "  - {type: parse, format: logfmt, prefix: app_}\n```\n\n"
        "The first gives the fields `level` (string) and `req` (the JSON object `{\"id\":7}`, "
        "written as it is by the outputs), the message `started` and the time "
        "2026-11-25T04:10:38.5Z.\n\n"
        "**Fields and names.** Each parsed name becomes a field named `prefix` + name, in the "
        "order of the text; a name seen twice, or one an earlier filter already set, is "
        "replaced (the last wins). Names a field cannot have (`message`, `time`, `stream`, "
        "`kubernetes`, `kubernetes.<x>`, the empty name) get an underscore after the reserved "
        "word, so that nothing is lost and the outputs' own keys are never overwritten: "
        "`time_`, `stream_`, `message_`, `kubernetes_`, `kubernetes_.pod`, `_`. The same "
        "holds after the prefix (`app.time` is fine as it is). A parsed `message` becomes the "
        "message only through `message_key`.\n\n"
        "**Errors.** A value that does not parse, or that would yield more than `max_fields` "
        "fields or a name of 4096 bytes or more, changes nothing in the record; `on_error` "
        "keeps (the default) or drops it, and it is counted in "
        "`drover_filter_parse_errors_total`; the reason is logged at debug level. With "
        "`format: regex`, a match that hits the regex limit (100000 backtracking steps, "
        "depth 10000) is such an error too, and is also counted in "
        "`drover_filter_regex_errors_total` and logged as a warning naming the pattern. A "
        "time that does not parse is counted in `drover_filter_parse_time_errors_total` and "
        "leaves the record's time as it was; the fields are stored all the same, the time "
        "field included.\n\n"
        "**JSON values.** Strings are decoded (`\\u00e9` is é; invalid UTF-8 is kept as it is "
        "and repaired by the outputs, as in any string). Other values keep their text, so "
        "numbers keep their exact digits; an object or array written over several lines is "
        "joined onto one (its line breaks are only whitespace), and invalid UTF-8 in its "
        "strings becomes U+FFFD, so that every output line stays valid JSON.\n\n"
        "**Coming from Fluent Bit.** A parser filter with `Key_Name log`, `Parser` and "
        "`Reserve_Data On` is this filter with `key`, `format`/`pattern` (fields beside the "
        "others are always kept); `Time_Key`, `Time_Format`, `Time_Keep` are `time_key`, "
        "`time_format`, `keep_time` (`%L` works the same); `Preserve_Key On` is "
        "`keep_original: true` (the default here). The kubernetes filter's `Merge_Log On` is "
        "`format: json` on the message, `Keep_Log Off` is `keep_original: false`, and "
        "`Merge_Log_Key` is roughly `prefix` (fields are flattened, `app.level` rather than "
        "nested).\n\n"
        "**Coming from Vector.** `. = merge(., parse_json!(.message))` is `format: json`; "
        "`parse_logfmt` and `parse_regex` are `format: logfmt` and `format: regex` (named "
        "groups the same way); `.message = del(.msg)` is `message_key: msg`; `.timestamp = "
        "parse_timestamp!(.ts, \"%+\")` is `time_key: ts`; the old transforms' `drop_field: "
        "true` is `keep_original: false`. Unlike Vector, a parse error never stops the record: "
        "see `on_error`.",
    .options = parse_options,
    .conf_size = sizeof(parse_conf),
    .init = parse_init,
    .filter = parse_filter,
    .destroy = parse_destroy,
};
