/*
 * Runs every unit test, or those whose name contains argv[1].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* Every test file declares its tests here. */
#define TEST(name) void name(void);
#include "tests.def"
#undef TEST

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
#define TEST(name) {#name, name},
#include "tests.def"
#undef TEST
};

static int cur_failures;
static char tmp_root[256];

bool dt_check(bool ok, const char *file, int line, const char *expr)
{
    if (!ok) {
        fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, expr);
        cur_failures++;
    }
    return ok;
}

bool dt_check_str(const char *got, const char *want, const char *file, int line, const char *expr)
{
    bool ok = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);
    if (!ok) {
        fprintf(stderr, "  FAIL %s:%d: %s is \"%s\", want \"%s\"\n", file, line, expr,
                got ? got : "(null)", want ? want : "(null)");
        cur_failures++;
    }
    return ok;
}

bool dt_check_int(long long got, long long want, const char *file, int line, const char *expr)
{
    if (got != want) {
        fprintf(stderr, "  FAIL %s:%d: %s is %lld, want %lld\n", file, line, expr, got, want);
        cur_failures++;
        return false;
    }
    return true;
}

bool dt_check_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                  const char *file, int line, const char *expr)
{
    if (got_len != want_len || (got_len && memcmp(got, want, got_len) != 0)) {
        fprintf(stderr, "  FAIL %s:%d: %s is \"%.*s\" (%zu bytes), want \"%.*s\" (%zu bytes)\n",
                file, line, expr, (int)(got_len > 200 ? 200 : got_len), (const char *)got, got_len,
                (int)(want_len > 200 ? 200 : want_len), (const char *)want, want_len);
        cur_failures++;
        return false;
    }
    return true;
}

const char *dt_fixture(const char *rel)
{
    static char path[1024];
    const char *dir = getenv("DROVER_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "../shared/fixtures", rel);
    return path;
}

char *dt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return p;
}

const char *dt_tmpdir(void)
{
    static char dir[300];
    static int seq;
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/drover-unit-XXXXXX");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    snprintf(dir, sizeof dir, "%s/%d", tmp_root, ++seq);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0)
        exit(2);
    return dir;
}

int dt_sanitizer_selftest(void);

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sanitizer-selftest") == 0)
        return dt_sanitizer_selftest();
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1]))
            continue;
        cur_failures = 0;
        tests[i].fn();
        if (cur_failures) {
            fprintf(stderr, "not ok %s\n", tests[i].name);
            failed++;
        } else {
            fprintf(stderr, "ok %s\n", tests[i].name);
            passed++;
        }
    }
    if (tmp_root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp_root);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
