#include <stdio.h>
/* Label sets: copies, lookups, canonical order, hashing, formatting. */
#include <string.h>

#include "drover/plugin.h"
#include "labels.h"
#include "test.h"

void test_labels_set_get_del(void)
{
    dr_labels ls;
    dr_labels_init(&ls);
    CHECK_INT(dr_labels_sets(&ls, "job", "node"), 0);
    CHECK_INT(dr_labels_sets(&ls, "instance", "a:9100"), 0);
    CHECK_INT(dr_labels_sets(&ls, "job", "kubelet"), 0); /* replaces */
    CHECK_INT(ls.n, 2);
    size_t n;
    const char *v = dr_labels_value(&ls, "job", 3, &n);
    CHECK_MEM(v, n, "kubelet", 7);
    CHECK_INT(dr_labels_sets(&ls, "job", ""), 0); /* empty removes */
    CHECK(dr_labels_gets(&ls, "job") == NULL);
    CHECK_INT(ls.n, 1);
    v = dr_labels_value(&ls, "absent", 6, &n);
    CHECK_INT(n, 0);
    CHECK_STR(v, "");
    dr_labels_del(&ls, "instance", 8);
    CHECK_INT(ls.n, 0);
    dr_labels_free(&ls);
}

void test_labels_canon_sorts_and_finds_dups(void)
{
    dr_labels ls;
    dr_labels_init(&ls);
    /* references, not copies: the literals outlive the set */
    dr_labels_add(&ls, "b", 1, "2", 1);
    dr_labels_add(&ls, "__name__", 8, "up", 2);
    dr_labels_add(&ls, "empty", 5, "", 0);
    dr_labels_add(&ls, "a", 1, "1", 1);
    dr_labels_add(&ls, "ab", 2, "3", 1);
    CHECK_INT(dr_labels_canon(&ls), 0);
    CHECK_INT(ls.n, 4);
    const char *want[] = {"__name__", "a", "ab", "b"};
    for (int i = 0; i < 4; i++)
        CHECK_MEM(ls.v[i].name, ls.v[i].name_len, want[i], strlen(want[i]));
    char out[128];
    CHECK_INT(dr_labels_format(&ls, out, sizeof out), strlen("up{a=\"1\",ab=\"3\",b=\"2\"}"));
    CHECK_STR(out, "up{a=\"1\",ab=\"3\",b=\"2\"}");
    dr_labels_add(&ls, "a", 1, "again", 5);
    CHECK_INT(dr_labels_canon(&ls), DR_EINVAL);
    dr_labels_free(&ls);
}

void test_labels_hash_and_equal(void)
{
    dr_labels x, y;
    dr_labels_init(&x);
    dr_labels_init(&y);
    dr_labels_add(&x, "a", 1, "bc", 2);
    dr_labels_add(&y, "ab", 2, "c", 1);
    CHECK(dr_labels_hash(&x) != dr_labels_hash(&y));
    CHECK(!dr_labels_equal(&x, &y));
    CHECK_INT(dr_labels_copy(&y, &x), 0);
    CHECK(dr_labels_equal(&x, &y));
    CHECK(dr_labels_hash(&x) == dr_labels_hash(&y));
    /* the copy owns its bytes */
    CHECK(y.v[0].value != x.v[0].value);
    dr_labels_free(&x);
    dr_labels_free(&y);
}

void test_labels_pool_survives_growth(void)
{
    /* Many copies: the pool grows in blocks that never move, so earlier
     * pointers stay valid. */
    dr_labels ls;
    dr_labels_init(&ls);
    char name[32], value[64];
    for (int i = 0; i < 500; i++) {
        int nl = snprintf(name, sizeof name, "label_%03d", i);
        int vl = snprintf(value, sizeof value, "value-%d-xxxxxxxxxxxxxxxxxxxxxxxx", i);
        CHECK_INT(dr_labels_add_copy(&ls, name, (size_t)nl, value, (size_t)vl), 0);
    }
    CHECK_INT(ls.n, 500);
    size_t n;
    const char *v = dr_labels_value(&ls, "label_007", 9, &n);
    CHECK_MEM(v, n, "value-7-xxxxxxxxxxxxxxxxxxxxxxxx", strlen("value-7-xxxxxxxxxxxxxxxxxxxxxxxx"));
    dr_labels_reset(&ls);
    CHECK_INT(ls.n, 0);
    CHECK_INT(dr_labels_sets(&ls, "after", "reset"), 0);
    CHECK(dr_labels_gets(&ls, "after") != NULL);
    dr_labels_free(&ls);
}

void test_labels_bounds(void)
{
    dr_labels ls;
    dr_labels_init(&ls);
    int rc = 0;
    for (unsigned i = 0; i <= DR_LABELS_MAX && rc == 0; i++)
        rc = dr_labels_add(&ls, "n", 1, "v", 1);
    CHECK_INT(rc, DR_EINVAL);
    CHECK_INT(ls.n, DR_LABELS_MAX);
    CHECK_INT(dr_labels_add(&ls, "n", 1, "v", (size_t)DR_LABELS_MAX_BYTES + 1), DR_EINVAL);
    dr_labels_free(&ls);
}

void test_labels_legacy_names(void)
{
    CHECK(dr_label_name_is_legacy("job", 3));
    CHECK(dr_label_name_is_legacy("_a1", 3));
    CHECK(!dr_label_name_is_legacy("1a", 2));
    CHECK(!dr_label_name_is_legacy("a:b", 3));
    CHECK(!dr_label_name_is_legacy("", 0));
    CHECK(dr_metric_name_is_legacy("a:b", 3));
    CHECK(dr_metric_name_is_legacy(":x", 2));
    CHECK(!dr_metric_name_is_legacy("a.b", 3));
}
