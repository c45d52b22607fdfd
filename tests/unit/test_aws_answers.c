/* The answers of STS, the container credential endpoint and IMDS, in the
 * shapes their documentation gives, and the ways they can be wrong. */
#include <stdlib.h>
#include <string.h>

#include "aws_credential_answers.h"
#include "drover/plugin.h"
#include "test.h"

/* 2026-12-07T06:00:00Z */
#define NOW_MS 1796623200000LL

static const char sts_web_identity[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    "
    "<SubjectFromWebIdentityToken>system:serviceaccount:mon:drover</SubjectFromWebIdentityToken>\n"
    "    <Audience>sts.amazonaws.com</Audience>\n"
    "    <AssumedRoleUser>\n"
    "      <Arn>arn:aws:sts::123456789012:assumed-role/amp/drover</Arn>\n"
    "      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:drover</AssumedRoleId>\n"
    "    </AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <SessionToken>IQoJb3JpZ2luX2VjEJr//+token&amp;more==</SessionToken>\n"
    "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
    "      <Expiration>2026-12-07T07:00:00Z</Expiration>\n"
    "      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "    </Credentials>\n"
    "    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.example</Provider>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>"
    "</ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

static const char sts_assume_role[] =
    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    "<AssumeRoleResult><SourceIdentity>DevUser123</SourceIdentity>"
    "<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/demo/John</Arn>"
    "<AssumedRoleId>ARO123EXAMPLE123:John</AssumedRoleId></AssumedRoleUser>"
    "<Credentials><AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>"
    "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>"
    "<SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764</SessionToken>"
    "<Expiration>2026-12-07T06:15:00.000Z</Expiration></Credentials>"
    "<PackedPolicySize>8</PackedPolicySize></AssumeRoleResult>"
    "<ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>"
    "</ResponseMetadata></AssumeRoleResponse>";

static const char sts_error[] =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <Error>\n    <Type>Sender</Type>\n    <Code>InvalidIdentityToken</Code>\n"
    "    <Message>No OpenIDConnect provider found in your account for "
    "https://oidc.example</Message>\n"
    "  </Error>\n  <RequestId>8d0e1a6c-0000-0000-0000-000000000000</RequestId>\n"
    "</ErrorResponse>\n";

void test_aws_sts_answers(void)
{
    dr_aws_creds c;
    dr_error err = {{0}};
    CHECK_INT(dr_aws_parse_sts(sts_web_identity, strlen(sts_web_identity),
                               "AssumeRoleWithWebIdentity", NOW_MS, &c, &err),
              0);
    CHECK_STR(c.access_key, "ASgeIAIOSFODNN7EXAMPLE");
    CHECK_STR(c.secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    CHECK_STR(c.session_token, "IQoJb3JpZ2luX2VjEJr//+token&more==");
    CHECK_INT(c.expires_ms, NOW_MS + 3600000);
    dr_aws_creds_free(&c);

    CHECK_INT(
        dr_aws_parse_sts(sts_assume_role, strlen(sts_assume_role), "AssumeRole", NOW_MS, &c, &err),
        0);
    CHECK_STR(c.access_key, "ASIAIOSFODNN7EXAMPLE");
    CHECK_STR(c.session_token, "AQoDYXdzEPT//////////wEXAMPLEtc764");
    CHECK_INT(c.expires_ms, NOW_MS + 900000);
    dr_aws_creds_free(&c);

    /* the answer of another action is not this one's */
    CHECK_INT(dr_aws_parse_sts(sts_assume_role, strlen(sts_assume_role),
                               "AssumeRoleWithWebIdentity", NOW_MS, &c, &err),
              DR_EINVAL);
    CHECK(c.access_key == NULL);

    CHECK_INT(dr_aws_parse_sts(sts_error, strlen(sts_error), "AssumeRoleWithWebIdentity", NOW_MS,
                               &c, &err),
              DR_EINVAL);
    CHECK(strstr(err.msg, "InvalidIdentityToken") != NULL);
    CHECK(strstr(err.msg, "No OpenIDConnect provider found") != NULL);

    /* expired at arrival */
    CHECK_INT(dr_aws_parse_sts(sts_assume_role, strlen(sts_assume_role), "AssumeRole",
                               NOW_MS + 900000, &c, &err),
              DR_EINVAL);
    CHECK(strstr(err.msg, "expired") != NULL);
}

/* One field of the documented answer taken out or spoiled at a time. */
void test_aws_sts_answers_broken(void)
{
    dr_aws_creds c;
    dr_error err = {{0}};
    static const struct {
        const char *from, *to, *says;
    } spoil[] = {
        {"<SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764</SessionToken>", "", "session token"},
        {"<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>", "", "AccessKeyId"},
        {"<SecretAccessKey>", "<SecretAccessKeyX>", "SecretAccessKey"},
        {"2026-12-07T06:15:00.000Z", "tomorrow", "Expiration"},
        {"<Expiration>2026-12-07T06:15:00.000Z</Expiration>", "", "Expiration"},
        {"<Credentials>", "<Credential>", "Credentials"},
        {"</AssumeRoleResponse>", "", "Credentials"},
        {"EXAMPLEtc764", "&bogus;", "session token"},
    };
    for (size_t i = 0; i < sizeof spoil / sizeof spoil[0]; i++) {
        char doc[2048];
        const char *at = strstr(sts_assume_role, spoil[i].from);
        CHECK(at != NULL);
        size_t head = (size_t)(at - sts_assume_role);
        snprintf(doc, sizeof doc, "%.*s%s%s", (int)head, sts_assume_role, spoil[i].to,
                 at + strlen(spoil[i].from));
        err.msg[0] = '\0';
        CHECK_INT(dr_aws_parse_sts(doc, strlen(doc), "AssumeRole", NOW_MS, &c, &err), DR_EINVAL);
        CHECK(strstr(err.msg, spoil[i].says) != NULL);
        CHECK(c.access_key == NULL && c.secret_key == NULL && c.session_token == NULL);
    }
    static const char *const garbage[] = {"",
                                          "<",
                                          "not xml at all",
                                          "<html><body>502</body>",
                                          "{\"AccessKeyId\":\"x\"}",
                                          "<AssumeRoleResponse"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        CHECK_INT(dr_aws_parse_sts(garbage[i], strlen(garbage[i]), "AssumeRole", NOW_MS, &c, &err),
                  DR_EINVAL);
    /* bytes past the length given are not read */
    CHECK_INT(dr_aws_parse_sts(sts_assume_role, 40, "AssumeRole", NOW_MS, &c, &err), DR_EINVAL);
}

static const char container_json[] =
    "{\"AccessKeyId\":\"ASIAPODIDENTITY\",\"SecretAccessKey\":\"c2VjcmV0\","
    "\"Token\":\"IQoJpod\\/token\",\"AccountId\":\"123456789012\","
    "\"Expiration\":\"2026-12-07T06:30:00Z\"}";

static const char imds_json[] = "{\n  \"Code\" : \"Success\",\n"
                                "  \"LastUpdated\" : \"2026-12-07T05:50:00Z\",\n"
                                "  \"Type\" : \"AWS-HMAC\",\n"
                                "  \"AccessKeyId\" : \"ASIAIMDS\",\n"
                                "  \"SecretAccessKey\" : \"imdssecret\",\n"
                                "  \"Token\" : \"imdstoken\",\n"
                                "  \"Expiration\" : \"2026-12-07T12:00:00Z\"\n}";

void test_aws_json_answers(void)
{
    dr_aws_creds c;
    dr_error err = {{0}};
    CHECK_INT(dr_aws_parse_container(container_json, strlen(container_json), NOW_MS, &c, &err), 0);
    CHECK_STR(c.access_key, "ASIAPODIDENTITY");
    CHECK_STR(c.secret_key, "c2VjcmV0");
    CHECK_STR(c.session_token, "IQoJpod/token");
    CHECK_INT(c.expires_ms, NOW_MS + 1800000);
    dr_aws_creds_free(&c);

    CHECK_INT(dr_aws_parse_imds(imds_json, strlen(imds_json), NOW_MS, &c, &err), 0);
    CHECK_STR(c.access_key, "ASIAIMDS");
    CHECK_STR(c.session_token, "imdstoken");
    CHECK_INT(c.expires_ms, NOW_MS + 6 * 3600000LL);
    dr_aws_creds_free(&c);

    /* IMDS wants its Code; the container endpoint has none */
    CHECK_INT(dr_aws_parse_imds(container_json, strlen(container_json), NOW_MS, &c, &err),
              DR_EINVAL);
    CHECK(strstr(err.msg, "Code") != NULL);
    static const char failed[] = "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"x\"}";
    CHECK_INT(dr_aws_parse_imds(failed, strlen(failed), NOW_MS, &c, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "AssumeRoleUnauthorizedAccess") != NULL);

    static const char *const broken[] = {
        "",
        "garbage",
        "[]",
        "\"AccessKeyId\"",
        "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Token\":\"t\"}",
        "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Expiration\":\"2026-12-07T07:00:00Z\"}",
        "{\"AccessKeyId\":\"a\",\"Token\":\"t\",\"Expiration\":\"2026-12-07T07:00:00Z\"}",
        "{\"AccessKeyId\":1,\"SecretAccessKey\":\"s\",\"Token\":\"t\","
        "\"Expiration\":\"2026-12-07T07:00:00Z\"}",
        "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"soon\"}",
        "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
        "\"Expiration\":\"2026-12-07T05:00:00Z\"}",
        "{\"AccessKeyId\":\"a\",", /* cut short */
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        err.msg[0] = '\0';
        CHECK_INT(dr_aws_parse_container(broken[i], strlen(broken[i]), NOW_MS, &c, &err),
                  DR_EINVAL);
        CHECK(err.msg[0] != '\0');
        CHECK(c.access_key == NULL && c.session_token == NULL);
    }
}

void test_aws_imds_role(void)
{
    char role[128];
    dr_error err = {{0}};
    CHECK_INT(dr_aws_parse_imds_role("eks-node-role", 13, role, sizeof role, &err), 0);
    CHECK_STR(role, "eks-node-role");
    CHECK_INT(dr_aws_parse_imds_role("first\nsecond\n", 13, role, sizeof role, &err), 0);
    CHECK_STR(role, "first");
    CHECK_INT(dr_aws_parse_imds_role("", 0, role, sizeof role, &err), DR_EINVAL);
    CHECK_INT(dr_aws_parse_imds_role("../../etc", 9, role, sizeof role, &err), DR_EINVAL);
    CHECK_INT(dr_aws_parse_imds_role("<html>", 6, role, sizeof role, &err), DR_EINVAL);
    CHECK_INT(dr_aws_parse_imds_role("a\0b", 3, role, sizeof role, &err), DR_EINVAL);
    CHECK_INT(dr_aws_parse_imds_role("abcdef", 6, role, 4, &err), DR_EINVAL);
}
