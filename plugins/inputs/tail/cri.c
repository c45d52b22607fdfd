/*
 * CRI container log lines, as containerd and CRI-O write them:
 *
 *     2016-10-20T18:39:20.57606443Z stdout F some message
 *     <RFC3339Nano>                 <stream> <tag> <message>
 *
 * The tag is "P" (a partial line: more pieces follow) or "F" (the final or
 * only piece), optionally followed by further ':'-separated tags that are
 * reserved for the future and ignored. The message is everything after the
 * single space that follows the tag: arbitrary bytes, possibly empty, in which
 * case the runtime may or may not have written that space.
 *
 * Also here: telling CRI from docker json-file by a file's first line.
 */
#include <string.h>

#include "format.h"
#include "json.h"

/* The timestamp and the stream: "<time> stdout" or "<time> stderr". On
 * success *rest points just past the stream name. */
static bool parse_head(const char *line, size_t len, int64_t *time_ns, uint8_t *stream,
                       const char **rest)
{
    if (len == 0)
        return false;
    const char *end = line + len;
    const char *sp = memchr(line, ' ', len);
    if (!sp || dr_parse_rfc3339(line, (size_t)(sp - line), time_ns) < 0)
        return false;

    const char *p = sp + 1;
    if (end - p < 6)
        return false;
    if (memcmp(p, "stdout", 6) == 0)
        *stream = DR_STREAM_STDOUT;
    else if (memcmp(p, "stderr", 6) == 0)
        *stream = DR_STREAM_STDERR;
    else
        return false;
    *rest = p + 6;
    return true;
}

/* The first tag must be exactly "P" or "F"; later tags may be anything. */
static bool parse_tag(const char *tag, const char *tag_end, bool *partial)
{
    if (tag_end == tag || (*tag != 'P' && *tag != 'F'))
        return false;
    if (tag_end - tag > 1 && tag[1] != ':')
        return false;
    *partial = *tag == 'P';
    return true;
}

int dr_cri_parse(const char *line, size_t len, dr_line *out)
{
    const char *end = line + len;
    const char *p;
    int64_t time_ns;
    uint8_t stream;
    bool partial;

    if (!parse_head(line, len, &time_ns, &stream, &p))
        return DR_EINVAL;
    if (p == end || *p != ' ')
        return DR_EINVAL; /* the tag is not optional */
    p++;

    const char *tag_end = memchr(p, ' ', (size_t)(end - p));
    if (!tag_end)
        tag_end = end; /* empty message, written without its separator */
    if (!parse_tag(p, tag_end, &partial))
        return DR_EINVAL;

    const char *msg = tag_end == end ? end : tag_end + 1;
    if ((size_t)(end - msg) > UINT32_MAX)
        return DR_EINVAL;

    out->time_ns = time_ns;
    out->stream = stream;
    out->partial = partial;
    out->msg = msg;
    out->msg_len = (uint32_t)(end - msg);
    return 0;
}

dr_log_format dr_format_detect(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i < len && line[i] == '{')
        return DR_FMT_DOCKER;

    int64_t time_ns;
    uint8_t stream;
    const char *rest;
    if (parse_head(line, len, &time_ns, &stream, &rest) && (rest == line + len || *rest == ' '))
        return DR_FMT_CRI;
    return DR_FMT_UNKNOWN;
}
