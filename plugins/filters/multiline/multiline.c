/*
 * multiline filter: joins the lines of one logical record (a stack trace,
 * continuation lines) into one record.
 *
 * Lines are grouped per source and stream: a source is one container's log
 * (the chunk's dr_meta), and stdout and stderr lines are never joined
 * together. The tail input has already joined CRI and docker partial
 * lines, so every record the filter sees is one whole line. detect.c says
 * what each line does to its group: start one, continue it, end it, or
 * stand alone.
 *
 * Within a chunk, a group is joined into its first record: the joined text
 * is made in the chunk's arena, the record keeps its time, and the other
 * lines are marked DR_REC_DROPPED. They are not drops (they live on in the
 * joined record): drover_filter_multiline_merged_lines_total counts them.
 *
 * Across chunks. A group still open at the end of a chunk may go on in the
 * next read, so it is held: its lines are copied into the source's buffer
 * and marked dropped in the chunk, and the filter keeps a reference to the
 * chunk (dr_chunk_retain). The chunk's acknowledgement, and so the tail
 * input's checkpoint, waits until the group is delivered. The group goes
 * out as a chunk of its own (dr_filter_emit), with the lines of later
 * chunks that continue it, when a line of its source starts another record
 * or stands alone, when it reaches max_lines or max_bytes, when
 * flush_timeout passes without a line from its source, when bounds on the
 * held groups say so, or when the agent stops. That chunk's
 * acknowledgement releases every chunk the group took lines from, marked
 * abandoned when it was not delivered: a checkpoint never passes a line
 * that has not been delivered, and a crash or a failed delivery loses
 * nothing (the lines are read again after a restart).
 *
 * Why not put the held lines in front of the next chunk's first line?
 * That chunk would then have to keep the earlier chunks' references until
 * its own acknowledgement, and if it also ended with a held group it could
 * not be released before that group went out, and so on: under a steady
 * stream of traces split across reads, an unbounded chain of chunks would
 * wait on each other. A chunk of its own per such group costs a little
 * more and keeps every wait short.
 *
 * A group the filter still holds when it is destroyed (it could not emit
 * it) is abandoned the same way.
 *
 * Memory: max_sources groups of at most max_lines lines and max_bytes
 * each, and max_held_bytes for all of them together, counting the text and
 * the chunks held; past a bound the groups of the sources idle longest go
 * out first.
 */
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "drover/plugin.h"

typedef struct ml_conf {
    int mode;
    char *start_pattern;
    char *continue_pattern;
    char *key;
    char *separator;
    int64_t flush_timeout_ms;
    int64_t max_lines;
    uint64_t max_bytes;
    int64_t max_sources;
    uint64_t max_held_bytes;
} ml_conf;

static const char *const mode_choices[] = {"auto", "java",   "go",    "python", "nodejs",
                                           "ruby", "csharp", "regex", NULL};

