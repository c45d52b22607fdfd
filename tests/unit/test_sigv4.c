/* AWS Signature Version 4 against AWS's published test suite
 * (../shared/fixtures/sigv4/aws-sig-v4-test-suite, 31 cases): every case's
 * raw request is signed and must give the suite's canonical request,
 * string to sign and Authorization header, byte for byte. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws_credentials.h"
#include "drover/plugin.h"
#include "sigv4.h"
#include "test.h"

static const char *const cases[] = {
    "get-header-key-duplicate",
    "get-header-value-multiline",
    "get-header-value-order",
    "get-header-value-trim",
    "get-unreserved",
    "get-utf8",
    "get-vanilla",
    "get-vanilla-empty-query-key",
    "get-vanilla-query",
    "get-vanilla-query-order-key",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-order-value",
    "get-vanilla-query-unreserved",
    "get-vanilla-utf8-query",
    "normalize-path/get-relative",
    "normalize-path/get-relative-relative",
    "normalize-path/get-slash",
    "normalize-path/get-slash-dot-slash",
    "normalize-path/get-slash-pointless-dot",
    "normalize-path/get-slashes",
    "normalize-path/get-space",
    "post-header-key-case",
    "post-header-key-sort",
    "post-header-value-case",
    "post-sts-token/post-sts-header-after",
    "post-sts-token/post-sts-header-before",
    "post-vanilla",
    "post-vanilla-empty-query-value",
    "post-vanilla-query",
    "post-x-www-form-urlencoded",
    "post-x-www-form-urlencoded-parameters",
};

/* The suite's signer: AWS's documentation example credentials. */
static const dr_sigv4_scope suite_scope = {"AKIDEXAMPLE",
                                           "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1",
                                           "service", "20150830T123600Z"};

/* A case's file with the given extension, NUL-terminated; NULL when absent. */
static char *case_file(const char *c, const char *ext, size_t *len)
{
    const char *base = strrchr(c, '/') ? strrchr(c, '/') + 1 : c;
    char rel[256];
    snprintf(rel, sizeof rel, "sigv4/aws-sig-v4-test-suite/%s/%s.%s", c, base, ext);
    return dt_read_file(dt_fixture(rel), len);
}

/* A raw request of the suite taken apart. */
typedef struct raw_request {
    char method[16];
    char *path, *query;
    dr_sigv4_header h[16];
    size_t nh;
    const char *body;
    size_t body_len;
} raw_request;

/* Request line (whose target may hold spaces), headers ("Name:value"; a
 * folded continuation line is one more value of the header before it),
 * blank line, body. The text is cut in place. */
static bool parse_raw(char *text, raw_request *r)
{
    memset(r, 0, sizeof *r);
    char *line_end = strchr(text, '\n');
    if (!line_end)
        line_end = text + strlen(text);
    char *sp1 = strchr(text, ' ');
    char *sp2 = line_end;
    while (sp2 > text && *sp2 != ' ')
        sp2--;
    if (!sp1 || sp2 <= sp1 || (size_t)(sp1 - text) >= sizeof r->method)
        return false;
    memcpy(r->method, text, (size_t)(sp1 - text));
    *sp2 = '\0';
    r->path = sp1 + 1;
    char *q = strchr(r->path, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    char *p = *line_end ? line_end + 1 : line_end;
    const char *last_name = NULL;
    while (*p) {
        char *e = strchr(p, '\n');
        bool last = !e;
        if (e)
            *e = '\0';
        if (!*p) { /* blank line: the body follows */
            r->body = last ? "" : e + 1;
            r->body_len = strlen(r->body);
            return true;
        }
        if (r->nh == sizeof r->h / sizeof r->h[0])
            return false;
        if (*p == ' ' || *p == '\t') {
            if (!last_name)
                return false;
            r->h[r->nh++] = (dr_sigv4_header){last_name, p};
        } else {
            char *colon = strchr(p, ':');
            if (!colon)
                return false;
            *colon = '\0';
            r->h[r->nh++] = (dr_sigv4_header){p, colon + 1};
            last_name = p;
        }
        if (last)
            break;
        p = e + 1;
    }
    r->body = "";
    return true;
}

static const char *header(const raw_request *r, const char *name)
{
    for (size_t i = 0; i < r->nh; i++)
        if (strcasecmp(r->h[i].name, name) == 0)
            return r->h[i].value;
    return NULL;
}

/* The hash on the string to sign's last line, and the one of creq. */
static bool creq_matches_sts(const char *creq, size_t n, const char *sts)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)creq, n, md);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    const char *last = strrchr(sts, '\n');
    return last && strcmp(last + 1, hex) == 0;
}

