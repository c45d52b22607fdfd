/*
 * Temporary AWS credentials, fetched and kept fresh on the event loop: the
 * sources of the AWS SDKs' default chain that need the network, and
 * assuming a role on top of any source.
 *
 *   web identity  IRSA: AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE (read at
 *                 each fetch: the kubelet rotates it), AWS_ROLE_SESSION_NAME;
 *                 STS AssumeRoleWithWebIdentity, unsigned
 *   container     EKS Pod Identity, ECS: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
 *                 (on http://169.254.170.2) or AWS_CONTAINER_CREDENTIALS_FULL_URI,
 *                 with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read at each
 *                 fetch) or AWS_CONTAINER_AUTHORIZATION_TOKEN as Authorization
 *   IMDS          IMDSv2: a session token from PUT /latest/api/token, then the
 *                 instance profile's role and its credentials
 *   static        keys at hand (configuration, environment, shared file), for
 *                 a role to be assumed with
 *
 * With a role_arn, the source's credentials sign an STS AssumeRole and the
 * role's credentials are what the provider hands out.
 *
 * The first fetch starts at dr_aws_provider_start; until it succeeds there
 * are no credentials and the caller holds its requests. Credentials are
 * fetched again before they expire (5 minutes before, or at 80% of what is
 * left of short ones); a failed fetch is logged, counted in
 * drover_aws_credentials_refresh_errors_total{source} and retried with
 * backoff (1 s doubling to 1 minute), while the old credentials serve until
 * they expire. Every request goes through the asynchronous HTTP client:
 * nothing waits on the network.
 */
#ifndef DROVER_AWS_PROVIDER_H
#define DROVER_AWS_PROVIDER_H

#include <stdbool.h>
#include <stdint.h>

#include "aws_credentials.h"
#include "drover/plugin.h"

typedef enum {
    DR_AWS_SOURCE_STATIC,
    DR_AWS_SOURCE_WEB_IDENTITY,
    DR_AWS_SOURCE_CONTAINER,
    DR_AWS_SOURCE_IMDS,
} dr_aws_source;

/* Whether the environment configures a source (the chain's tests). */
bool dr_aws_web_identity_configured(void);
bool dr_aws_container_configured(void);
bool dr_aws_imds_enabled(void); /* AWS_EC2_METADATA_DISABLED is not "true" */

/* Whether container credentials may be fetched from url: any https URL;
 * over http only a loopback host (127.0.0.0/8, localhost, [::1]) or the
 * link-local hosts of ECS and EKS Pod Identity (169.254.170.2,
 * 169.254.170.23, [fd00:ec2::23]), as the SDKs allow. */
bool dr_aws_container_url_allowed(const char *url);

/* How long to wait before fetching again credentials that expire at
 * expires_ms: until 5 minutes before, or 80% of what is left when that is
 * under 15 minutes; 1 s at least. */
int64_t dr_aws_refresh_delay_ms(int64_t expires_ms, int64_t now_ms);

typedef struct dr_aws_provider_conf {
    dr_aws_source source;
    dr_aws_creds *base;       /* DR_AWS_SOURCE_STATIC: taken (emptied) */
    const char *region;       /* of STS */
    const char *role_arn;     /* assumed with the source's credentials; NULL: none */
    const char *external_id;  /* AssumeRole's ExternalId; NULL: none */
    const char *session_name; /* AssumeRole's RoleSessionName; NULL: "drover" */
    const char
        *sts_endpoint; /* NULL: AWS_ENDPOINT_URL_STS, else https://sts.REGION.amazonaws.com */
    const char *imds_endpoint; /* NULL: AWS_EC2_METADATA_SERVICE_ENDPOINT, else
                                  http://169.254.169.254 */
} dr_aws_provider_conf;

typedef struct dr_aws_provider dr_aws_provider;

/* Checks the configuration and what the source needs from the environment
 * (a container URI the SDKs allow, a token file named); no I/O yet. NULL
 * with err on failure. */
dr_aws_provider *dr_aws_provider_new(dr_instance *inst, const dr_aws_provider_conf *conf,
                                     dr_error *err);

/* Makes the provider's HTTP client, timer and self-metrics and starts the
 * first fetch. on_ready(ctx) is called on the loop each time new
 * credentials arrive. 0 or a DR_E* code. */
int dr_aws_provider_start(dr_aws_provider *p, void (*on_ready)(void *ctx), void *ctx);

/* The credentials to sign with now; NULL while there are none that have
 * not expired (the first fetch not done yet, or every refresh failed). */
const dr_aws_creds *dr_aws_provider_creds(const dr_aws_provider *p);

/* "web_identity", "container", "imds" or "static". */
const char *dr_aws_source_name(dr_aws_source s);

/* Ends any fetch in flight and frees the provider once its handles are
 * closed (run the loop); on_ready is not called again. p may be NULL. */
void dr_aws_provider_close(dr_aws_provider *p);

#endif
