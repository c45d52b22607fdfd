/*
 * OAuth 2.0 client credentials (RFC 6749 section 4.4) for the HTTP outputs:
 * the access token that Grafana Cloud, Azure Monitor and other managed
 * backends want instead of a static bearer token.
 *
 * The HTTP client (src/http_client.c) owns one dr_oauth2 when its conf has
 * an `oauth2` map, and asks it for a token before each request. The token
 * is fetched from token_url with its own small HTTP client on the same loop
 * (so its TLS settings are the token endpoint's, not the backend's), kept
 * until shortly before it expires, and fetched again when the backend
 * answers 401. While no usable token exists, the client holds its requests
 * and dr_oauth2 calls it back when one arrives; a failing token endpoint is
 * retried with exponential backoff, logged and counted, and never makes
 * the client fail or drop a request.
 *
 * The pure parts (the form body, the Basic header, the token answer) are
 * functions of their own so the unit tests can reach them.
 */
#ifndef DROVER_OAUTH2_H
#define DROVER_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "drover/plugin.h"

struct dr_cfg_node;
struct dr_http_client_conf;

/* The `oauth2` map, named as Prometheus' oauth2 config names it (its
 * tls_config is `tls`, as for the outputs themselves). */
typedef struct dr_oauth2_conf {
    char *client_id;
    char *client_secret;
    char *client_secret_file; /* read at each fetch when it changed */
    char *token_url;
    dr_strlist scopes;
    const struct dr_cfg_node *endpoint_params;          /* a map of strings, or NULL */
    char *ca_file, *cert_file, *key_file, *server_name; /* the token endpoint's TLS */
    bool insecure_skip_verify;
    char *proxy_url;
} dr_oauth2_conf;

/* The option table of dr_oauth2_conf (a DR_OPT_GROUP named "oauth2" in
 * dr_http_client_options). */
extern const dr_option dr_oauth2_options[];

/* True when any key of the map was set: the outputs then use OAuth2. */
bool dr_oauth2_configured(const dr_oauth2_conf *conf);

/* ---- the pure parts ---------------------------------------------------------- */

/* Appends s as application/x-www-form-urlencoded (as Go's
 * url.QueryEscape: A-Z a-z 0-9 - _ . ~ kept, space as '+', the rest %XX).
 * 0 or DR_ENOMEM. */
int dr_form_escape(dr_buf *b, const char *s);
/* Appends "key=value", preceded by '&' unless b is empty. */
int dr_form_add(dr_buf *b, const char *key, const char *value);
/* "Basic " + base64(escape(id) ":" escape(secret)), NUL-terminated in b, as
 * RFC 6749 section 2.3.1 says and Go's oauth2 package does. */
int dr_oauth2_basic_credentials(dr_buf *b, const char *id, const char *secret);

typedef struct dr_oauth2_answer {
    char *access_token;   /* malloc'd; the caller frees */
    int64_t expires_in_s; /* -1: the answer said nothing (then it is kept until a 401) */
} dr_oauth2_answer;

#define DR_OAUTH2_MAX_TOKEN_BYTES (16 * 1024)

/* Reads a token endpoint's answer: a 200 with a JSON object holding
 * access_token, an optional token_type (Bearer, any case) and an optional
 * expires_in (a number or a string of digits, seconds). Any other status
 * is an error, with the RFC 6749 section 5.2 error and error_description
 * when the body has them. 0 and *tok filled, or DR_EINVAL / DR_ENOMEM with
 * err saying why (printable, without the body's secrets). */
int dr_oauth2_parse_answer(int status, const char *body, size_t len, dr_oauth2_answer *tok,
                           char *err, size_t errlen);

/* ---- the token source ---------------------------------------------------------- */

typedef struct dr_oauth2 dr_oauth2;

/* Called on the loop when a token became available after
 * dr_oauth2_token said there was none. */
typedef void (*dr_oauth2_ready_fn)(void *ctx);

/* Validates conf (client_id and token_url set, one of client_secret and
 * client_secret_file, endpoint_params a map of strings, readable files)
 * and makes the token source; `outer` gives the timeouts. NULL with err. */
dr_oauth2 *dr_oauth2_new(uv_loop_t *loop, const dr_oauth2_conf *conf,
                         const struct dr_http_client_conf *outer, dr_oauth2_ready_fn ready,
                         void *ctx, dr_error *err);
/* The token to send now, or NULL: then a fetch is under way (or waits for
 * its backoff) and `ready` will be called. A token close to its expiry is
 * still given while its successor is fetched. Valid until the next call. */
const char *dr_oauth2_token(dr_oauth2 *o);
/* For a client that keeps the token itself and says when it wants a new
 * one (librdkafka's OAUTHBEARER): fetches a token now, unless a fetch is
 * under way or waits for its backoff, and calls `ready` when it has one
 * (dr_oauth2_token then gives it). */
void dr_oauth2_renew(dr_oauth2 *o);
/* Milliseconds until the token dr_oauth2_token gave stops being usable
 * (0 when it no longer is), or -1 when the endpoint gave no expires_in. */
int64_t dr_oauth2_token_life_ms(const dr_oauth2 *o);
/* The backend refused `token` (a 401): it is not given again. */
void dr_oauth2_reject(dr_oauth2 *o, const char *token);
/* Self-metrics and log lines under this instance:
 * drover_oauth2_token_requests_total{result="ok"|"error"}. */
void dr_oauth2_instrument(dr_oauth2 *o, dr_instance *inst);
/* Cancels a fetch in flight (ready is not called again) and frees o once
 * its handles are closed (run the loop). */
void dr_oauth2_close(dr_oauth2 *o);

#endif
