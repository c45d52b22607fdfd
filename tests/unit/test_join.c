#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/inputs/tail/format.h"
#include "drover/plugin.h"
#include "json.h"
#include "test.h"

enum { OUT = DR_STREAM_STDOUT, ERR = DR_STREAM_STDERR };

static int64_t ts(const char *s)
{
    int64_t ns = -1;
    CHECK_INT(dr_parse_rfc3339(s, strlen(s), &ns), 0);
    return ns;
}

/* Pushes one piece; the time of a piece is its offset, to tell them apart. */
static void push_n(dr_joiner *j, const char *msg, size_t len, uint8_t stream, bool partial,
                   uint64_t offset, int64_t now, dr_chunk *c, dr_join_stats *st)
{
    dr_line ln = {.time_ns = (int64_t)offset * 1000,
                  .stream = stream,
                  .partial = partial,
                  .msg = msg,
                  .msg_len = (uint32_t)len};
    CHECK_INT(dr_join_push(j, &ln, offset, now, c, st), 0);
}

static void push(dr_joiner *j, const char *msg, uint8_t stream, bool partial, uint64_t offset,
                 int64_t now, dr_chunk *c, dr_join_stats *st)
{
    push_n(j, msg, strlen(msg), stream, partial, offset, now, c, st);
}

static void check_rec_n(const dr_chunk *c, uint32_t i, const char *msg, size_t len, uint8_t stream,
                        uint8_t flags, int line)
{
    if (!dt_check(i < c->nrecs, __FILE__, line, "record exists"))
        return;
    const dr_record *r = &c->recs[i];
    dt_check_mem(r->msg, r->msg_len, msg, len, __FILE__, line, "msg");
    dt_check_int(r->stream, stream, __FILE__, line, "stream");
    dt_check_int(r->flags, flags, __FILE__, line, "flags");
}

#define REC(c, i, msg, stream, flags) check_rec_n(c, i, msg, strlen(msg), stream, flags, __LINE__)

/* ---- fixtures --------------------------------------------------------------- */

/* Parses every line of `text` with the format's parser and joins them. The
 * records point into text, which must outlive the chunk. */
static void join_text(char *text, size_t len, dr_log_format fmt, dr_joiner *j, dr_chunk *c,
                      dr_join_stats *st)
{
    size_t off = 0;
    while (off < len) {
        char *line = text + off;
        char *nl = memchr(line, '\n', len - off);
        size_t n = nl ? (size_t)(nl - line) : len - off;
        dr_line ln;
        int rc = fmt == DR_FMT_CRI ? dr_cri_parse(line, n, &ln) : dr_docker_parse(line, n, &ln);
        CHECK_INT(rc, 0);
        if (rc == 0)
            CHECK_INT(dr_join_push(j, &ln, off, 0, c, st), 0);
        off += n + 1;
    }
}

