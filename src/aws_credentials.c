/*
 * AWS credentials from the environment and the shared credentials file
 * (aws_credentials.h).
 */
#include "aws_credentials.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A credentials file larger than this is not one. */
#define AWS_CREDENTIALS_MAX_BYTES (1u << 20)

void dr_aws_creds_free(dr_aws_creds *c)
{
    if (c->secret_key)
        memset(c->secret_key, 0, strlen(c->secret_key));
    free(c->access_key);
    free(c->secret_key);
    free(c->session_token);
    memset(c, 0, sizeof *c);
}

char *dr_aws_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

int dr_aws_creds_from_env(dr_aws_creds *out)
{
    memset(out, 0, sizeof *out);
    out->access_key = dr_aws_env("AWS_ACCESS_KEY_ID");
    out->secret_key = dr_aws_env("AWS_SECRET_ACCESS_KEY");
    if (!out->access_key || !out->secret_key) {
        dr_aws_creds_free(out);
        return DR_EAGAIN;
    }
    out->session_token = dr_aws_env("AWS_SESSION_TOKEN");
    return 0;
}

char *dr_aws_credentials_path(void)
{
    char *p = dr_aws_env("AWS_SHARED_CREDENTIALS_FILE");
    if (p)
        return p;
    const char *home = getenv("HOME");
    if (!home || !*home)
        return NULL;
    size_t n = strlen(home) + sizeof "/.aws/credentials";
    p = malloc(n);
    if (p)
        snprintf(p, n, "%s/.aws/credentials", home);
    return p;
}

/* s without the blanks around it, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

static char *read_small_file(const char *path, int *rc)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = errno == ENOENT ? DR_EAGAIN : DR_EIO;
        return NULL;
    }
    char *buf = malloc(AWS_CREDENTIALS_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, AWS_CREDENTIALS_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf || n > AWS_CREDENTIALS_MAX_BYTES) {
        free(buf);
        *rc = buf ? DR_EINVAL : DR_ENOMEM;
        return NULL;
    }
    buf[n] = '\0';
    *rc = 0;
    return buf;
}

int dr_aws_creds_from_file(const char *path, const char *profile, dr_aws_creds *out, dr_error *err)
{
    memset(out, 0, sizeof *out);
    int rc;
    char *text = read_small_file(path, &rc);
    if (!text) {
        if (rc != DR_EAGAIN)
            dr_error_set(err, "%s: cannot be read as a credentials file", path);
        return rc;
    }
    size_t text_len = strlen(text);
    bool in_profile = false, found = false;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end)
                *end = '\0';
            in_profile = strcmp(trim(s + 1), profile) == 0;
            found |= in_profile;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_profile || !eq)
            continue;
        *eq = '\0';
        const char *k = trim(s);
        char *v = trim(eq + 1);
        char **dst = strcmp(k, "aws_access_key_id") == 0       ? &out->access_key
                     : strcmp(k, "aws_secret_access_key") == 0 ? &out->secret_key
                     : strcmp(k, "aws_session_token") == 0     ? &out->session_token
                                                               : NULL;
        if (dst && *v) {
            free(*dst);
            *dst = strdup(v);
        }
    }
    memset(text, 0, text_len); /* keys do not linger in freed memory */
    free(text);
    if (!found) {
        dr_error_set(err, "%s: no profile [%s]", path, profile);
        return DR_EINVAL;
    }
    if (!out->access_key || !out->secret_key) {
        dr_aws_creds_free(out);
        dr_error_set(err, "%s: profile [%s] has no aws_access_key_id and aws_secret_access_key",
                     path, profile);
        return DR_EINVAL;
    }
    return 0;
}
