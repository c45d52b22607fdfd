/*
 * Reading the answers of STS, the container credential endpoint and IMDS
 * (aws_credential_answers.h).
 *
 * STS answers are XML, but of one fixed shape: the fields wanted are
 * leaves with text only, so they are found by their element names inside
 * the element that must hold them, and their five predefined entities
 * decoded. Nothing else of XML is needed to read them.
 */
#include "aws_credential_answers.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "jsonp.h"

/* ---- the fields every source has ------------------------------------------------------ */

/* Expiration as Unix milliseconds; DR_EINVAL when it is not ISO 8601. */
static int parse_expiration(const char *s, size_t n, int64_t *ms)
{
    int64_t ns;
    if (dr_parse_rfc3339(s, n, &ns) != 0)
        return DR_EINVAL;
    *ms = ns / 1000000;
    return 0;
}

/* Checks what every answer must give and that it is not expired yet. */
static int check_creds(dr_aws_creds *c, const char *what, int64_t now_ms, dr_error *err)
{
    const char *missing = !c->access_key      ? "AccessKeyId"
                          : !c->secret_key    ? "SecretAccessKey"
                          : !c->session_token ? "the session token"
                                              : NULL;
    if (missing) {
        dr_error_set(err, "%s: the answer has no %s", what, missing);
        dr_aws_creds_free(c);
        return DR_EINVAL;
    }
    if (c->expires_ms <= now_ms) {
        dr_error_set(err, "%s: the credentials handed out are already expired", what);
        dr_aws_creds_free(c);
        return DR_EINVAL;
    }
    return 0;
}

/* ---- STS: XML --------------------------------------------------------------------------- */

typedef struct xml_span {
    const char *p;
    size_t n;
} xml_span;

/* The content of the first element called `name` inside `in` (between
 * its start tag, which may carry attributes, and its end tag). */