void test_join_cri_fixture(void)
{
    size_t len;
    char *text =
        dt_read_file(dt_fixture("container-logs/cri/fluent-bit-cri-partial-P-F.log"), &len);
    CHECK(text != NULL);
    if (!text)
        return;
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1 << 20, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    join_text(text, len, DR_FMT_CRI, &j, c, &st);

    static const struct {
        const char *msg;
        uint8_t stream;
    } want[] = {
        {"1a. some multiline log", OUT},
        {"1b. some multiline log", ERR},
        {"2a. another multiline log", OUT},
        {"2b. another multiline log", ERR},
        {"3a. non multiline 1", OUT},
        {"4a. non multiline 2", OUT},
        {"3b. non multiline 1", ERR},
        {"4b. non multiline 2", ERR},
        {"first message", OUT},
        {"second message", OUT},
        {"third message", OUT},
        {"[DEBUG] 1 start multiline - ", OUT},
        {"1 cont A", OUT},
        {"[DEBUG] 2 start multiline - ", OUT},
        {"2 cont B", OUT},
    };
    CHECK_INT(c->nrecs, sizeof want / sizeof want[0]);
    for (uint32_t i = 0; i < c->nrecs && i < sizeof want / sizeof want[0]; i++)
        REC(c, i, want[i].msg, want[i].stream, 0);
    /* A joined record has the time of its first piece. */
    CHECK_INT(c->recs[0].time_ns, ts("2019-05-07T18:57:50.904275087+00:00"));
    CHECK_INT(c->recs[3].time_ns, ts("2019-05-07T18:57:53.904275090+00:00"));
    CHECK_INT(c->recs[14].time_ns, ts("2021-05-17T17:35:01.184747208Z"));
    CHECK_INT(dr_join_pending_offset(&j), UINT64_MAX);
    CHECK_INT(dr_join_pending_count(&j), 0);
    CHECK_INT(st.split + st.truncated + st.timeouts, 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
    free(text);
}

/* Joins a docker fixture and compares the records with the lines of its
 * .expected.out (docker lines themselves). */
static void check_docker_fixture(const char *name)
{
    char path[256];
    size_t len, want_len;
    snprintf(path, sizeof path, "container-logs/docker-json/%s.log", name);
    char *text = dt_read_file(dt_fixture(path), &len);
    snprintf(path, sizeof path, "container-logs/docker-json/%s.expected.out", name);
    char *want = dt_read_file(dt_fixture(path), &want_len);
    CHECK(text && want);
    if (!text || !want) {
        free(text);
        free(want);
        return;
    }

    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1 << 20, DR_LONG_SPLIT);
    dr_chunk *got = dr_chunk_new(NULL, 0), *exp = dr_chunk_new(NULL, 0);
    join_text(text, len, DR_FMT_DOCKER, &j, got, &st);
    join_text(want, want_len, DR_FMT_DOCKER, &j, exp, &st); /* all whole lines */

    CHECK(exp->nrecs > 0);
    CHECK_INT(got->nrecs, exp->nrecs);
    for (uint32_t i = 0; i < got->nrecs && i < exp->nrecs; i++) {
        CHECK_MEM(got->recs[i].msg, got->recs[i].msg_len, exp->recs[i].msg, exp->recs[i].msg_len);
        CHECK_INT(got->recs[i].stream, DR_STREAM_STDOUT);
        CHECK_INT(got->recs[i].time_ns, 0); /* the fixtures have no "time" */
    }
    CHECK_INT(dr_join_pending_count(&j), 0);

    dr_chunk_discard(got);
    dr_chunk_discard(exp);
    dr_join_free(&j);
    free(text);
    free(want);
}

void test_join_docker_fixtures(void)
{
    check_docker_fixture("fluent-bit-tail-dockermode_splitted_line");
    check_docker_fixture("fluent-bit-tail-dockermode");
}

/* ---- joining -------------------------------------------------------------------- */

