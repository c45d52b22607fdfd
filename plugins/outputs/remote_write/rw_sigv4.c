/*
 * remote_write with AWS SigV4 (Amazon Managed Service for Prometheus): the
 * `sigv4` map of Prometheus' remote_write, and the signed headers of each
 * request.
 *
 * Credentials, the first source that has them, as the AWS SDKs look: the
 * configuration's access_key and secret_key; the environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); the
 * shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 * ~/.aws/credentials) with the profile `profile`, else AWS_PROFILE, else
 * "default", read again whenever the file changes (tools that rotate keys
 * rewrite it). The region: `region`, else AWS_REGION, else
 * AWS_DEFAULT_REGION. Each request is signed when it is sent (a retry is
 * signed again, with its own time), over the headers that go with it:
 * Content-Encoding, Content-Type, Host, User-Agent, X-Amz-Date,
 * X-Amz-Security-Token and X-Prometheus-Remote-Write-Version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "rw.h"
#include "sigv4.h"

/* Splits the URL into the Host header's value, the path and the query. */
static int split_url(rw_sigv4 *s, const char *url, dr_error *err)
{
    const char *p = strstr(url, "://");
    if (!p) {
        dr_error_set(err, "sigv4: cannot sign for url \"%s\"", url);
        return DR_EINVAL;
    }
    p += 3;
    size_t hl = strcspn(p, "/?#");
    const char *at = memchr(p, '@', hl);
    if (at) { /* user info is no part of Host */
        hl -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    s->host = strndup(p, hl);
    const char *rest = p + hl;
    size_t pl = strcspn(rest, "?#");
    s->path = pl ? strndup(rest, pl) : strdup("/");
    if (rest[pl] == '?') {
        const char *q = rest + pl + 1;
        s->query = strndup(q, strcspn(q, "#"));
    }
    return s->host && s->path ? 0 : DR_ENOMEM;
}

/* The file's modification time; false when it cannot be looked at. */
static bool file_mtime(const char *path, struct timespec *out)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return false;
    *out = sb.st_mtim;
    return true;
}

/* Credentials from the shared file; 0, DR_EAGAIN (no file) or DR_EINVAL. */
static int load_file(rw_sigv4 *s, dr_error *err)
{
    dr_aws_creds c;
    struct timespec mt = {0};
    file_mtime(s->file, &mt);
    int rc = dr_aws_creds_from_file(s->file, s->profile, &c, err);
    if (rc != 0)
        return rc;
    dr_aws_creds_free(&s->creds);
    s->creds = c;
    s->file_mtime = mt;
    return 0;
}

static int find_credentials(rw_sigv4 *s, char *access_key, char *secret_key, char *profile,
                            dr_error *err)
{
    if (access_key || secret_key) {
        if (!access_key || !secret_key) {
            free(access_key);
            free(secret_key);
            free(profile);
            dr_error_set(err, "sigv4: access_key and secret_key go together");
            return DR_EINVAL;
        }
        s->creds.access_key = access_key;
        s->creds.secret_key = secret_key;
        free(profile);
        return 0;
    }
    if (!profile && dr_aws_creds_from_env(&s->creds) == 0)
        return 0;
    s->profile = profile ? profile : dr_aws_env("AWS_PROFILE");
    if (!s->profile && !(s->profile = strdup("default")))
        return DR_ENOMEM;
    s->file = dr_aws_credentials_path();
    int rc = s->file ? load_file(s, err) : DR_EAGAIN;
    if (rc == DR_EAGAIN)
        dr_error_set(err,
                     "sigv4: no credentials: set sigv4.access_key and sigv4.secret_key, "
                     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared credentials "
                     "file (%s)",
                     s->file ? s->file : "AWS_SHARED_CREDENTIALS_FILE");
    return rc == 0 ? 0 : DR_EINVAL;
}

int rw_sigv4_init(rw_state *st, dr_error *err)
{
    const dr_cfg_node *map = st->conf->sigv4;
    if (!map)
        return 0;
    if (map->type != DR_CFG_MAP && map->type != DR_CFG_NULL) {
        dr_error_set(err, "sigv4: expected a map (region, access_key, secret_key, profile, "
                          "service)");
        return DR_EINVAL;
    }
    if (st->conf->http.bearer_token || st->conf->http.bearer_token_file ||
        st->conf->http.username || dr_oauth2_configured(&st->conf->http.oauth2)) {
        dr_error_set(err, "sigv4 cannot be used with basic, bearer or oauth2 authentication");
        return DR_EINVAL;
    }
    rw_sigv4 *s = calloc(1, sizeof *s);
    if (!s)
        return DR_ENOMEM;
    st->sigv4 = s;
    char *access_key = NULL, *secret_key = NULL, *profile = NULL;
    int rc = 0;
    for (size_t i = 0; map->type == DR_CFG_MAP && i < map->n && rc == 0; i++) {
        const char *k = map->pairs[i].key->str;
        const dr_cfg_node *v = map->pairs[i].val;
        char **dst = strcmp(k, "region") == 0       ? &s->region
                     : strcmp(k, "access_key") == 0 ? &access_key
                     : strcmp(k, "secret_key") == 0 ? &secret_key
                     : strcmp(k, "profile") == 0    ? &profile
                     : strcmp(k, "service") == 0    ? &s->service
                                                    : NULL;
        if (strcmp(k, "role_arn") == 0 || strcmp(k, "external_id") == 0 ||
            strcmp(k, "use_fips_sts_endpoint") == 0) {
            dr_error_set(err, "sigv4.%s: not supported yet", k);
            rc = DR_EINVAL;
        } else if (!dst) {
            dr_error_set(err,
                         "sigv4: unknown key \"%s\" (region, access_key, secret_key, profile, "
                         "service)",
                         k);
            rc = DR_EINVAL;
        } else if (v->type != DR_CFG_SCALAR || !v->str[0]) {
            dr_error_set(err, "sigv4.%s: expected a string", k);
            rc = DR_EINVAL;
        } else {
            free(*dst);
            if (!(*dst = strdup(v->str)))
                rc = DR_ENOMEM;
        }
    }
    if (rc != 0) {
        free(access_key);
        free(secret_key);
        free(profile);
        return rc;
    }
    if ((rc = find_credentials(s, access_key, secret_key, profile, err)) != 0)
        return rc;
    if (!s->region && !(s->region = dr_aws_env("AWS_REGION")))
        s->region = dr_aws_env("AWS_DEFAULT_REGION");
    if (!s->region) {
        dr_error_set(err, "sigv4: no region: set sigv4.region or AWS_REGION");
        return DR_EINVAL;
    }
    if (!s->service && !(s->service = strdup("aps")))
        return DR_ENOMEM;
    return split_url(s, st->conf->url, err);
}