static const dr_option ml_options[] = {
    {"mode", DR_OPT_ENUM, offsetof(ml_conf, mode), "auto", 0, mode_choices, 0, 0,
     "How records begin and end. `java` (exceptions with their `at` frames, `Caused by:`, "
     "`... N more`), `go` (`panic:` and the goroutine dumps that follow), `python` "
     "(`Traceback (most recent call last):` to the exception line), `nodejs` (an `Error` "
     "line and its `at` frames, V8 and browser traces too), `ruby` (backtraces, Rails "
     "errors), `csharp` (.NET traces); `auto` all of these at once. Lines outside a trace "
     "stay records of their own and are not held back. `regex`: records begin at lines "
     "matching `start_pattern`."},
    {"start_pattern", DR_OPT_STRING, offsetof(ml_conf, start_pattern), NULL, 0, NULL, 0, 0,
     "mode regex: a line matching this PCRE2 pattern starts a new record; any other line "
     "continues the record before it (or starts one when there is none)."},
    {"continue_pattern", DR_OPT_STRING, offsetof(ml_conf, continue_pattern), NULL, 0, NULL, 0, 0,
     "mode regex, optional: only lines matching this pattern continue a record; a line "
     "matching neither pattern is a record of its own."},
    {"key", DR_OPT_STRING, offsetof(ml_conf, key), "message", 0, NULL, 0, 0,
     "The record key holding the line: `message`, or a field a parser set (a JSON log's "
     "`log`, say). Records without it (or where it is not a string) end the record before "
     "them and pass unchanged."},
    {"separator", DR_OPT_STRING, offsetof(ml_conf, separator), NULL, 0, NULL, 0, 0,
     "Put between joined lines. Unset: a newline."},
    {"flush_timeout", DR_OPT_DURATION, offsetof(ml_conf, flush_timeout_ms), "1s", 0, NULL, 1,
     3600000,
     "A record that may go on is held until the next line of its source (container and "
     "stream) says whether it does, at most this long after that source's last line."},
    {"max_lines", DR_OPT_INT, offsetof(ml_conf, max_lines), "1000", 0, NULL, 1, 1000000,
     "Most lines in one record; a record that reaches it is emitted and the next line starts "
     "a new one."},
    {"max_bytes", DR_OPT_SIZE, offsetof(ml_conf, max_bytes), "1MiB", 0, NULL, 64, 256 << 20,
     "Longest joined record (separators included); a line that would make it longer starts "
     "a new record. A single longer line stays whole."},
    {"max_sources", DR_OPT_INT, offsetof(ml_conf, max_sources), "10000", 0, NULL, 1, 1000000,
     "Most sources (container streams) with a record held at once; past it the record of the "
     "source idle longest is emitted."},
    {"max_held_bytes", DR_OPT_SIZE, offsetof(ml_conf, max_held_bytes), "64MiB", 0, NULL, 65536,
     (int64_t)1 << 40,
     "Memory all held records may take together: their text and the chunks of records they "
     "keep waiting. Past it the records of the sources idle longest are emitted."},
    {0},
};

/* The lines a source holds from earlier chunks: a group that may go on. */
typedef struct ml_group {
    char *text; /* the lines joined so far, separators included */
    size_t len, cap;
    uint32_t nlines;
    /* of its first line */
    int64_t time_ns;
    uint8_t flags;
    dr_field *fields; /* a copy in one allocation with their strings */
    uint16_t nfields;
    /* the chunks its lines came from, one reference each */
    dr_chunk **chunks;
    uint32_t nchunks, chunks_cap;
    size_t mem; /* counted in held_bytes */
} ml_group;

/* A container's stream with a held group, or inside a trace. */
typedef struct ml_source {
    struct ml_source *hash_next;
    struct ml_source *older, *newer; /* by last line */
    const void *id;                  /* the chunk's meta, or its input when it has none */
    dr_meta *meta;                   /* a reference, so that id names no other source */
    uint8_t stream;
    uint8_t state;   /* detect.c's */
    int64_t last_ns; /* monotonic, its last line */
    ml_group held;
} ml_source;

typedef struct ml_state {
    dr_instance *inst;
    ml_conf *conf;
    ml_detector *det;
    const char *sep;
    size_t sep_len;
    size_t key_len;
    bool key_is_message;
    ml_source **buckets;
    size_t nbuckets; /* a power of two */
    ml_source *oldest, *newest;
    size_t nsources;
    size_t held_bytes;
    uv_timer_t timer;
    bool timer_open;
    bool stopped;
    dr_counter *merged, *split;
    dr_gauge *g_held;
} ml_state;

/* Flags a joined record takes from any of its lines. */
#define ML_CARRIED_FLAGS (DR_REC_SPLIT | DR_REC_TRUNCATED | DR_REC_TIMEOUT | DR_REC_MALFORMED)

/* ---- sources ------------------------------------------------------------- */

static size_t source_hash(const ml_state *st, const void *id, uint8_t stream)
{
    uint64_t x = (uint64_t)(uintptr_t)id ^ stream;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (st->nbuckets - 1);
}

