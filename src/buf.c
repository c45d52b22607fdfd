#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"

int dr_buf_reserve(dr_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t want = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return DR_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int dr_buf_append(dr_buf *b, const void *data, size_t n)
{
    if (dr_buf_reserve(b, n) < 0)
        return DR_ENOMEM;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

int dr_buf_putc(dr_buf *b, char c)
{
    return dr_buf_append(b, &c, 1);
}

int dr_buf_puts(dr_buf *b, const char *s)
{
    return dr_buf_append(b, s, strlen(s));
}

int dr_buf_vprintf(dr_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return DR_EINVAL;
    if ((size_t)n < sizeof small)
        return dr_buf_append(b, small, (size_t)n);
    if (dr_buf_reserve(b, (size_t)n + 1) < 0)
        return DR_ENOMEM;
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int dr_buf_printf(dr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = dr_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void dr_buf_reset(dr_buf *b)
{
    b->len = 0;
}

void dr_buf_free(dr_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
