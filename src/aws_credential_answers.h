/*
 * The answers of the services that hand out temporary AWS credentials,
 * read into dr_aws_creds: STS (AssumeRoleWithWebIdentity and AssumeRole,
 * an XML document), the container credential endpoint (EKS Pod Identity,
 * ECS: JSON) and the EC2 instance metadata service (JSON with a Code).
 *
 * They are pure functions of the text and of the time given, apart from
 * the network code (aws_provider.c), so that each documented shape and
 * each way an answer can be wrong is checked by the unit tests.
 */
#ifndef DROVER_AWS_CREDENTIAL_ANSWERS_H
#define DROVER_AWS_CREDENTIAL_ANSWERS_H

#include <stddef.h>
#include <stdint.h>

#include "aws_credentials.h"

/* An answer larger than this is not one of these. */
#define DR_AWS_ANSWER_MAX_BYTES (64u * 1024)

/* The Credentials of an STS query-API answer to `action` ("AssumeRole",
 * "AssumeRoleWithWebIdentity"): <actionResponse><actionResult>
 * <Credentials> with AccessKeyId, SecretAccessKey, SessionToken and
 * Expiration (ISO 8601). An ErrorResponse gives its Code and Message in
 * err. 0, or DR_EINVAL with err saying why (an error answer, a missing
 * field, credentials already expired at now_ms, not XML at all). */
int dr_aws_parse_sts(const char *body, size_t len, const char *action, int64_t now_ms,
                     dr_aws_creds *out, dr_error *err);

/* The JSON of the container credential endpoint: {AccessKeyId,
 * SecretAccessKey, Token, Expiration}. 0 or DR_EINVAL with err. */
int dr_aws_parse_container(const char *body, size_t len, int64_t now_ms, dr_aws_creds *out,
                           dr_error *err);

/* The JSON of IMDS .../iam/security-credentials/ROLE: {Code: "Success",
 * AccessKeyId, SecretAccessKey, Token, Expiration}. 0 or DR_EINVAL. */
int dr_aws_parse_imds(const char *body, size_t len, int64_t now_ms, dr_aws_creds *out,
                      dr_error *err);

/* The role name in IMDS' .../iam/security-credentials/ listing (its first
 * line) into out (outsz bytes). 0 or DR_EINVAL (empty, not a name). */
int dr_aws_parse_imds_role(const char *body, size_t len, char *out, size_t outsz, dr_error *err);

#endif