static ml_source *source_find(ml_state *st, const void *id, uint8_t stream)
{
    for (ml_source *s = st->buckets[source_hash(st, id, stream)]; s; s = s->hash_next)
        if (s->id == id && s->stream == stream)
            return s;
    return NULL;
}

static void list_unlink(ml_state *st, ml_source *s)
{
    if (s->older)
        s->older->newer = s->newer;
    else
        st->oldest = s->newer;
    if (s->newer)
        s->newer->older = s->older;
    else
        st->newest = s->older;
    s->older = s->newer = NULL;
}

static void list_append(ml_state *st, ml_source *s)
{
    s->older = st->newest;
    s->newer = NULL;
    if (st->newest)
        st->newest->newer = s;
    else
        st->oldest = s;
    st->newest = s;
}

/* The source had a line now: it becomes the newest. */
static void source_touch(ml_state *st, ml_source *s, int64_t now)
{
    s->last_ns = now;
    if (st->newest != s) {
        list_unlink(st, s);
        list_append(st, s);
    }
}

static ml_source *source_add(ml_state *st, const dr_chunk *c, uint8_t stream)
{
    ml_source *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->id = c->meta ? (const void *)c->meta : (const void *)c->input;
    s->meta = c->meta ? dr_meta_ref(c->meta) : NULL;
    s->stream = stream;
    s->last_ns = dr_mono_ns();
    size_t h = source_hash(st, s->id, stream);
    s->hash_next = st->buckets[h];
    st->buckets[h] = s;
    list_append(st, s);
    st->nsources++;
    return s;
}

/* ---- held groups --------------------------------------------------------- */

static size_t group_mem(const ml_group *g)
{
    size_t mem = g->cap + g->chunks_cap * sizeof *g->chunks;
    for (uint16_t i = 0; i < g->nfields; i++)
        mem += sizeof *g->fields + g->fields[i].key_len + g->fields[i].val_len;
    for (uint32_t i = 0; i < g->nchunks; i++)
        mem += g->chunks[i]->mem;
    return mem;
}

/* Brings the instance's total in line with what the group holds now. */
static void group_account(ml_state *st, ml_group *g)
{
    size_t mem = group_mem(g);
    st->held_bytes = st->held_bytes - g->mem + mem;
    g->mem = mem;
}

/* Copies the first line's fields: the joined record carries them. */
static bool group_copy_fields(ml_group *g, const dr_record *r)
{
    if (r->nfields == 0)
        return true;
    size_t size = r->nfields * sizeof(dr_field);
    for (uint16_t i = 0; i < r->nfields; i++)
        size += (size_t)r->fields[i].key_len + r->fields[i].val_len;
    dr_field *f = malloc(size);
    if (!f)
        return false;
    char *p = (char *)(f + r->nfields);
    for (uint16_t i = 0; i < r->nfields; i++) {
        f[i] = r->fields[i];
        memcpy(p, r->fields[i].key, r->fields[i].key_len);
        f[i].key = p;
        p += r->fields[i].key_len;
        memcpy(p, r->fields[i].val, r->fields[i].val_len);
        f[i].val = p;
        p += r->fields[i].val_len;
    }
    g->fields = f;
    g->nfields = r->nfields;
    return true;
}

/* Empties a group whose chunk references were handed on or released. */
static void group_clear(ml_state *st, ml_group *g)
{
    free(g->text);
    free(g->fields);
    free(g->chunks);
    st->held_bytes -= g->mem;
    memset(g, 0, sizeof *g);
}

static bool group_reserve(ml_group *g, size_t text_len)
{
    if (text_len > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < text_len)
            cap *= 2;
        char *t = realloc(g->text, cap);
        if (!t)
            return false;
        g->text = t;
        g->cap = cap;
    }
    if (g->nchunks == g->chunks_cap) {
        uint32_t cap = g->chunks_cap ? g->chunks_cap * 2 : 4;
        dr_chunk **c = realloc(g->chunks, cap * sizeof *c);
        if (!c)
            return false;
        g->chunks = c;
        g->chunks_cap = cap;
    }
    return true;
}

/* Lets go of the chunks a group took lines from, after its delivery or
 * instead of it (then they are read again after a restart). */
