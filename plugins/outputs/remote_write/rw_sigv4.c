/*
 * remote_write with AWS SigV4 (Amazon Managed Service for Prometheus): the
 * `sigv4` map of Prometheus' remote_write, and the signed headers of each
 * request.
 *
 * Credentials, the first source that has them, in the AWS SDKs' default
 * chain: the configuration's access_key and secret_key; the environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); web
 * identity (IRSA); the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
 * else ~/.aws/credentials) with the profile `profile`, else AWS_PROFILE,
 * else "default"; container credentials (EKS Pod Identity); IMDSv2. The
 * sources that need the network, and a role_arn to assume, are left to a
 * dr_aws_provider (src/aws_provider.c), which fetches in the background:
 * a request finds no credentials while the first fetch is under way and
 * waits in its shard (DR_EAGAIN) until the provider's callback kicks the
 * shards. Keys from the shared file are read again whenever it changes
 * (tools that rotate keys rewrite it), unless they only sign an AssumeRole.
 * The region: `region`, else AWS_REGION, else
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

/* The source a provider fetches from, the chain's order after the
 * environment and the shared file: DR_EAGAIN when there is none. */
static int fetched_source(bool after_file, dr_aws_source *out)
{
    if (!after_file && dr_aws_web_identity_configured()) {
        *out = DR_AWS_SOURCE_WEB_IDENTITY;
        return 0;
    }
    if (after_file && dr_aws_container_configured()) {
        *out = DR_AWS_SOURCE_CONTAINER;
        return 0;
    }
    if (after_file && dr_aws_imds_enabled()) {
        *out = DR_AWS_SOURCE_IMDS;
        return 0;
    }
    return DR_EAGAIN;
}

/* The AWS SDKs' default chain: the configuration's keys, the environment,
 * web identity, the shared file's profile, container credentials, IMDS.
 * The keys found at once go to s->creds (*source DR_AWS_SOURCE_STATIC);
 * the others are fetched by a provider. An explicit profile skips the
 * environment and web identity, and must be in the file. */