void rw_sigv4_free(rw_sigv4 *s)
{
    if (!s)
        return;
    free(s->region);
    free(s->service);
    dr_aws_creds_free(&s->creds);
    free(s->file);
    free(s->profile);
    free(s->host);
    free(s->path);
    free(s->query);
    dr_buf_free(&s->token_header);
    dr_buf_free(&s->authz_header);
    free(s);
}

/* A shared credentials file that changed is read again (at most once a
 * second); when the new one does not do, the old keys stay, with a
 * warning. */
static void refresh_file(rw_state *st, rw_sigv4 *s)
{
    int64_t now = dr_mono_ns() / 1000000;
    if (!s->file || now - s->file_checked_ms < 1000)
        return;
    s->file_checked_ms = now;
    struct timespec mt;
    if (!file_mtime(s->file, &mt) ||
        (mt.tv_sec == s->file_mtime.tv_sec && mt.tv_nsec == s->file_mtime.tv_nsec))
        return;
    dr_error err = {{0}};
    if (load_file(s, &err) != 0) {
        s->file_mtime = mt; /* not again until it changes again */
        dr_log(st->inst, DR_LOG_WARN, "sigv4: the credentials file changed and does not do",
               "error=\"%s\"", err.msg[0] ? err.msg : "the file is gone");
    } else {
        dr_log(st->inst, DR_LOG_INFO, "sigv4: credentials read again", "file=%s", s->file);
    }
}

/* "Name: value" pairs of headers[] into h[] for the signer. */
static size_t split_headers(const char *const *headers, char store[][512], dr_sigv4_header *h,
                            size_t max)
{
    size_t n = 0;
    for (; headers[n] && n < max; n++) {
        snprintf(store[n], 512, "%s", headers[n]);
        char *colon = strchr(store[n], ':');
        if (!colon)
            break;
        *colon = '\0';
        h[n] = (dr_sigv4_header){store[n], colon + 1};
    }
    return n;
}

int rw_sigv4_sign(rw_state *st, const char **headers, size_t *nh, size_t cap, const void *body,
                  size_t body_len)
{
    rw_sigv4 *s = st->sigv4;
    refresh_file(st, s);
    /* the headers of this request, with the ones signing adds */
    char date[17];
    dr_sigv4_amz_date((long long)time(NULL), date);
    snprintf(s->host_header, sizeof s->host_header, "Host: %s", s->host);
    snprintf(s->date_header, sizeof s->date_header, "X-Amz-Date: %s", date);
    if (*nh + 4 > cap)
        return DR_EINVAL;
    headers[(*nh)++] = s->host_header;
    headers[(*nh)++] = s->date_header;
    if (s->creds.session_token) {
        dr_buf_reset(&s->token_header);
        dr_buf_printf(&s->token_header, "X-Amz-Security-Token: %s", s->creds.session_token);
        dr_buf_putc(&s->token_header, '\0');
        headers[(*nh)++] = s->token_header.p;
    }
    headers[*nh] = NULL;

    char store[12][512];
    dr_sigv4_header h[12];
    size_t n = split_headers(headers, store, h, 12);
    /* the token can be longer than a line of store: signed from its own */
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, "X-Amz-Security-Token") == 0)
            h[i].value = s->creds.session_token;
    dr_sigv4_request req = {"POST", s->path, s->query, h, n, body, body_len, false};
    dr_sigv4_scope scope = {s->creds.access_key, s->creds.secret_key, s->region, s->service, date};
    dr_buf_reset(&s->authz_header);
    dr_buf_puts(&s->authz_header, "Authorization: ");
    int rc = dr_sigv4_sign(&req, &scope, NULL, NULL, &s->authz_header);
    if (rc != 0)
        return rc;
    dr_buf_putc(&s->authz_header, '\0');
    headers[(*nh)++] = s->authz_header.p;
    headers[*nh] = NULL;
    return 0;
}