static void release_chunks(dr_chunk **chunks, uint32_t n, bool delivered)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!delivered)
            dr_chunk_abandon(chunks[i]);
        dr_chunk_release(chunks[i]);
    }
}

/* The acknowledgement of a chunk made from a held group. */
typedef struct ml_release {
    uint32_t n;
    dr_chunk *chunks[];
} ml_release;

static void on_group_done(void *ctx, uint64_t token, bool delivered)
{
    ml_release *rel = ctx;
    (void)token;
    release_chunks(rel->chunks, rel->n, delivered);
    free(rel);
}

/* ---- reading and writing lines ------------------------------------------- */

/* The line of a record: its key's value, when that is a string. */
static bool line_of(const ml_state *st, const dr_chunk *c, const dr_record *r, dr_value *v)
{
    if (st->key_is_message) {
        v->p = r->msg;
        v->len = r->msg_len;
        return true;
    }
    char tbuf[40];
    return dr_record_get(c, r, st->conf->key, st->key_len, v, tbuf) && v->type == DR_FIELD_STRING;
}

/* Sets the record's line to text[0..n), which lives in c's arena. */
static int set_line(const ml_state *st, dr_chunk *c, dr_record *r, const char *text, size_t n)
{
    if (n > UINT32_MAX)
        return DR_EINVAL;
    if (st->key_is_message) {
        r->msg = text;
        r->msg_len = (uint32_t)n;
        return 0;
    }
    return dr_record_set(c, r, st->conf->key, st->key_len, text, n, DR_FIELD_STRING);
}

/* ---- emitting a held group ----------------------------------------------- */

/* A chunk of one record: the held group. NULL when out of memory. */
static dr_chunk *group_chunk(ml_state *st, const ml_source *src)
{
    const ml_group *g = &src->held;
    const dr_chunk *from = g->chunks[0];
    dr_chunk *c = dr_chunk_new(from->input, g->len + 64);
    if (!c)
        return NULL;
    dr_chunk_set_meta(c, from->meta);
    dr_chunk_set_kube(c, from->kube);
    dr_record *r = dr_chunk_add(c);
    char *text = dr_chunk_alloc(c, g->len ? g->len : 1);
    if (!r || !text) {
        dr_chunk_discard(c);
        return NULL;
    }
    r->time_ns = g->time_ns;
    r->stream = src->stream;
    r->flags = g->flags;
    for (uint16_t i = 0; i < g->nfields; i++) {
        const dr_field *f = &g->fields[i];
        if (dr_record_set(c, r, f->key, f->key_len, f->val, f->val_len, f->type) < 0) {
            dr_chunk_discard(c);
            return NULL;
        }
    }
    memcpy(text, g->text, g->len);
    if (set_line(st, c, r, text, g->len) < 0) {
        dr_chunk_discard(c);
        return NULL;
    }
    return c;
}

/* Sends a source's held group down the pipeline as a chunk of its own,
 * whose acknowledgement releases the chunks the lines came from. */
static void emit_held(ml_state *st, ml_source *src)
{
    ml_group *g = &src->held;
    if (g->nlines == 0)
        return;
    dr_chunk *c = group_chunk(st, src);
    ml_release *rel = c ? malloc(sizeof *rel + g->nchunks * sizeof rel->chunks[0]) : NULL;
    if (!rel) {
        /* Cannot send it: its chunks go back to the source undelivered. */
        dr_log(st->inst, DR_LOG_ERROR,
               "out of memory emitting a joined record; its lines "
               "will be read again after a restart",
               "lines=%u", g->nlines);
        if (c)
            dr_chunk_discard(c);
        release_chunks(g->chunks, g->nchunks, false);
        group_clear(st, g);
        return;
    }
    rel->n = g->nchunks;
    memcpy(rel->chunks, g->chunks, g->nchunks * sizeof rel->chunks[0]);
    dr_chunk_set_ack(c, on_group_done, rel, 0);
    dr_counter_add(st->merged, g->nlines - 1);
    group_clear(st, g);
    dr_filter_emit(st->inst, c);
}

