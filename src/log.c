/*
 * The agent's own log: logfmt lines on stderr.
 *
 *   ts=2026-11-25T04:10:38.123Z level=warn msg="file truncated" plugin=tail name=pods path=...
 *
 * A message repeated from the same call site (same msg pointer and instance)
 * more than DR_LOG_BURST times within DR_LOG_WINDOW is suppressed; the first
 * line after the window says how many were suppressed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "buf.h"
#include "drover/plugin.h"

#define DR_LOG_SLOTS 64
#define DR_LOG_BURST 5
#define DR_LOG_WINDOW_NS (10LL * 1000000000)

typedef struct log_slot {
    const char *msg;
    const void *inst;
    int64_t window_start;
    unsigned count;
    unsigned suppressed;
} log_slot;

static dr_log_level g_level = DR_LOG_INFO;
static log_slot g_slots[DR_LOG_SLOTS];

static const char *level_name[] = {"debug", "info", "warn", "error"};

void dr_log_set_level(dr_log_level lvl)
{
    g_level = lvl;
}

int dr_log_level_parse(const char *s, dr_log_level *lvl)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_name[i]) == 0) {
            *lvl = (dr_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *lvl = DR_LOG_WARN;
        return 0;
    }
    return DR_EINVAL;
}

/* Returns false when the line must be suppressed; sets *suppressed to the
 * number skipped before this line. */
static bool rate_ok(const char *msg, const void *inst, unsigned *suppressed)
{
    size_t h = ((size_t)(uintptr_t)msg ^ ((size_t)(uintptr_t)inst * 31)) % DR_LOG_SLOTS;
    log_slot *s = &g_slots[h];
    int64_t now = dr_mono_ns();
    *suppressed = 0;
    if (s->msg != msg || s->inst != inst || now - s->window_start > DR_LOG_WINDOW_NS) {
        if (s->msg == msg && s->inst == inst)
            *suppressed = s->suppressed;
        s->msg = msg;
        s->inst = inst;
        s->window_start = now;
        s->count = 1;
        s->suppressed = 0;
        return true;
    }
    if (++s->count <= DR_LOG_BURST)
        return true;
    s->suppressed++;
    return false;
}

static void put_value(dr_buf *b, const char *v)
{
    bool plain = *v != '\0';
    for (const char *p = v; *p; p++) {
        if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20) {
            plain = false;
            break;
        }
    }
    if (plain) {
        dr_buf_puts(b, v);
        return;
    }
    dr_buf_putc(b, '"');
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            dr_buf_putc(b, '\\');
            dr_buf_putc(b, *p);
        } else if (*p == '\n') {
            dr_buf_puts(b, "\\n");
        } else if ((unsigned char)*p < 0x20) {
            dr_buf_printf(b, "\\x%02x", (unsigned char)*p);
        } else {
            dr_buf_putc(b, *p);
        }
    }
    dr_buf_putc(b, '"');
}

static void vlog(const dr_instance *inst, dr_log_level lvl, const char *msg, const char *kvfmt,
                 va_list ap)
{
    if (lvl < g_level)
        return;
    unsigned suppressed;
    if (!rate_ok(msg, inst, &suppressed))
        return;
    dr_buf b = {0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    dr_buf_printf(&b, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                  level_name[lvl]);
    put_value(&b, msg);
    if (inst) {
        dr_buf_puts(&b, " plugin=");
        put_value(&b, inst->plugin->name);
        dr_buf_puts(&b, " name=");
        put_value(&b, inst->name);
    }
    if (kvfmt && *kvfmt) {
        dr_buf_putc(&b, ' ');
        dr_buf_vprintf(&b, kvfmt, ap);
    }
    if (suppressed)
        dr_buf_printf(&b, " suppressed=%u", suppressed);
    dr_buf_putc(&b, '\n');
    if (b.p) {
        ssize_t w = write(STDERR_FILENO, b.p, b.len);
        (void)w;
    }
    dr_buf_free(&b);
}

void dr_log(const dr_instance *inst, dr_log_level lvl, const char *msg, const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    vlog(inst, lvl, msg, kvfmt, ap);
    va_end(ap);
}

void dr_log_core(dr_log_level lvl, const char *msg, const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    vlog(NULL, lvl, msg, kvfmt, ap);
    va_end(ap);
}
