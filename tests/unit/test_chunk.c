#include <string.h>

#include "../../src/agent.h"
#include "drover/plugin.h"
#include "test.h"

static int acked;
static bool acked_delivered;

static void on_ack(void *ctx, uint64_t token, bool delivered)
{
    (void)ctx;
    acked = (int)token;
    acked_delivered = delivered;
}

/* A chunk made for one short read holds little more than the read. */
void test_chunk_small_is_small(void)
{
    dr_chunk *c = dr_chunk_new(NULL, 120);
    char *p = dr_chunk_alloc(c, 120);
    CHECK(p != NULL);
    dr_record *r = dr_chunk_add(c);
    r->msg = p;
    r->msg_len = 120;
    CHECK(c->mem < 1024);
    dr_chunk_discard(c);
}

void test_chunk_arena(void)
{
    dr_chunk *c = dr_chunk_new(NULL, 100);
    CHECK(c != NULL);
    char *big = dr_chunk_alloc(c, 100000);
    CHECK(big != NULL);
    memset(big, 'x', 100000);
    for (int i = 0; i < 1000; i++) {
        dr_record *r = dr_chunk_add(c);
        char *m = dr_chunk_alloc(c, 16);
        memcpy(m, "hello", 5);
        r->msg = m;
        r->msg_len = 5;
    }
    CHECK_INT(c->nrecs, 1000);
    CHECK_INT(dr_chunk_payload_bytes(c), 5000);
    CHECK(((uintptr_t)dr_chunk_alloc(c, 3) & 7) == 0);
    size_t before = c->mem;
    dr_chunk_adopt(c, strdup("adopted"), 8);
    CHECK(c->mem >= before + 8);
    /* the chunk's memory covers its text, records and blocks */
    CHECK(c->mem >= 100000 + 1000 * 16 + 1000 * sizeof(dr_record));
    dr_chunk_set_ack(c, on_ack, NULL, 42);
    dr_chunk_retain(c);
    dr_chunk_release(c);
    CHECK_INT(acked, 0);
    dr_chunk_release(c);
    CHECK_INT(acked, 42);
    CHECK(acked_delivered);
}