static void source_remove(ml_state *st, ml_source *s)
{
    ml_source **pp = &st->buckets[source_hash(st, s->id, s->stream)];
    while (*pp != s)
        pp = &(*pp)->hash_next;
    *pp = s->hash_next;
    list_unlink(st, s);
    st->nsources--;
    dr_meta_unref(s->meta);
    free(s);
}

/* The source's group goes out now and the source is forgotten. */
static void flush_source(ml_state *st, ml_source *s)
{
    emit_held(st, s);
    source_remove(st, s);
}

/* Emits the groups of the sources idle longest while the bounds are passed.
 * Called before a chunk is looked at, never during: every chunk a group
 * holds has then gone past this filter, so what is emitted now cannot
 * overtake the lines before it. */
static void enforce_bounds(ml_state *st)
{
    const ml_conf *conf = st->conf;
    while (st->oldest &&
           (st->nsources > (size_t)conf->max_sources || st->held_bytes > conf->max_held_bytes)) {
        dr_log(st->inst, DR_LOG_WARN, "too many records held; emitting the oldest",
               "sources=%zu held_bytes=%zu", st->nsources, st->held_bytes);
        flush_source(st, st->oldest);
    }
}

/* ---- one stream of one chunk --------------------------------------------- */

/* The group being built while one stream of a chunk is read: the source's
 * held lines (if any) followed by this chunk's lines first..last. */
typedef struct ml_pass {
    ml_state *st;
    dr_chunk *c;
    uint8_t stream;
    ml_source *src; /* NULL while the source has no entry */
    uint8_t state;
    bool open;
    uint32_t nlines; /* held ones included */
    size_t bytes;    /* the joined length so far */
    uint32_t first, last, nlocal;
    bool saw_line;
} ml_pass;

static bool has_held(const ml_pass *p)
{
    return p->src && p->src->held.nlines > 0;
}

/* Calls fn on each of this chunk's lines of the group, in order. */
typedef void (*line_fn)(ml_pass *p, dr_record *r, const dr_value *v, void *ctx);

static void for_each_local_line(ml_pass *p, line_fn fn, void *ctx)
{
    for (uint32_t i = p->first; p->nlocal && i <= p->last; i++) {
        dr_record *r = &p->c->recs[i];
        dr_value v;
        if (r->stream == p->stream && !(r->flags & DR_REC_DROPPED) && line_of(p->st, p->c, r, &v))
            fn(p, r, &v, ctx);
    }
}

/* Writes lines one after the other into buf, a separator between two. */
typedef struct ml_writer {
    char *buf;
    size_t len;
    uint32_t lines; /* written so far, to know when a separator goes first */
    uint8_t flags;
    dr_record *first;
} ml_writer;

static void write_line(ml_pass *p, dr_record *r, const dr_value *v, void *ctx)
{
    ml_writer *w = ctx;
    const ml_state *st = p->st;
    if (w->lines++ > 0) {
        memcpy(w->buf + w->len, st->sep, st->sep_len);
        w->len += st->sep_len;
    }
    memcpy(w->buf + w->len, v->p, v->len);
    w->len += v->len;
    w->flags |= r->flags & ML_CARRIED_FLAGS;
    if (!w->first)
        w->first = r;
}

static void measure_line(ml_pass *p, dr_record *r, const dr_value *v, void *ctx)
{
    ml_writer *w = ctx; /* counts only: buf is NULL */
    (void)r;
    w->len += (w->lines++ > 0 ? p->st->sep_len : 0) + v->len;
}

static void drop_merged(ml_pass *p, dr_record *r, const dr_value *v, void *ctx)
{
    const dr_record *keep = ctx;
    (void)p;
    (void)v;
    if (r != keep)
        r->flags |= DR_REC_DROPPED;
}

static void drop_all(ml_pass *p, dr_record *r, const dr_value *v, void *ctx)
{
    (void)p;
    (void)v;
    (void)ctx;
    r->flags |= DR_REC_DROPPED;
}

