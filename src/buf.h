/*
 * dr_buf: a growable byte buffer. Used for encoding output, HTTP responses and
 * the metrics exposition. The owner frees it with dr_buf_free.
 */
#ifndef DROVER_BUF_H
#define DROVER_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct dr_buf {
    char *p;
    size_t len;
    size_t cap;
} dr_buf;

/* All return 0, or DR_ENOMEM leaving the buffer as it was. */
int dr_buf_reserve(dr_buf *b, size_t extra);
int dr_buf_append(dr_buf *b, const void *data, size_t n);
int dr_buf_putc(dr_buf *b, char c);
int dr_buf_puts(dr_buf *b, const char *s);
int dr_buf_printf(dr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dr_buf_vprintf(dr_buf *b, const char *fmt, va_list ap);
void dr_buf_reset(dr_buf *b); /* len = 0, keeps the memory */
void dr_buf_free(dr_buf *b);

#endif