void test_join_interleaved_streams(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1000, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    push(&j, "out-1 ", OUT, true, 0, 0, c, &st);
    push(&j, "err-1 ", ERR, true, 10, 0, c, &st);
    push(&j, "out-2 ", OUT, true, 20, 0, c, &st);
    CHECK_INT(dr_join_pending_count(&j), 2);
    push(&j, "err whole", ERR, false, 30, 0, c, &st); /* ends the stderr record */
    push(&j, "out-3", OUT, false, 40, 0, c, &st);
    push(&j, "out whole", OUT, false, 50, 0, c, &st);

    CHECK_INT(c->nrecs, 3);
    REC(c, 0, "err-1 err whole", ERR, 0);
    REC(c, 1, "out-1 out-2 out-3", OUT, 0);
    REC(c, 2, "out whole", OUT, 0);
    CHECK_INT(c->recs[0].time_ns, 10 * 1000);
    CHECK_INT(c->recs[1].time_ns, 0);
    CHECK_INT(c->recs[2].time_ns, 50 * 1000);
    CHECK_INT(dr_join_pending_count(&j), 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_zero_copy(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1000, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    const char *whole = "whole line";
    push(&j, whole, OUT, false, 0, 0, c, &st);
    CHECK(c->nrecs == 1 && c->recs[0].msg == whole);

    /* A joined record is a copy: the pieces' lines may be gone by now. */
    char piece[] = "abc";
    push(&j, piece, OUT, true, 20, 0, c, &st);
    memcpy(piece, "XXX", 3);
    push(&j, "def", OUT, false, 30, 0, c, &st);
    CHECK_INT(c->nrecs, 2);
    REC(c, 1, "abcdef", OUT, 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_binary_and_empty(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1000, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    push_n(&j, "", 0, OUT, false, 0, 0, c, &st); /* an empty line is a record */
    push_n(&j, "a\0\xff", 3, OUT, true, 10, 0, c, &st);
    push_n(&j, "", 0, OUT, true, 20, 0, c, &st);
    push_n(&j, "\xc3\0", 2, OUT, false, 30, 0, c, &st);
    push_n(&j, "", 0, ERR, true, 40, 0, c, &st); /* empty pieces, joined: empty */
    push_n(&j, "", 0, ERR, false, 50, 0, c, &st);

    CHECK_INT(c->nrecs, 3);
    check_rec_n(c, 0, "", 0, OUT, 0, __LINE__);
    check_rec_n(c, 1, "a\0\xff\xc3\0", 5, OUT, 0, __LINE__);
    check_rec_n(c, 2, "", 0, ERR, 0, __LINE__);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_timeout(void)
{
    const int64_t sec = 1000000000;
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1000, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    CHECK_INT(dr_join_oldest_mono(&j), INT64_MAX);
    push(&j, "never ", OUT, true, 100, 5 * sec, c, &st);
    push(&j, "finished", OUT, true, 200, 6 * sec, c, &st);
    CHECK_INT(dr_join_oldest_mono(&j), 5 * sec);
    CHECK_INT(dr_join_pending_offset(&j), 100);

    /* Not before the timeout has passed since the first piece. */
    CHECK_INT(dr_join_flush(&j, 5 * sec + 2 * sec - 1, 2 * sec, c, &st), 0);
    CHECK_INT(c->nrecs, 0);
    CHECK_INT(dr_join_pending_count(&j), 1);

    CHECK_INT(dr_join_flush(&j, 7 * sec, 2 * sec, c, &st), 1);
    CHECK_INT(c->nrecs, 1);
    REC(c, 0, "never finished", OUT, DR_REC_TIMEOUT);
    CHECK_INT(c->recs[0].time_ns, 100 * 1000);
    CHECK_INT(st.timeouts, 1);
    CHECK_INT(dr_join_pending_count(&j), 0);
    CHECK_INT(dr_join_pending_offset(&j), UINT64_MAX);
    CHECK_INT(dr_join_oldest_mono(&j), INT64_MAX);

    /* The late final piece is a record of its own. */
    push(&j, "late end", OUT, false, 300, 8 * sec, c, &st);
    CHECK_INT(c->nrecs, 2);
    REC(c, 1, "late end", OUT, 0);

    /* A negative timeout flushes everything, whatever its age. */
    push(&j, "a", OUT, true, 400, 9 * sec, c, &st);
    push(&j, "b", ERR, true, 500, 9 * sec, c, &st);
    CHECK_INT(dr_join_flush(&j, 9 * sec, -1, c, &st), 2);
    CHECK_INT(c->nrecs, 4);
    REC(c, 2, "a", OUT, DR_REC_TIMEOUT);
    REC(c, 3, "b", ERR, DR_REC_TIMEOUT);
    CHECK_INT(st.timeouts, 3);
    CHECK_INT(dr_join_flush(&j, 9 * sec, -1, c, &st), 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

/* ---- long records ---------------------------------------------------------------- */

void test_join_split_whole_line(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 10, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    const char *line = "0123456789abcdefghijKLMNO";
    push(&j, line, ERR, false, 0, 0, c, &st);
    CHECK_INT(c->nrecs, 3);
    REC(c, 0, "0123456789", ERR, DR_REC_SPLIT);
    REC(c, 1, "abcdefghij", ERR, DR_REC_SPLIT);
    REC(c, 2, "KLMNO", ERR, DR_REC_SPLIT);
    CHECK(c->recs[1].msg == line + 10); /* still no copy */
    CHECK_INT(st.split, 1);

    /* Exactly max is not too long; twice max is two pieces, no empty third. */
    push(&j, "0123456789", OUT, false, 30, 0, c, &st);
    REC(c, 3, "0123456789", OUT, 0);
    push(&j, "0123456789abcdefghij", OUT, false, 40, 0, c, &st);
    CHECK_INT(c->nrecs, 6);
    REC(c, 4, "0123456789", OUT, DR_REC_SPLIT);
    REC(c, 5, "abcdefghij", OUT, DR_REC_SPLIT);
    CHECK_INT(st.split, 2);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_split_pieces(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 10, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    push(&j, "abcdef", OUT, true, 0, 0, c, &st);
    CHECK_INT(c->nrecs, 0);
    CHECK_INT(dr_join_pending_offset(&j), 0);

    /* Over max: the first 10 bytes go out, "kl" of this line stays behind.
     * The checkpoint may pass the first line now, not this one. */
    push(&j, "ghijkl", OUT, true, 100, 0, c, &st);
    CHECK_INT(c->nrecs, 1);
    REC(c, 0, "abcdefghij", OUT, DR_REC_SPLIT);
    CHECK_INT(dr_join_pending_offset(&j), 100);
    CHECK(j.s[OUT].cap <= 10);

    /* The final piece overflows again, then ends the record: its tail is a
     * piece too. All pieces carry the time of the first. */
    push(&j, "mnopqrstuvwxyz", OUT, false, 200, 0, c, &st);
    CHECK_INT(c->nrecs, 3);
    REC(c, 1, "klmnopqrst", OUT, DR_REC_SPLIT);
    REC(c, 2, "uvwxyz", OUT, DR_REC_SPLIT);
    CHECK_INT(c->recs[2].time_ns, 0);
    CHECK_INT(st.split, 1);
    CHECK_INT(dr_join_pending_offset(&j), UINT64_MAX);

    /* A record of exactly max bytes from pieces is whole. */
    push(&j, "01234", OUT, true, 300, 0, c, &st);
    push(&j, "56789", OUT, true, 310, 0, c, &st);
    push(&j, "", OUT, false, 320, 0, c, &st);
    CHECK_INT(c->nrecs, 4);
    REC(c, 3, "0123456789", OUT, 0);

    /* Exactly twice max from pieces: two pieces, no empty third. */
    push(&j, "01234", OUT, true, 400, 0, c, &st);
    push(&j, "56789", OUT, true, 410, 0, c, &st);
    push(&j, "abcdefghij", OUT, true, 420, 0, c, &st);
    CHECK_INT(c->nrecs, 5);
    REC(c, 4, "0123456789", OUT, DR_REC_SPLIT);
    CHECK_INT(dr_join_pending_offset(&j), 420);
    push(&j, "", OUT, false, 430, 0, c, &st);
    CHECK_INT(c->nrecs, 6);
    REC(c, 5, "abcdefghij", OUT, DR_REC_SPLIT);
    CHECK_INT(st.split, 2);

    /* A split record that times out is flagged both ways. */
    push(&j, "0123456789abc", ERR, true, 500, 0, c, &st);
    CHECK_INT(dr_join_flush(&j, 1, 0, c, &st), 1);
    CHECK_INT(c->nrecs, 8);
    REC(c, 6, "0123456789", ERR, DR_REC_SPLIT);
    REC(c, 7, "abc", ERR, DR_REC_SPLIT | DR_REC_TIMEOUT);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_truncate(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 10, DR_LONG_TRUNCATE);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    push(&j, "0123456789abcdefghijKLMNO", ERR, false, 0, 0, c, &st);
    CHECK_INT(c->nrecs, 1);
    REC(c, 0, "0123456789", ERR, DR_REC_TRUNCATED);
    CHECK_INT(st.truncated, 1);

    push(&j, "abcdef", OUT, true, 100, 0, c, &st);
    push(&j, "ghijkl", OUT, true, 200, 0, c, &st);
    CHECK_INT(c->nrecs, 2);
    REC(c, 1, "abcdefghij", OUT, DR_REC_TRUNCATED);
    /* The rest is dropped; a restart from here repeats the truncated
     * record rather than emitting the dropped rest as a record. */
    CHECK_INT(dr_join_pending_offset(&j), 100);
    push(&j, "mnopqrstuvwxyz", OUT, true, 300, 0, c, &st);
    CHECK_INT(j.s[OUT].len, 0); /* nothing kept of what is dropped */
    push(&j, "end", OUT, false, 400, 0, c, &st);
    CHECK_INT(c->nrecs, 2);
    CHECK_INT(st.truncated, 2);
    CHECK_INT(dr_join_pending_offset(&j), UINT64_MAX);

    /* The next record is whole again. */
    push(&j, "next", OUT, false, 500, 0, c, &st);
    CHECK_INT(c->nrecs, 3);
    REC(c, 2, "next", OUT, 0);

    /* A timeout while dropping ends the record without another one. */
    push(&j, "0123456789abc", OUT, true, 600, 0, c, &st);
    CHECK_INT(c->nrecs, 4);
    CHECK_INT(dr_join_flush(&j, 10, 0, c, &st), 0);
    CHECK_INT(c->nrecs, 4);
    CHECK_INT(dr_join_pending_count(&j), 0);
    CHECK_INT(st.truncated, 3);
    CHECK_INT(st.split, 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_pending_offset_both_streams(void)
{
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, 1000, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    CHECK_INT(dr_join_pending_offset(&j), UINT64_MAX);
    push(&j, "err ", ERR, true, 50, 1, c, &st);
    push(&j, "out ", OUT, true, 70, 2, c, &st);
    push(&j, "whole", OUT, false, 80, 3, c, &st); /* completes stdout */
    CHECK_INT(dr_join_pending_offset(&j), 50);
    push(&j, "out again ", OUT, true, 90, 4, c, &st);
    CHECK_INT(dr_join_pending_offset(&j), 50);
    CHECK_INT(dr_join_oldest_mono(&j), 1);
    push(&j, "end", ERR, false, 100, 5, c, &st);
    CHECK_INT(dr_join_pending_offset(&j), 90);
    CHECK_INT(dr_join_oldest_mono(&j), 4);

    /* A reset forgets it all (the file was replaced). */
    dr_join_reset(&j);
    CHECK_INT(dr_join_pending_offset(&j), UINT64_MAX);
    CHECK_INT(dr_join_pending_count(&j), 0);
    push(&j, "fresh", OUT, false, 0, 6, c, &st);
    REC(c, c->nrecs - 1, "fresh", OUT, 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
}

void test_join_huge_record(void)
{
    /* 5 MiB in 16 KiB docker pieces, at max 1 MiB: five split pieces, and
     * the pending buffer never above the maximum. */
    const size_t max = 1 << 20, piece = 16 << 10, total = 5 << 20;
    char *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (char)('a' + i % 23);
    dr_joiner j;
    dr_join_stats st = {0};
    dr_join_init(&j, max, DR_LONG_SPLIT);
    dr_chunk *c = dr_chunk_new(NULL, 0);

    size_t biggest = 0;
    for (size_t off = 0; off < total; off += piece) {
        bool last = off + piece >= total;
        push_n(&j, data + off, piece, OUT, !last, off, 0, c, &st);
        if (j.s[OUT].cap > biggest)
            biggest = j.s[OUT].cap;
    }
    CHECK(biggest <= max);
    CHECK_INT(c->nrecs, 5);
    for (uint32_t i = 0; i < c->nrecs; i++)
        check_rec_n(c, i, data + i * max, max, OUT, DR_REC_SPLIT, __LINE__);
    CHECK_INT(st.split, 1);
    CHECK_INT(dr_join_pending_count(&j), 0);

    dr_chunk_discard(c);
    dr_join_free(&j);
    free(data);
}