/* A group entirely in this chunk: joined into its first record. */
static void join_in_chunk(ml_pass *p)
{
    ml_state *st = p->st;
    if (p->nlocal < 2)
        return; /* one line: already what it should be */
    ml_writer size = {0};
    for_each_local_line(p, measure_line, &size);
    ml_writer w = {.buf = dr_chunk_alloc(p->c, size.len ? size.len : 1)};
    if (!w.buf)
        return; /* out of memory: the lines stay records of their own */
    for_each_local_line(p, write_line, &w);
    if (set_line(st, p->c, w.first, w.buf, w.len) < 0)
        return;
    w.first->flags |= w.flags;
    for_each_local_line(p, drop_merged, w.first);
    dr_counter_add(st->merged, w.lines - 1);
}

/* Moves this chunk's lines of the group into the source's held group and
 * keeps a reference to the chunk. False when out of memory (nothing
 * changed then). */
static bool hold_lines(ml_pass *p)
{
    ml_state *st = p->st;
    if (p->nlocal == 0)
        return true;
    if (!p->src && !(p->src = source_add(st, p->c, p->stream)))
        return false;
    ml_group *g = &p->src->held;
    bool fresh = g->nlines == 0;
    dr_record *first = &p->c->recs[p->first];
    if (fresh && !group_copy_fields(g, first))
        return false;
    if (!group_reserve(g, p->bytes)) {
        if (fresh)
            group_clear(st, g);
        return false;
    }
    if (fresh) {
        g->time_ns = first->time_ns;
        g->flags = first->flags & ML_CARRIED_FLAGS;
    }
    ml_writer w = {.buf = g->text, .len = g->len, .lines = g->nlines};
    for_each_local_line(p, write_line, &w);
    for_each_local_line(p, drop_all, NULL);
    g->len = w.len;
    g->nlines = w.lines;
    g->flags |= w.flags;
    dr_chunk_retain(p->c);
    g->chunks[g->nchunks++] = p->c;
    group_account(st, g);
    p->nlocal = 0;
    return true;
}

/* Ends the open group: joined in this chunk, or, when it began in an
 * earlier one, emitted as a chunk of its own with this chunk's lines. */
static void close_group(ml_pass *p)
{
    if (!p->open)
        return;
    if (has_held(p)) {
        if (hold_lines(p)) {
            emit_held(p->st, p->src);
        } else {
            /* out of memory: the held lines go out alone, this chunk's
             * lines are joined among themselves */
            emit_held(p->st, p->src);
            join_in_chunk(p);
        }
    } else {
        join_in_chunk(p);
    }
    p->open = false;
    p->nlines = 0;
    p->bytes = 0;
    p->nlocal = 0;
}

static void add_line(ml_pass *p, uint32_t i, size_t len)
{
    if (!p->open) {
        p->open = true;
        p->nlines = 0;
        p->bytes = 0;
    }
    if (p->nlocal++ == 0)
        p->first = i;
    p->last = i;
    p->bytes += (p->nlines++ ? p->st->sep_len : 0) + len;
}

static void take_line(ml_pass *p, uint32_t i, size_t len, ml_verdict v)
{
    const ml_conf *conf = p->st->conf;
    if (v == ML_SINGLE || v == ML_START)
        close_group(p);
    if (v == ML_SINGLE)
        return;
    if (p->open && p->bytes + p->st->sep_len + len > conf->max_bytes) {
        close_group(p);
        dr_counter_add(p->st->split, 1);
    }
    add_line(p, i, len);
    if (v == ML_LAST) {
        close_group(p);
    } else if (p->nlines >= (uint64_t)conf->max_lines || p->bytes >= conf->max_bytes) {
        close_group(p);
        dr_counter_add(p->st->split, 1);
    }
}

/* After the chunk: the open group is held (or, once the filter has
 * stopped, closed here), and the source's entry kept while it holds lines
 * or is inside a trace. */
