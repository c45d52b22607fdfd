/*
 * AWS Signature Version 4 (sigv4.h). The steps follow AWS's description
 * of the process: canonical request, string to sign, signing key derived
 * through four HMACs, signature. OpenSSL gives SHA-256 and HMAC.
 */
#include "sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drover/plugin.h"

static void put_hex(dr_buf *b, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        dr_buf_putc(b, hex[p[i] >> 4]);
        dr_buf_putc(b, hex[p[i] & 15]);
    }
}

static void put_sha256_hex(dr_buf *b, const void *p, size_t n)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(p ? p : (const void *)"", n, md);
    put_hex(b, md, sizeof md);
}

static void hmac(const unsigned char *key, size_t key_len, const char *msg, size_t msg_len,
                 unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, msg_len, out, &len);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/* Percent-encodes every byte outside the unreserved set (and '/' when
 * keep_slash), upper-case hex as SigV4 wants it. */
static void put_encoded(dr_buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            dr_buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            dr_buf_append(b, e, 3);
        }
    }
}

/* Decodes %XX escapes of s[0..n) into out. DR_EINVAL on a broken escape. */
static int percent_decode(dr_buf *out, const char *s, size_t n)
{
    dr_buf_reset(out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            dr_buf_putc(out, s[i]);
            continue;
        }
        int hi = i + 1 < n ? dr_hex_value(s[i + 1]) : -1;
        int lo = i + 2 < n ? dr_hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return DR_EINVAL;
        dr_buf_putc(out, (char)(hi << 4 | lo));
        i += 2;
    }
    return 0;
}

/* ---- the canonical URI ---------------------------------------------------------------- */

/* The path with empty and "." segments dropped and ".." taking the one
 * before away; a trailing slash stays. */
static void put_normalized_path(dr_buf *b, const char *path)
{
    size_t n = strlen(path);
    /* the kept segments, as offsets into path */
    size_t *start = malloc((n / 2 + 2) * sizeof *start);
    size_t *len = malloc((n / 2 + 2) * sizeof *len);
    size_t k = 0;
    if (!start || !len) {
        free(start);
        free(len);
        put_encoded(b, path, n, true); /* out of memory: as it is */
        return;
    }
    for (size_t i = 0; i < n;) {
        while (i < n && path[i] == '/')
            i++;
        size_t j = i;
        while (j < n && path[j] != '/')
            j++;
        size_t sl = j - i;
        if (sl == 0 || (sl == 1 && path[i] == '.')) {
            /* nothing to keep */
        } else if (sl == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (k > 0)
                k--;
        } else {
            start[k] = i;
            len[k] = sl;
            k++;
        }
        i = j;
    }
    dr_buf_putc(b, '/');
    for (size_t s = 0; s < k; s++) {
        if (s)
            dr_buf_putc(b, '/');
        put_encoded(b, path + start[s], len[s], false);
    }
    if (k > 0 && n > 0 && path[n - 1] == '/')
        dr_buf_putc(b, '/');
    free(start);
    free(len);
}

/* ---- the canonical query ------------------------------------------------------------- */

typedef struct query_param {
    char *name, *value; /* encoded */
} query_param;

static int param_cmp(const void *a, const void *b)
{
    const query_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* name or value: decoded, then encoded the SigV4 way, as a C string */
static char *canonical_component(const char *s, size_t n, dr_buf *tmp, int *rc)
{
    dr_buf enc = {0};
    if ((*rc = percent_decode(tmp, s, n)) != 0)
        return NULL;
    put_encoded(&enc, tmp->p ? tmp->p : "", tmp->len, false);
    if (dr_buf_putc(&enc, '\0') < 0) {
        dr_buf_free(&enc);
        *rc = DR_ENOMEM;
        return NULL;
    }
    return enc.p;
}

static int put_canonical_query(dr_buf *b, const char *query)
{
    if (!query || !*query)
        return 0;
    size_t cap = 1;
    for (const char *p = query; *p; p++)
        cap += *p == '&';
    query_param *ps = calloc(cap, sizeof *ps);
    if (!ps)
        return DR_ENOMEM;
    size_t np = 0;
    int rc = 0;
    dr_buf tmp = {0};
    for (const char *p = query; *p && rc == 0;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0) {
            const char *eq = memchr(p, '=', n);
            size_t nl = eq ? (size_t)(eq - p) : n;
            ps[np].name = canonical_component(p, nl, &tmp, &rc);
            if (rc == 0)
                ps[np].value =
                    canonical_component(eq ? eq + 1 : "", eq ? n - nl - 1 : 0, &tmp, &rc);
            np++;
        }
        p += n + (end ? 1 : 0);
    }
    if (rc == 0) {
        qsort(ps, np, sizeof *ps, param_cmp);
        for (size_t i = 0; i < np; i++)
            dr_buf_printf(b, "%s%s=%s", i ? "&" : "", ps[i].name, ps[i].value);
    }
    for (size_t i = 0; i < np; i++) {
        free(ps[i].name);
        free(ps[i].value);
    }
    free(ps);
    dr_buf_free(&tmp);
    return rc;
}

