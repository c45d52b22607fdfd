/*
 * logfmt pairs (see logfmt.h). Bare values point into the input; only
 * quoted values with escapes are copied, into the caller's scratch space.
 */
#include <stdbool.h>
#include <string.h>

#include "drover/plugin.h"
#include "logfmt.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static bool is_key_byte(char c)
{
    return !is_space(c) && c != '=' && c != '"';
}

void dr_logfmt_begin(dr_logfmt_iter *it, const char *s, size_t n, char *scratch)
{
    it->p = s;
    it->end = s + n;
    it->out = scratch;
}

static char unescape(char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    }
    return 0;
}

/* it->p at the opening quote. Decodes the value into it->out and moves
 * past the closing quote, which must end the pair. */
static int read_quoted(dr_logfmt_iter *it, dr_logfmt_pair *pair)
{
    const char *p = it->p + 1, *end = it->end;
    char *o = it->out;
    for (;;) {
        if (p == end)
            return DR_EINVAL; /* unterminated */
        if (*p == '"')
            break;
        char e;
        if (*p == '\\' && p + 1 < end && (e = unescape(p[1]))) {
            *o++ = e;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    p++; /* the closing quote */
    if (p < end && !is_space(*p))
        return DR_EINVAL;
    pair->val = it->out;
    pair->val_len = (size_t)(o - it->out);
    it->out = o;
    it->p = p;
    return 0;
}

int dr_logfmt_next(dr_logfmt_iter *it, dr_logfmt_pair *pair)
{
    const char *p = it->p, *end = it->end;
    while (p < end && is_space(*p))
        p++;
    if (p == end) {
        it->p = p;
        return 0;
    }
    pair->key = p;
    while (p < end && is_key_byte(*p))
        p++;
    pair->key_len = (size_t)(p - pair->key);
    if (pair->key_len == 0 || (p < end && *p == '"'))
        return DR_EINVAL; /* "=v" without a key, or a quote in a key */
    if (p == end || is_space(*p)) {
        pair->val = "true";
        pair->val_len = 4;
        it->p = p;
        return 1;
    }
    p++; /* the '=' */
    if (p < end && *p == '"') {
        it->p = p;
        return read_quoted(it, pair) < 0 ? DR_EINVAL : 1;
    }
    pair->val = p;
    while (p < end && !is_space(*p))
        p++;
    pair->val_len = (size_t)(p - pair->val);
    it->p = p;
    return 1;
}