static void check_case(const char *c)
{
    size_t n;
    char *req = case_file(c, "req", &n);
    char *want_creq = case_file(c, "creq", &n);
    size_t want_creq_len = n;
    char *want_sts = case_file(c, "sts", &n);
    char *want_authz = case_file(c, "authz", &n);
    CHECK(req && want_creq && want_sts && want_authz);
    raw_request r;
    if (!req || !want_creq || !want_sts || !want_authz || !parse_raw(req, &r)) {
        fprintf(stderr, "  %s: cannot read the case\n", c);
        CHECK(!"a readable case");
        goto out;
    }
    /* The suite's form-urlencoded case puts the form's parameters in the
     * canonical query and hashes an empty payload (the way AWS query APIs
     * were signed when the suite was written). */
    const char *ct = header(&r, "Content-Type");
    if (ct && strstr(ct, "x-www-form-urlencoded") && r.body_len && !r.query) {
        r.query = (char *)r.body;
        r.body = "";
        r.body_len = 0;
    }
    dr_sigv4_request sr = {r.method, r.path, r.query, r.h, r.nh, r.body, r.body_len, false};
    dr_buf creq = {0}, sts = {0}, authz = {0};
    CHECK_INT(dr_sigv4_sign(&sr, &suite_scope, &creq, &sts, &authz), 0);
    dr_buf_putc(&creq, '\0');
    dr_buf_putc(&sts, '\0');
    dr_buf_putc(&authz, '\0');
    /* one published canonical request (post-x-www-form-urlencoded) does
     * not hash to its own string to sign: there the string to sign and
     * the signature are what count */
    if (creq_matches_sts(want_creq, want_creq_len, want_sts)) {
        if (strcmp(creq.p, want_creq) != 0)
            fprintf(stderr, "  %s canonical request:\n%s\n  want:\n%s\n", c, creq.p, want_creq);
        CHECK_STR(creq.p, want_creq);
    }
    if (strcmp(sts.p, want_sts) != 0)
        fprintf(stderr, "  %s string to sign:\n%s\n", c, sts.p);
    CHECK_STR(sts.p, want_sts);
    CHECK_STR(authz.p, want_authz);
    dr_buf_free(&creq);
    dr_buf_free(&sts);
    dr_buf_free(&authz);
out:
    free(req);
    free(want_creq);
    free(want_sts);
    free(want_authz);
}

void test_sigv4_aws_suite(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(cases[i]);
}

