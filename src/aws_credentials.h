/*
 * AWS credentials for SigV4, from the places the AWS SDKs look: so far the
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)
 * and the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 * ~/.aws/credentials) with its profiles (AWS_PROFILE, else "default").
 */
#ifndef DROVER_AWS_CREDENTIALS_H
#define DROVER_AWS_CREDENTIALS_H

#include "drover/plugin.h"

typedef struct dr_aws_creds {
    char *access_key, *secret_key, *session_token; /* the token may be NULL */
    int64_t expires_ms;                            /* Unix milliseconds; 0: they do not expire */
} dr_aws_creds;

void dr_aws_creds_free(dr_aws_creds *c);

/* A copy of an AWS_* environment variable's value; NULL when unset or empty. */
char *dr_aws_env(const char *name);

/* From the environment: 0, or DR_EAGAIN when it has none (not an error:
 * the next source is tried). */
int dr_aws_creds_from_env(dr_aws_creds *out);

/* The shared credentials file to read: AWS_SHARED_CREDENTIALS_FILE, else
 * $HOME/.aws/credentials; NULL when neither can be told (no HOME). */
char *dr_aws_credentials_path(void);

/* Reads one profile of a shared credentials file (an INI file: [profile]
 * sections of aws_access_key_id, aws_secret_access_key and
 * aws_session_token; '#' and ';' start comments). 0, DR_EAGAIN when the
 * file does not exist, DR_EINVAL (err says why) when the profile is not
 * there or lacks a key. */
int dr_aws_creds_from_file(const char *path, const char *profile, dr_aws_creds *out, dr_error *err);

#endif
