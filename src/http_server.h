/*
 * The agent's own HTTP/1.1 server on the libuv loop: small GET endpoints
 * (/metrics, /healthz, /readyz). Requests are bounded (8 KiB of head, no
 * body), idle connections time out, and a connection is closed after its
 * response unless the client asked for keep-alive.
 */
#ifndef DROVER_HTTP_SERVER_H
#define DROVER_HTTP_SERVER_H

#include <uv.h>

#include "buf.h"
#include "drover/plugin.h"

typedef struct dr_http_server dr_http_server;

/* Fills `body` and `*content_type` (static string) and returns the status
 * code. `path` excludes the query string. */
typedef int (*dr_http_handler)(void *ctx, const char *method, const char *path, dr_buf *body,
                               const char **content_type);

/* `listen` is "host:port" ("127.0.0.1:2020", "[::1]:0", "0.0.0.0:2020");
 * port 0 picks a free one. Returns NULL with err filled on failure. */
dr_http_server *dr_http_server_start(uv_loop_t *loop, const char *listen, dr_http_handler fn,
                                     void *ctx, dr_error *err);
/* The port actually bound. */
int dr_http_server_port(const dr_http_server *s);
/* Closes the listener and every connection; frees the server once the
 * handles are closed (run the loop). */
void dr_http_server_close(dr_http_server *s);

#endif