static int find_credentials(rw_sigv4 *s, char *access_key, char *secret_key, char *profile,
                            dr_aws_source *source, dr_error *err)
{
    *source = DR_AWS_SOURCE_STATIC;
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
    bool explicit_profile = profile != NULL;
    if (!profile && dr_aws_creds_from_env(&s->creds) == 0)
        return 0;
    if (!profile && fetched_source(false, source) == 0)
        return 0;
    s->profile = profile ? profile : dr_aws_env("AWS_PROFILE");
    explicit_profile |= s->profile != NULL;
    if (!s->profile && !(s->profile = strdup("default")))
        return DR_ENOMEM;
    s->file = dr_aws_credentials_path();
    int rc = s->file ? load_file(s, err) : DR_EAGAIN;
    if (rc == 0 || (rc == DR_EINVAL && explicit_profile))
        return rc;
    if (!explicit_profile && fetched_source(true, source) == 0) {
        free(s->file); /* nothing to watch */
        s->file = NULL;
        return 0;
    }
    dr_error_set(err,
                 "sigv4: no credentials: set sigv4.access_key and sigv4.secret_key, "
                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity (AWS_ROLE_ARN and "
                 "AWS_WEB_IDENTITY_TOKEN_FILE), a shared credentials file (%s), container "
                 "credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI) or let IMDS be used "
                 "(AWS_EC2_METADATA_DISABLED)",
                 s->file ? s->file : "AWS_SHARED_CREDENTIALS_FILE");
    return DR_EINVAL;
}

/* The provider for fetched credentials or a role to assume. */
static int make_provider(rw_state *st, dr_aws_source source, const char *role_arn,
                         const char *external_id, const char *session_name,
                         const char *sts_endpoint, const char *imds_endpoint, dr_error *err)
{
    rw_sigv4 *s = st->sigv4;
    if (!role_arn && (external_id || session_name)) {
        dr_error_set(err, "sigv4: external_id and role_session_name go with role_arn");
        return DR_EINVAL;
    }
    if (source == DR_AWS_SOURCE_STATIC && !role_arn)
        return 0;
    dr_aws_provider_conf pc = {.source = source,
                               .base = &s->creds,
                               .region = s->region,
                               .role_arn = role_arn,
                               .external_id = external_id,
                               .session_name = session_name,
                               .sts_endpoint = sts_endpoint,
                               .imds_endpoint = imds_endpoint};
    dr_error perr = {{0}};
    s->provider = dr_aws_provider_new(st->inst, &pc, &perr);
    if (!s->provider) {
        dr_error_set(err, "sigv4: %s", perr.msg);
        return DR_EINVAL;
    }
    /* the provider took the keys: the file is not watched for them */
    free(s->file);
    s->file = NULL;
    return 0;
}

int rw_sigv4_init(rw_state *st, dr_error *err)
{
    const dr_cfg_node *map = st->conf->sigv4;
    if (!map)
        return 0;
    if (map->type != DR_CFG_MAP && map->type != DR_CFG_NULL) {
        dr_error_set(err, "sigv4: expected a map (region, access_key, secret_key, profile, "
                          "service, role_arn, ...)");
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
    char *role_arn = NULL, *external_id = NULL, *session_name = NULL, *sts_endpoint = NULL,
         *imds_endpoint = NULL;
    int rc = 0;
    for (size_t i = 0; map->type == DR_CFG_MAP && i < map->n && rc == 0; i++) {
        const char *k = map->pairs[i].key->str;
        const dr_cfg_node *v = map->pairs[i].val;
        char **dst = strcmp(k, "region") == 0              ? &s->region
                     : strcmp(k, "access_key") == 0        ? &access_key
                     : strcmp(k, "secret_key") == 0        ? &secret_key
                     : strcmp(k, "profile") == 0           ? &profile
                     : strcmp(k, "service") == 0           ? &s->service
                     : strcmp(k, "role_arn") == 0          ? &role_arn
                     : strcmp(k, "external_id") == 0       ? &external_id
                     : strcmp(k, "role_session_name") == 0 ? &session_name
                     : strcmp(k, "sts_endpoint") == 0      ? &sts_endpoint
                     : strcmp(k, "imds_endpoint") == 0     ? &imds_endpoint
                                                           : NULL;
        if (strcmp(k, "use_fips_sts_endpoint") == 0) {
            dr_error_set(err, "sigv4.%s: not supported yet", k);
            rc = DR_EINVAL;
        } else if (!dst) {
            dr_error_set(err,
                         "sigv4: unknown key \"%s\" (region, access_key, secret_key, profile, "
                         "service, role_arn, external_id, role_session_name, sts_endpoint, "
                         "imds_endpoint)",
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
    dr_aws_source source = DR_AWS_SOURCE_STATIC;
    if (rc == 0) {
        rc = find_credentials(s, access_key, secret_key, profile, &source, err);
    } else {
        free(access_key);
        free(secret_key);
        free(profile);
    }
    if (rc == 0 && !s->region && !(s->region = dr_aws_env("AWS_REGION")))
        s->region = dr_aws_env("AWS_DEFAULT_REGION");
    if (rc == 0 && !s->region) {
        dr_error_set(err, "sigv4: no region: set sigv4.region or AWS_REGION");
        rc = DR_EINVAL;
    }
    if (rc == 0 && !s->service && !(s->service = strdup("aps")))
        rc = DR_ENOMEM;
    if (rc == 0)
        rc = make_provider(st, source, role_arn, external_id, session_name, sts_endpoint,
                           imds_endpoint, err);
    free(role_arn);
    free(external_id);
    free(session_name);
    free(sts_endpoint);
    free(imds_endpoint);
    return rc == 0 ? split_url(s, st->conf->url, err) : rc;
}

static void on_credentials(void *ctx)
{
    rw_shards_kick_all(ctx);
}

int rw_sigv4_start(rw_state *st)
{
    rw_sigv4 *s = st->sigv4;
    if (!s || !s->provider)
        return 0;
    return dr_aws_provider_start(s->provider, on_credentials, st);
}

void rw_sigv4_free(rw_sigv4 *s)
{
    if (!s)
        return;
    free(s->region);
    free(s->service);
    dr_aws_provider_close(s->provider);
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
    const dr_aws_creds *creds = s->provider ? dr_aws_provider_creds(s->provider) : &s->creds;
    if (!creds)
        return DR_EAGAIN;
    /* the headers of this request, with the ones signing adds */
    char date[17];
    dr_sigv4_amz_date((long long)time(NULL), date);
    snprintf(s->host_header, sizeof s->host_header, "Host: %s", s->host);
    snprintf(s->date_header, sizeof s->date_header, "X-Amz-Date: %s", date);
    if (*nh + 4 > cap)
        return DR_EINVAL;
    headers[(*nh)++] = s->host_header;
    headers[(*nh)++] = s->date_header;
    if (creds->session_token) {
        dr_buf_reset(&s->token_header);
        dr_buf_printf(&s->token_header, "X-Amz-Security-Token: %s", creds->session_token);
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
            h[i].value = creds->session_token;
    dr_sigv4_request req = {"POST", s->path, s->query, h, n, body, body_len, false};
    dr_sigv4_scope scope = {creds->access_key, creds->secret_key, s->region, s->service, date};
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
