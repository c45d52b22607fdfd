/* The rules of the AWS credential provider that need no network: which
 * container credential URLs may be used, and when credentials are
 * fetched again. */
#include <stdint.h>

#include "aws_provider.h"
#include "test.h"

void test_aws_container_url_allowed(void)
{
    static const char *const allowed[] = {
        "https://creds.example.com/v1",
        "http://127.0.0.1:8080/creds",
        "http://127.12.0.1/creds",
        "http://localhost:51679/creds",
        "http://169.254.170.2/v2/creds",
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/creds",
        "http://[::1]:9911/",
        "HTTP://LOCALHOST/x",
    };
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        CHECK(dr_aws_container_url_allowed(allowed[i]));
    static const char *const refused[] = {
        "http://example.com/creds",
        "http://127.0.0.1.example.com/",
        "http://128.0.0.1/",
        "http://127.0.0.256/",
        "http://169.254.170.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::24]/",
        "http://[::1/",
        "ftp://127.0.0.1/",
        "127.0.0.1/creds",
        "",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        CHECK(!dr_aws_container_url_allowed(refused[i]));
}

void test_aws_refresh_delay(void)
{
    const int64_t now = 1796623200000LL, min = 60000;
    /* an hour left: 5 minutes before they expire */
    CHECK_INT(dr_aws_refresh_delay_ms(now + 60 * min, now), 55 * min);
    /* 6 hours (IMDS) */
    CHECK_INT(dr_aws_refresh_delay_ms(now + 360 * min, now), 355 * min);
    /* short-lived: at 80% of what is left */
    CHECK_INT(dr_aws_refresh_delay_ms(now + 10 * min, now), 8 * min);
    CHECK_INT(dr_aws_refresh_delay_ms(now + 60000, now), 48000);
    /* about to expire, or expired: soon, but not in a loop */
    CHECK_INT(dr_aws_refresh_delay_ms(now + 500, now), 1000);
    CHECK_INT(dr_aws_refresh_delay_ms(now - 5000, now), 1000);
}
