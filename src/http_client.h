/*
 * HTTP client for outputs: libcurl's multi interface driven by the libuv
 * loop (a uv_poll_t per socket curl opens, one uv_timer_t for curl's
 * timeouts), so requests never block the loop. One client per output
 * instance; connections are kept and reused; HTTP/1.1, and HTTP/2 where
 * the server offers it over TLS (ALPN). TLS verification is on unless
 * insecure_skip_verify says otherwise.
 *
 * With an oauth2 map, requests carry the token of src/oauth2.c: they are
 * held while there is none, and sent once more after a 401 with a new one.
 *
 * Retries are not done here: the caller classifies each response with
 * dr_http_classify and hands the verdict to the core (dr_output_done), which
 * owns backoff.
 */
#ifndef DROVER_HTTP_CLIENT_H
#define DROVER_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <sys/types.h>
#include <time.h>

#include "drover/plugin.h"
#include "oauth2.h"

typedef struct dr_http_client_conf {
    char *ca_file;   /* PEM bundle to verify the server; NULL: system store */
    char *cert_file; /* client certificate (PEM), with key_file */
    char *key_file;
    char *server_name;         /* name to verify instead of the URL's host (SNI too) */
    bool insecure_skip_verify; /* no verification at all: an explicit opt-out */
    char *proxy_url;           /* NULL: none (the *_proxy environment is ignored) */
    char *username;            /* basic auth, with password */
    char *password;
    char *bearer_token;          /* Authorization: Bearer ... */
    char *bearer_token_file;     /* read at first use and again whenever it changes */
    dr_oauth2_conf oauth2;       /* OAuth2 client credentials when configured */
    dr_strlist headers;          /* "Name: value" sent with every request */
    int64_t timeout_ms;          /* whole request; 0: 30 s */
    int64_t connect_timeout_ms;  /* 0: 10 s */
    uint64_t max_response_bytes; /* response body kept at most; 0: 64 KiB */
} dr_http_client_conf;

/* The option table of dr_http_client_conf, for outputs to include with
 * {.name = "", .type = DR_OPT_GROUP, .offset = offsetof(conf, http),
 *  .group = dr_http_client_options}. */
extern const dr_option dr_http_client_options[];

typedef struct dr_http_request {
    const char *method; /* "POST", "GET", ... */
    const char *url;
    const char *const *headers; /* more "Name: value", NULL-terminated; may be NULL */
    const void *body;           /* must stay valid until done is called */
    size_t body_len;
    /* Streaming (a Kubernetes watch): the body of a 2xx answer goes to
     * on_data (with done's ctx) as it arrives and is not kept; other
     * answers are kept as usual. on_data returns false to abort the
     * transfer (done then reports error "aborted"); it must not close
     * the client nor start requests (curl refuses calls from inside its
     * callbacks): hand the data to a timer instead. */
    bool (*on_data)(void *ctx, const char *data, size_t len);
    int64_t timeout_ms;          /* this request's; 0: the client's; -1: none */
    uint64_t max_response_bytes; /* this request's; 0: the client's */
} dr_http_request;

typedef struct dr_http_response {
    int status;             /* HTTP status; 0 when there was no answer */
    const char *error;      /* why there was no answer (curl's message), else NULL */
    int64_t retry_after_ms; /* Retry-After (seconds or an HTTP date), -1 if absent */
    const char *body;       /* the first max_response_bytes of the body, NUL-terminated */
    size_t body_len;
    bool body_truncated;
    double total_s; /* time the request took */
    /* The header lines of the final answer ("Name: value\r\n" each), up
     * to DR_HTTP_MAX_HEADER_BYTES; read them with dr_http_response_header. */
    const char *headers;
    size_t headers_len;
} dr_http_response;

#define DR_HTTP_MAX_HEADER_BYTES 16384

/* The value of the first response header called `name` (any case), trimmed,
 * not NUL-terminated. False when the answer has no such header. */
bool dr_http_response_header(const dr_http_response *r, const char *name, const char **value,
                             size_t *len);

/* Called once per request, on the loop thread. The response lives only
 * during the call. */
typedef void (*dr_http_done_fn)(void *ctx, const dr_http_response *r);

typedef struct dr_http_client dr_http_client;

/* Validates conf (readable files, a parseable proxy URL) and makes a
 * client. conf is copied. NULL with err filled on failure. */
dr_http_client *dr_http_client_new(uv_loop_t *loop, const dr_http_client_conf *conf, dr_error *err);
/* Starts a request. Returns 0, or a negative DR_E* without calling done. */
int dr_http_client_send(dr_http_client *c, const dr_http_request *req, dr_http_done_fn done,
                        void *ctx);
/* Gives the client's self-metrics and log lines (OAuth2's) an instance;
 * outputs call it from their start. */
void dr_http_client_instrument(dr_http_client *c, dr_instance *inst);
/* Requests in flight (those waiting for an OAuth2 token included). */
size_t dr_http_client_inflight(const dr_http_client *c);
/* Ends every request in flight (done is called with status 0 and error
 * "cancelled") and frees the client once its handles are closed (run the
 * loop). */
void dr_http_client_close(dr_http_client *c);

/* A secret kept in a file (a bearer token, an OAuth2 client secret): read
 * at first use and again whenever stat says the file changed, as
 * Kubernetes rotates projected files by swapping them. */
typedef struct dr_file_secret {
    char *value; /* trimmed, one line, at most 16 KiB */
    bool loaded;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} dr_file_secret;

/* Sets *value to the file's current secret (valid until the next call).
 * 0, or DR_EIO with err saying why, naming the file as `what`. */
int dr_file_secret_read(dr_file_secret *s, const char *what, const char *path, const char **value,
                        char *err, size_t errlen);
void dr_file_secret_free(dr_file_secret *s);

typedef enum {
    DR_HTTP_OK,    /* 2xx */
    DR_HTTP_RETRY, /* no answer, 5xx, 429, 408 */
    DR_HTTP_FAIL,  /* any other answer: retrying cannot help */
} dr_http_verdict;

dr_http_verdict dr_http_classify(const dr_http_response *r);

/* ---- helpers every HTTP output shares ---------------------------------------- */

/* Checks an output's url: parseable, http:// or https://, with a host. The
 * URL is not quoted in the message (it may hold credentials). */
int dr_http_check_url(const char *url, dr_error *err);

/* The request metrics of an output: drover_output_requests_total{code}
 * (the HTTP status; "error" for no answer; at most 16 distinct codes, then
 * "other") and drover_output_request_bytes_total (bodies as sent, retries
 * included). Init from the output's start. */
#define DR_HTTP_CODE_SLOTS 16
typedef struct dr_http_stats {
    dr_instance *inst;
    dr_counter *request_bytes, *errors, *other;
    struct {
        int code;
        dr_counter *counter;
    } codes[DR_HTTP_CODE_SLOTS];
    size_t ncodes;
} dr_http_stats;

void dr_http_stats_init(dr_http_stats *s, dr_instance *inst);
void dr_http_stats_sent(dr_http_stats *s, size_t body_bytes);
void dr_http_stats_answer(dr_http_stats *s, int status);

/* The start of the response body (or of the error, without an answer)
 * made safe for a quoted logfmt value: printable ASCII, no quotes. */
void dr_http_response_snippet(const dr_http_response *r, char *out, size_t outsz);

/* Hands a failed delivery back to the core for a retry: after the
 * response's Retry-After when it has one, else after the core's backoff. */
void dr_http_retry(dr_flush *f, const dr_http_response *r);

#endif