void test_sigv4_details(void)
{
    /* a remote-write request to Amazon Managed Service for Prometheus:
     * temporary credentials sign their token too */
    dr_sigv4_header h[] = {
        {"Host", "aps-workspaces.eu-west-1.amazonaws.com"},
        {"Content-Type", "application/x-protobuf"},
        {"X-Amz-Date", "20261207T020000Z"},
        {"X-Amz-Security-Token", "tok"},
    };
    dr_sigv4_request r = {"POST", "/workspaces/ws-1/api/v1/remote_write", NULL, h, 4, "abc", 3,
                          false};
    dr_sigv4_scope s = {"AKID", "secret", "eu-west-1", "aps", "20261207T020000Z"};
    dr_buf creq = {0}, authz = {0};
    CHECK_INT(dr_sigv4_sign(&r, &s, &creq, NULL, &authz), 0);
    dr_buf_putc(&creq, '\0');
    dr_buf_putc(&authz, '\0');
    CHECK_STR(creq.p, "POST\n/workspaces/ws-1/api/v1/remote_write\n\n"
                      "content-type:application/x-protobuf\n"
                      "host:aps-workspaces.eu-west-1.amazonaws.com\n"
                      "x-amz-date:20261207T020000Z\nx-amz-security-token:tok\n\n"
                      "content-type;host;x-amz-date;x-amz-security-token\n"
                      /* sha256("abc") */
                      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(strncmp(authz.p,
                  "AWS4-HMAC-SHA256 Credential=AKID/20261207/eu-west-1/aps/aws4_request, "
                  "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=",
                  strlen("AWS4-HMAC-SHA256 Credential=AKID/20261207/eu-west-1/aps/aws4_request, "
                         "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
                         "Signature=")) == 0);
    dr_buf_free(&creq);
    dr_buf_free(&authz);

    /* S3 keeps its path; a query's escapes are decoded before encoding */
    dr_sigv4_header hs[] = {{"Host", "b.s3.amazonaws.com"}, {"X-Amz-Date", "20261207T020000Z"}};
    dr_sigv4_request r3 = {"GET", "/my-object//example//photo.user", "a=%2Fx&b", hs, 2, NULL, 0,
                           true};
    CHECK_INT(dr_sigv4_sign(&r3, &s, &creq, NULL, &authz), 0);
    dr_buf_putc(&creq, '\0');
    CHECK(strncmp(creq.p, "GET\n/my-object//example//photo.user\na=%2Fx&b=\n", 46) == 0);
    dr_buf_free(&creq);
    dr_buf_free(&authz);

    /* bad input: a broken escape, a malformed date */
    r3.query = "a=%G1";
    CHECK_INT(dr_sigv4_sign(&r3, &s, NULL, NULL, &authz), DR_EINVAL);
    r3.query = NULL;
    s.amz_date = "2026-12-07T02:00:00Z";
    CHECK_INT(dr_sigv4_sign(&r3, &s, NULL, NULL, &authz), DR_EINVAL);
    dr_buf_free(&authz);

    char d[17];
    dr_sigv4_amz_date(1440938160, d); /* the suite's moment */
    CHECK_STR(d, "20150830T123600Z");
}

static const char *write_temp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/drover-aws-creds-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
    }
    return path;
}

void test_aws_credentials_file(void)
{
    const char *path = write_temp("# keys\n"
                                  "[default]\n"
                                  "aws_access_key_id = AKIDDEFAULT\n"
                                  "aws_secret_access_key=secret/default\r\n"
                                  "\n"
                                  "[ ci ]\n"
                                  "; a comment\n"
                                  "aws_access_key_id\t=\tAKIDCI\n"
                                  "aws_secret_access_key = s = with equals\n"
                                  "aws_session_token = tok==\n"
                                  "region = eu-west-1\n"
                                  "[broken]\n"
                                  "aws_access_key_id = AKIDONLY\n");
    dr_aws_creds c;
    dr_error err = {{0}};
    CHECK_INT(dr_aws_creds_from_file(path, "default", &c, &err), 0);
    CHECK_STR(c.access_key, "AKIDDEFAULT");
    CHECK_STR(c.secret_key, "secret/default");
    CHECK(c.session_token == NULL);
    dr_aws_creds_free(&c);
    CHECK_INT(dr_aws_creds_from_file(path, "ci", &c, &err), 0);
    CHECK_STR(c.access_key, "AKIDCI");
    CHECK_STR(c.secret_key, "s = with equals");
    CHECK_STR(c.session_token, "tok==");
    dr_aws_creds_free(&c);
    CHECK_INT(dr_aws_creds_from_file(path, "broken", &c, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "profile [broken] has no aws_access_key_id") != NULL);
    CHECK_INT(dr_aws_creds_from_file(path, "prod", &c, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "no profile [prod]") != NULL);
    unlink(path);
    CHECK_INT(dr_aws_creds_from_file(path, "default", &c, &err), DR_EAGAIN);

    setenv("AWS_SHARED_CREDENTIALS_FILE", "/etc/aws-creds", 1);
    char *p = dr_aws_credentials_path();
    CHECK_STR(p, "/etc/aws-creds");
    free(p);
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/home/x", 1);
    p = dr_aws_credentials_path();
    CHECK_STR(p, "/home/x/.aws/credentials");
    free(p);
    if (home)
        setenv("HOME", home, 1);
    else
        unsetenv("HOME");
    free(home);

    unsetenv("AWS_ACCESS_KEY_ID");
    CHECK_INT(dr_aws_creds_from_env(&c), DR_EAGAIN);
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
    setenv("AWS_SESSION_TOKEN", "t", 1);
    CHECK_INT(dr_aws_creds_from_env(&c), 0);
    CHECK_STR(c.access_key, "AKIDENV");
    CHECK_STR(c.session_token, "t");
    dr_aws_creds_free(&c);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}
