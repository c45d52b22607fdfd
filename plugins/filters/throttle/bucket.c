/*
 * Token buckets (see bucket.h).
 *
 * Records are counted whole: one passes while the bucket holds a token. Bytes
 * are allowed to go into debt: a message passes while the bucket holds any
 * bytes at all and its whole size is then taken. Otherwise a message larger
 * than the bucket could never pass; with debt it passes, and the group's
 * following messages wait until the debt is paid, so the average stays at
 * the rate.
 */
#include "bucket.h"

dr_bucket_limits dr_bucket_limits_make(uint64_t records_per_sec, uint64_t bytes_per_sec,
                                       int64_t burst_ms)
{
    dr_bucket_limits l;
    double burst_s = (double)burst_ms / 1000.0;
    l.records_per_sec = (double)records_per_sec;
    l.bytes_per_sec = (double)bytes_per_sec;
    l.records_capacity = l.records_per_sec * burst_s;
    if (l.records_capacity < 1.0)
        l.records_capacity = 1.0;
    l.bytes_capacity = l.bytes_per_sec * burst_s;
    if (l.bytes_capacity < 1.0)
        l.bytes_capacity = 1.0;
    return l;
}

void dr_bucket_init(dr_token_bucket *b, const dr_bucket_limits *l, int64_t now_ns)
{
    b->records = l->records_capacity;
    b->bytes = l->bytes_capacity;
    b->last_ns = now_ns;
}

static double refill(double tokens, double rate, double capacity, int64_t elapsed_ns)
{
    tokens += rate * (double)elapsed_ns / 1e9;
    return tokens > capacity ? capacity : tokens;
}

bool dr_bucket_take(dr_token_bucket *b, const dr_bucket_limits *l, int64_t now_ns, uint64_t bytes)
{
    if (now_ns > b->last_ns) {
        int64_t elapsed = now_ns - b->last_ns;
        b->records = refill(b->records, l->records_per_sec, l->records_capacity, elapsed);
        b->bytes = refill(b->bytes, l->bytes_per_sec, l->bytes_capacity, elapsed);
        b->last_ns = now_ns;
    }
    bool records_ok = l->records_per_sec == 0 || b->records >= 1.0;
    bool bytes_ok = l->bytes_per_sec == 0 || b->bytes > 0;
    if (!records_ok || !bytes_ok)
        return false;
    if (l->records_per_sec > 0)
        b->records -= 1.0;
    if (l->bytes_per_sec > 0)
        b->bytes -= (double)bytes;
    return true;
}