static void finish_pass(ml_pass *p)
{
    ml_state *st = p->st;
    if (p->open && p->nlocal > 0 && (st->stopped || !hold_lines(p)))
        close_group(p);
    if (!p->saw_line)
        return; /* nothing of this stream here: its entry stays as it was */
    bool keep = !st->stopped && (p->state != ML_IN_NONE || has_held(p));
    if (keep && !p->src)
        p->src = source_add(st, p->c, p->stream);
    if (keep && p->src) {
        p->src->state = p->state;
        source_touch(st, p->src, dr_mono_ns());
    } else if (p->src) {
        flush_source(st, p->src);
    }
}

static void join_stream(ml_state *st, dr_chunk *c, uint8_t stream)
{
    const void *id = c->meta ? (const void *)c->meta : (const void *)c->input;
    ml_pass p = {.st = st, .c = c, .stream = stream};
    p.src = source_find(st, id, stream);
    if (p.src) {
        p.state = p.src->state;
        p.open = p.src->held.nlines > 0;
        p.nlines = p.src->held.nlines;
        p.bytes = p.src->held.len;
    }
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->stream != stream || (r->flags & DR_REC_DROPPED))
            continue;
        p.saw_line = true;
        dr_value v;
        if (!line_of(st, c, r, &v)) {
            close_group(&p);
            p.state = ML_IN_NONE;
            continue;
        }
        take_line(&p, i, v.len, ml_detect(st->det, &p.state, v.p, v.len));
    }
    finish_pass(&p);
}

/* ---- the flush timer ----------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Arms the timer for the source idle longest (sources are in order of
 * their last line, so it is the first to be due). */
static void arm_timer(ml_state *st)
{
    if (!st->timer_open || st->stopped)
        return;
    if (!st->oldest) {
        uv_timer_stop(&st->timer);
        return;
    }
    int64_t due = st->oldest->last_ns + st->conf->flush_timeout_ms * 1000000;
    int64_t wait_ms = (due - dr_mono_ns()) / 1000000 + 1;
    uv_timer_start(&st->timer, on_timer, (uint64_t)(wait_ms > 0 ? wait_ms : 0), 0);
}

static void on_timer(uv_timer_t *t)
{
    ml_state *st = t->data;
    int64_t now = dr_mono_ns();
    int64_t timeout = st->conf->flush_timeout_ms * 1000000;
    enforce_bounds(st);
    while (st->oldest && now - st->oldest->last_ns >= timeout)
        flush_source(st, st->oldest);
    dr_gauge_set(st->g_held, (double)st->nsources);
    arm_timer(st);
}

/* ---- plugin callbacks
 * ---------------------------------------------------------------------------- */

static void ml_filter(dr_instance *inst, dr_chunk *c)
{
    ml_state *st = inst->state;
    enforce_bounds(st);
    join_stream(st, c, DR_STREAM_STDOUT);
    join_stream(st, c, DR_STREAM_STDERR);
    dr_gauge_set(st->g_held, (double)st->nsources);
    arm_timer(st);
}

static int check_key(const char *key, dr_error *err)
{
    if (!key[0] || strcmp(key, "time") == 0 || strcmp(key, "stream") == 0 ||
        strncmp(key, "kubernetes", 10) == 0) {
        dr_error_set(err, "key: \"%s\" cannot hold a line (use message or a field)", key);
        return DR_EINVAL;
    }
    return 0;
}

static int check_patterns(const ml_conf *conf, dr_error *err)
{
    bool regex = conf->mode == ML_MODE_REGEX;
    if (regex && !conf->start_pattern) {
        dr_error_set(err, "start_pattern: required with mode regex");
        return DR_EINVAL;
    }
    if (!regex && (conf->start_pattern || conf->continue_pattern)) {
        dr_error_set(err, "%s: only with mode regex",
                     conf->start_pattern ? "start_pattern" : "continue_pattern");
        return DR_EINVAL;
    }
    return 0;
}

static void state_free(ml_state *st)
{
    ml_detector_free(st->det);
    free(st->buckets);
    free(st);
}

