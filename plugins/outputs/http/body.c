#include "body.h"

#include <string.h>

#include "../msgpack.h"
#include "../ndjson.h"

const char *dr_http_body_content_type(dr_http_format format)
{
    switch (format) {
    case DR_HTTP_NDJSON:
        return "application/x-ndjson";
    case DR_HTTP_JSON_ARRAY:
        return "application/json";
    case DR_HTTP_MSGPACK:
        return "application/msgpack";
    }
    return "application/octet-stream";
}

int dr_http_body_begin(dr_http_body *b, dr_http_format format, dr_buf *out)
{
    *b = (dr_http_body){.format = format, .out = out, .start = out->len};
    return format == DR_HTTP_JSON_ARRAY ? dr_buf_putc(out, '[') : 0;
}

/* The NDJSON encoder escapes every control character inside strings, so
 * the only raw newlines are the ends of records: each becomes the comma
 * that separates array elements (the last one is replaced by the "]"). */
static void newlines_to_commas(char *p, size_t n)
{
    char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL)
        *p++ = ',';
}

int dr_http_body_add(dr_http_body *b, const dr_chunk *c)
{
    size_t at = b->out->len;
    long bad = b->format == DR_HTTP_MSGPACK ? dr_msgpack_encode_chunk(c, b->out)
                                            : dr_ndjson_encode_chunk(c, DR_LINE_JSON, b->out);
    if (bad < 0)
        return (int)bad;
    b->bad_records += (uint64_t)bad;
    if (b->format == DR_HTTP_JSON_ARRAY)
        newlines_to_commas(b->out->p + at, b->out->len - at);
    return 0;
}

void dr_http_body_end(dr_http_body *b)
{
    dr_buf *out = b->out;
    if (b->format != DR_HTTP_JSON_ARRAY)
        return;
    if (out->len == b->start + 1)
        out->len = b->start; /* "[" alone: no records */
    else
        out->p[out->len - 1] = ']'; /* the comma after the last record */
}