/* ---- canonical headers ---------------------------------------------------------------- */

typedef struct header_ref {
    char *name; /* lowercased */
    const char *value;
    size_t order;
} header_ref;

static int header_cmp(const void *a, const void *b)
{
    const header_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* A value trimmed, its runs of spaces (and tabs) made one space. */
static void put_trimmed(dr_buf *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            dr_buf_putc(b, ' ');
        space = false;
        dr_buf_putc(b, *v);
    }
}

/* "name:value\n" lines into b, the ';'-joined names into signed. */
static int put_canonical_headers(dr_buf *b, dr_buf *signed_names, const dr_sigv4_header *h,
                                 size_t n)
{
    header_ref *r = calloc(n ? n : 1, sizeof *r);
    if (!r)
        return DR_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        r[i].name = strdup(h[i].name);
        if (!r[i].name) {
            rc = DR_ENOMEM;
            break;
        }
        for (char *c = r[i].name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        r[i].value = h[i].value ? h[i].value : "";
        r[i].order = i;
    }
    if (rc == 0) {
        qsort(r, n, sizeof *r, header_cmp);
        for (size_t i = 0; i < n; i++) {
            bool first = i == 0 || strcmp(r[i].name, r[i - 1].name) != 0;
            if (first) {
                if (i)
                    dr_buf_putc(b, '\n');
                dr_buf_printf(b, "%s:", r[i].name);
                dr_buf_printf(signed_names, "%s%s", signed_names->len ? ";" : "", r[i].name);
            } else {
                dr_buf_putc(b, ',');
            }
            put_trimmed(b, r[i].value);
        }
        if (n)
            dr_buf_putc(b, '\n');
    }
    for (size_t i = 0; i < n; i++)
        free(r[i].name);
    free(r);
    return rc;
}

/* ---- signing -------------------------------------------------------------------------- */

static bool valid_amz_date(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return false;
    return true;
}

int dr_sigv4_sign(const dr_sigv4_request *req, const dr_sigv4_scope *scope, dr_buf *creq_out,
                  dr_buf *sts_out, dr_buf *authz)
{
    if (!valid_amz_date(scope->amz_date) || !req->method || !req->path)
        return DR_EINVAL;
    dr_buf creq = {0}, signed_names = {0}, sts = {0}, tmp = {0};
    dr_buf_printf(&creq, "%s\n", req->method);
    if (req->keep_path)
        put_encoded(&creq, req->path, strlen(req->path), true);
    else
        put_normalized_path(&creq, req->path);
    dr_buf_putc(&creq, '\n');
    int rc = put_canonical_query(&creq, req->query);
    dr_buf_putc(&creq, '\n');
    if (rc == 0)
        rc = put_canonical_headers(&creq, &signed_names, req->headers, req->nheaders);
    if (rc == 0) {
        dr_buf_putc(&creq, '\n');
        dr_buf_append(&creq, signed_names.p ? signed_names.p : "", signed_names.len);
        dr_buf_putc(&creq, '\n');
        put_sha256_hex(&creq, req->payload, req->payload_len);
    }

    char date[9];
    memcpy(date, scope->amz_date, 8);
    date[8] = '\0';
    if (rc == 0) {
        dr_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n", scope->amz_date, date,
                      scope->region, scope->service);
        put_sha256_hex(&sts, creq.p, creq.len);
    }

    if (rc == 0) {
        unsigned char k[32];
        dr_buf_printf(&tmp, "AWS4%s", scope->secret_key);
        hmac((const unsigned char *)tmp.p, tmp.len, date, 8, k);
        hmac(k, 32, scope->region, strlen(scope->region), k);
        hmac(k, 32, scope->service, strlen(scope->service), k);
        hmac(k, 32, "aws4_request", 12, k);
        unsigned char sig[32];
        hmac(k, 32, sts.p, sts.len, sig);
        dr_buf_printf(authz, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, ",
                      scope->access_key, date, scope->region, scope->service);
        dr_buf_printf(authz, "SignedHeaders=%.*s, Signature=", (int)signed_names.len,
                      signed_names.p ? signed_names.p : "");
        put_hex(authz, sig, sizeof sig);
        memset(k, 0, sizeof k);
        if (creq_out)
            dr_buf_append(creq_out, creq.p, creq.len);
        if (sts_out)
            dr_buf_append(sts_out, sts.p, sts.len);
    }
    if (tmp.p)
        memset(tmp.p, 0, tmp.len); /* the secret key */
    dr_buf_free(&creq);
    dr_buf_free(&signed_names);
    dr_buf_free(&sts);
    dr_buf_free(&tmp);
    return rc;
}

void dr_sigv4_amz_date(long long unix_s, char out[17])
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}