static int ml_init(dr_instance *inst, dr_error *err)
{
    ml_conf *conf = inst->conf;
    if (check_key(conf->key, err) < 0 || check_patterns(conf, err) < 0)
        return DR_EINVAL;
    ml_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->inst = inst;
    st->conf = conf;
    st->sep = conf->separator ? conf->separator : "\n";
    st->sep_len = strlen(st->sep);
    st->key_len = strlen(conf->key);
    st->key_is_message = strcmp(conf->key, "message") == 0;
    st->nbuckets = 64;
    while (st->nbuckets < (size_t)conf->max_sources)
        st->nbuckets *= 2;
    st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
    st->det =
        ml_detector_new((ml_mode)conf->mode, conf->start_pattern, conf->continue_pattern, err);
    if (!st->buckets || !st->det) {
        int rc = st->det ? DR_ENOMEM : DR_EINVAL;
        if (!st->buckets)
            dr_error_set(err, "out of memory");
        state_free(st);
        return rc;
    }
    inst->state = st;
    return 0;
}

static int ml_start(dr_instance *inst)
{
    ml_state *st = inst->state;
    st->merged = dr_counter_new(inst, "drover_filter_multiline_merged_lines_total",
                                "Lines joined into the record of the line before them (not "
                                "dropped: they are part of that record).",
                                NULL, NULL);
    st->split = dr_counter_new(inst, "drover_filter_multiline_split_records_total",
                               "Records emitted on reaching max_lines or max_bytes (the lines "
                               "after them start a new record).",
                               NULL, NULL);
    st->g_held = dr_gauge_new(inst, "drover_filter_multiline_held_sources",
                              "Sources (container streams) with a record held back or inside "
                              "a trace.",
                              NULL, NULL);
    uv_timer_init(inst->loop, &st->timer);
    st->timer.data = st;
    st->timer_open = true;
    return 0;
}

/* Everything held goes out now; nothing is held from now on. */
static void ml_stop(dr_instance *inst)
{
    ml_state *st = inst->state;
    st->stopped = true;
    if (st->timer_open)
        uv_timer_stop(&st->timer);
    while (st->oldest)
        flush_source(st, st->oldest);
    dr_gauge_set(st->g_held, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
    state_free(h->data);
}

static void ml_destroy(dr_instance *inst)
{
    ml_state *st = inst->state;
    if (!st)
        return;
    inst->state = NULL;
    /* Whatever could not go out is given back: its chunks are released
     * undelivered, so their lines are read again after a restart. */
    while (st->oldest) {
        ml_source *s = st->oldest;
        release_chunks(s->held.chunks, s->held.nchunks, false);
        group_clear(st, &s->held);
        source_remove(st, s);
    }
    if (st->timer_open) {
        st->timer_open = false;
        uv_close((uv_handle_t *)&st->timer, on_timer_closed);
    } else {
        state_free(st);
    }
}

const dr_plugin dr_plugin_multiline = {
    .abi = DR_PLUGIN_ABI,
    .name = "multiline",
    .kind = DR_FILTER,
    .description =
        "Joins the lines of one logical record (a stack trace, continuation lines) into one "
        "record, per container and stream: stdout and stderr lines are never joined together. "
        "Works on whole lines, after the tail input has joined CRI and docker partial lines. "
        "The joined record keeps the first line's time and fields; its lines are joined with "
        "`separator`.\n\n"
        "A record that may still go on at the end of a read is held until the next line of its "
        "source says whether it does, or `flush_timeout` passes, or the agent stops (then it is "
        "emitted before the outputs finish). While a record is held, the records it came from "
        "are not acknowledged: the tail input's checkpoint does not pass them, so nothing is "
        "lost to a crash.\n\n"
        "Self-metrics: drover_filter_multiline_merged_lines_total (lines that went into the "
        "record before them: not dropped, though outputs see fewer records than the input "
        "read), drover_filter_multiline_split_records_total, "
        "drover_filter_multiline_held_sources.",
    .options = ml_options,
    .conf_size = sizeof(ml_conf),
    .init = ml_init,
    .start = ml_start,
    .filter = ml_filter,
    .stop = ml_stop,
    .destroy = ml_destroy,
};
