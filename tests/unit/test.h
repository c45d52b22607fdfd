/*
 * A tiny unit-test harness. A test is a function; CHECK records a failure
 * with its file and line and lets the test continue. tests/unit/main.c lists
 * every test and prints "N passed, N failed" at the end.
 */
#ifndef DROVER_TEST_H
#define DROVER_TEST_H

#include <stdbool.h>
#include <stddef.h>

bool dt_check(bool ok, const char *file, int line, const char *expr);
bool dt_check_str(const char *got, const char *want, const char *file, int line, const char *expr);
bool dt_check_int(long long got, long long want, const char *file, int line, const char *expr);
bool dt_check_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                  const char *file, int line, const char *expr);

#define CHECK(cond) dt_check((cond), __FILE__, __LINE__, #cond)
#define CHECK_STR(got, want) dt_check_str((got), (want), __FILE__, __LINE__, #got)
#define CHECK_INT(got, want)                                                                       \
    dt_check_int((long long)(got), (long long)(want), __FILE__, __LINE__, #got)
#define CHECK_MEM(got, glen, want, wlen)                                                           \
    dt_check_mem((got), (glen), (want), (wlen), __FILE__, __LINE__, #got)

/* Path of a file under ../shared/fixtures (DROVER_FIXTURES overrides the
 * directory). Returns a static buffer. */
const char *dt_fixture(const char *rel);
/* Reads a whole file (NUL-terminated, *len set); NULL if unreadable. Caller frees. */
char *dt_read_file(const char *path, size_t *len);
/* A fresh temporary directory for this test (removed at exit). */
const char *dt_tmpdir(void);

/* The errors of an agent made from this configuration with the checks of
 * --check-config, one per line; "" when it is accepted. `pipeline` is the
 * YAML after the agent section (inputs, filters, outputs); `agent_extra`
 * one more line of the agent section (such as "node_name: n1"), or NULL.
 * Returns a static buffer (config_harness.c). */
const char *dt_config_errors(const char *agent_extra, const char *pipeline);

#endif