static bool xml_child(xml_span in, const char *name, xml_span *out)
{
    size_t nl = strlen(name);
    const char *end = in.p + in.n;
    for (const char *p = in.p; (p = memchr(p, '<', (size_t)(end - p))) != NULL; p++) {
        if ((size_t)(end - p) < nl + 2 || memcmp(p + 1, name, nl) != 0)
            continue;
        char after = p[1 + nl];
        if (after != '>' && after != ' ' && after != '\t' && after != '\r' && after != '\n')
            continue;
        const char *gt = memchr(p, '>', (size_t)(end - p));
        if (!gt)
            return false;
        const char *content = gt + 1;
        for (const char *q = content; (q = memchr(q, '<', (size_t)(end - q))) != NULL; q++) {
            if ((size_t)(end - q) >= nl + 3 && q[1] == '/' && memcmp(q + 2, name, nl) == 0 &&
                q[2 + nl] == '>') {
                *out = (xml_span){content, (size_t)(q - content)};
                return true;
            }
        }
        return false;
    }
    return false;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The text of a leaf, its entities decoded, trimmed; NULL when it holds
 * markup or an entity not predefined, or out of memory. */
static char *xml_text(xml_span s)
{
    while (s.n && is_blank(s.p[0]))
        s.p++, s.n--;
    while (s.n && is_blank(s.p[s.n - 1]))
        s.n--;
    static const struct {
        const char *name;
        char c;
    } entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char *out = malloc(s.n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < s.n;) {
        if (s.p[i] == '<') {
            free(out);
            return NULL;
        }
        if (s.p[i] != '&') {
            *o++ = s.p[i++];
            continue;
        }
        size_t k = 0;
        while (k < sizeof entities / sizeof entities[0] &&
               (s.n - i < strlen(entities[k].name) ||
                memcmp(s.p + i, entities[k].name, strlen(entities[k].name)) != 0))
            k++;
        if (k == sizeof entities / sizeof entities[0]) {
            free(out);
            return NULL;
        }
        *o++ = entities[k].c;
        i += strlen(entities[k].name);
    }
    *o = '\0';
    return out;
}

/* The text of child `name` of `in`, or NULL. */
static char *xml_child_text(xml_span in, const char *name)
{
    xml_span s;
    return xml_child(in, name, &s) ? xml_text(s) : NULL;
}

/* An ErrorResponse: "STS: Code: Message" in err. */
static int sts_error(xml_span doc, const char *action, dr_error *err)
{
    xml_span e;
    if (!xml_child(doc, "Error", &e))
        e = doc;
    char *code = xml_child_text(e, "Code"), *msg = xml_child_text(e, "Message");
    dr_error_set(err, "STS %s refused: %s: %s", action, code ? code : "(no code)",
                 msg ? msg : "(no message)");
    free(code);
    free(msg);
    return DR_EINVAL;
}

int dr_aws_parse_sts(const char *body, size_t len, const char *action, int64_t now_ms,
                     dr_aws_creds *out, dr_error *err)
{
    memset(out, 0, sizeof *out);
    xml_span doc = {body, len}, resp, result, cr;
    char resp_name[64], result_name[64];
    snprintf(resp_name, sizeof resp_name, "%sResponse", action);
    snprintf(result_name, sizeof result_name, "%sResult", action);
    if (xml_child(doc, "ErrorResponse", &resp))
        return sts_error(resp, action, err);
    if (!xml_child(doc, resp_name, &resp) || !xml_child(resp, result_name, &result) ||
        !xml_child(result, "Credentials", &cr)) {
        dr_error_set(err, "STS %s: the answer is not a %s with Credentials", action, resp_name);
        return DR_EINVAL;
    }
    out->access_key = xml_child_text(cr, "AccessKeyId");
    out->secret_key = xml_child_text(cr, "SecretAccessKey");
    out->session_token = xml_child_text(cr, "SessionToken");
    xml_span exp;
    if (!xml_child(cr, "Expiration", &exp) || parse_expiration(exp.p, exp.n, &out->expires_ms)) {
        dr_aws_creds_free(out);
        dr_error_set(err, "STS %s: the answer has no ISO 8601 Expiration", action);
        return DR_EINVAL;
    }
    char what[64];
    snprintf(what, sizeof what, "STS %s", action);
    return check_creds(out, what, now_ms, err);
}

/* ---- container credentials and IMDS: JSON ------------------------------------------------ */

static char *json_field(const dr_jv *root, const char *name)
{
    const char *s = dr_jv_str(dr_jv_get(root, name));
    return s && *s ? strdup(s) : NULL;
}

/* {AccessKeyId, SecretAccessKey, Token, Expiration}, and Code for IMDS. */
static int parse_json_creds(const char *body, size_t len, const char *what, bool want_code,
                            int64_t now_ms, dr_aws_creds *out, dr_error *err)
{
    memset(out, 0, sizeof *out);
    dr_json_doc *doc = dr_json_doc_new();
    if (!doc)
        return DR_ENOMEM;
    const dr_jv *root;
    dr_json_limits lim = {.max_depth = 8, .max_nodes = 256};
    dr_error jerr = {{0}};
    int rc = DR_EINVAL;
    if (dr_json_parse(doc, body, len, &lim, &root, &jerr) != 0 || root->type != DR_JV_OBJECT) {
        dr_error_set(err, "%s: the answer is not a JSON object (%s)", what,
                     jerr.msg[0] ? jerr.msg : "another JSON value");
        goto done;
    }
    const char *code = dr_jv_str(dr_jv_get(root, "Code"));
    if (want_code && (!code || strcmp(code, "Success") != 0)) {
        dr_error_set(err, "%s: the answer's Code is %s, not Success", what,
                     code ? code : "missing");
        goto done;
    }
    const char *exp = dr_jv_str(dr_jv_get(root, "Expiration"));
    if (!exp || parse_expiration(exp, strlen(exp), &out->expires_ms) != 0) {
        dr_error_set(err, "%s: the answer has no ISO 8601 Expiration", what);
        goto done;
    }
    out->access_key = json_field(root, "AccessKeyId");
    out->secret_key = json_field(root, "SecretAccessKey");
    out->session_token = json_field(root, "Token");
    rc = check_creds(out, what, now_ms, err);
done:
    if (rc != 0)
        dr_aws_creds_free(out);
    dr_json_doc_free(doc);
    return rc;
}

int dr_aws_parse_container(const char *body, size_t len, int64_t now_ms, dr_aws_creds *out,
                           dr_error *err)
{
    return parse_json_creds(body, len, "container credentials", false, now_ms, out, err);
}

int dr_aws_parse_imds(const char *body, size_t len, int64_t now_ms, dr_aws_creds *out,
                      dr_error *err)
{
    return parse_json_creds(body, len, "IMDS credentials", true, now_ms, out, err);
}

int dr_aws_parse_imds_role(const char *body, size_t len, char *out, size_t outsz, dr_error *err)
{
    size_t n = 0;
    while (n < len && body[n] != '\n' && body[n] != '\r')
        n++;
    bool ok = n > 0 && n < outsz;
    for (size_t i = 0; ok && i < n; i++) /* IAM role names: [\w+=,.@-] */
        ok = (body[i] >= 'a' && body[i] <= 'z') || (body[i] >= 'A' && body[i] <= 'Z') ||
             (body[i] >= '0' && body[i] <= '9') || (body[i] && strchr("_+=,.@-", body[i]));
    if (!ok) {
        dr_error_set(err, "IMDS: the instance profile listing holds no role name");
        return DR_EINVAL;
    }
    memcpy(out, body, n);
    out[n] = '\0';
    return 0;
}
