/*
 * Proof that the sanitizer build really catches memory errors: the runner
 * calls this with --sanitizer-selftest and expects AddressSanitizer to abort
 * with a heap-buffer-overflow report. It is not one of the normal tests.
 */
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

int dt_sanitizer_selftest(void)
{
    char *p = malloc(16);
    volatile int i = 16;
    p[i] = 'x'; /* one past the end */
    printf("sanitizer did not fire\n");
    free(p);
    return 0;
}
