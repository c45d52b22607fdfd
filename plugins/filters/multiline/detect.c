/*
 * Line classification for the multiline filter.
 *
 * Language modes are small state machines over regular expressions. A
 * source outside any group is in ML_IN_NONE. A line matching one of the
 * mode's start rules opens a group and moves the source into that rule's
 * state; inside, the rules allowed in the current state say which lines
 * continue the group, and into which state. A line that no rule of the
 * current state accepts ends the group and is looked at again from the
 * outside: it may start the next one, or stand alone. A rule that leads
 * back to ML_IN_NONE ends the group with its line in it (the "ValueError:
 * ..." line that closes a Python traceback), so that group goes out without
 * waiting for the next line.
 *
 * The rules were written from real traces (the Fluent Bit and Google
 * detect-exceptions test traces in the fixtures); each says what it is for.
 * `auto` runs the rules of every language at once: their states are
 * distinct, so they do not interfere, and a rule shared by two languages
 * is taken once.
 *
 * Regex mode: a line matching start_pattern starts a group; any other line
 * continues it, or, with a continue_pattern, only a line matching that one
 * does and a line matching neither stands alone.
 *
 * Matching: PCRE2 with JIT where available and a match limit, so that no
 * pattern and no line can take unbounded time. The built-in patterns match
 * bytes (ASCII); the user's patterns are UTF-8 aware and treat invalid
 * UTF-8 in a line as bytes that match nothing. A match that fails with an
 * error (the limit) counts as no match.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>

#include "detect.h"

/* States a source can be in: ML_IN_NONE (0) and these. */
enum {
    ML_IN_EXC_HEAD = 1, /* after an exception's first line (Java, JavaScript, C#) */
    ML_IN_EXC_NESTED,   /* after Java's "nested exception is:" */
    ML_IN_EXC_FRAMES,   /* among the "at ..." frames */
    ML_IN_PY,           /* inside a Python traceback */
    ML_IN_GO_PANIC,     /* after "panic: ..." */
    ML_IN_GO_BETWEEN,   /* before a "goroutine N [...]:" header */
    ML_IN_GO_FUNC,      /* before a function line (or a blank line between goroutines) */
    ML_IN_GO_FILE,      /* before the indented file:line of the function above */
    ML_IN_RAILS,        /* after a Rails "XError (...):" line */
    ML_IN_RUBY,         /* among backtrace lines */
};

#define IN(state) (1u << (state))

/* Lines matching `pattern` in one of the states `from` move the source to
 * state `to`. */
typedef struct ml_rule {
    uint32_t from;
    const char *pattern;
    uint8_t to;
} ml_rule;

/* ---- Java, JavaScript, C# ------------------------------------------------ */

/* The first line of an exception: "java.lang.IllegalStateException: msg",
 * "Exception in thread "main" java.lang...: msg", "ReferenceError: x is not
 * defined", a browser's bare "Error", "System.InvalidOperationException:
 * msg". The name may come after a timestamp or a logger's prefix. */
static const ml_rule exc_start = {IN(ML_IN_NONE), "(?:Exception|Error|Throwable)(?::|$)",
                                  ML_IN_EXC_HEAD};
/* Java's "\tat com.x.Y.m(Y.java:1)", V8's "    at f (file.js:1:2)" and
 * "  eval at ...", .NET's "   at X.Y() in file.cs:line 3". */
static const ml_rule exc_frame = {IN(ML_IN_EXC_HEAD) | IN(ML_IN_EXC_FRAMES), "^\\s+(?:eval )?at ",
                                  ML_IN_EXC_FRAMES};
/* Node's V8 trace heading. */
static const ml_rule v8_start = {IN(ML_IN_NONE), "^V8 errors stack trace$", ML_IN_EXC_HEAD};
/* "Caused by: ..." and "\tSuppressed: ..." begin another exception of the
 * same trace, with the same lines allowed after them as after the first. */
static const ml_rule java_caused = {IN(ML_IN_EXC_HEAD) | IN(ML_IN_EXC_FRAMES),
                                    "^\\s*(?:Caused by|Suppressed): ", ML_IN_EXC_HEAD};
/* "\t... 12 more", "    ... 27 common frames omitted" (logback). */
static const ml_rule java_more = {IN(ML_IN_EXC_HEAD) | IN(ML_IN_EXC_FRAMES),
                                  "^\\s*\\.\\.\\. \\d+ (?:more|common frames omitted)$",
                                  ML_IN_EXC_FRAMES};
/* javax.mail and others print "  nested exception is:" and the nested
 * exception's own first line after it... */
static const ml_rule java_nested = {IN(ML_IN_EXC_HEAD) | IN(ML_IN_EXC_FRAMES),
                                    "^\\s*nested exception is:", ML_IN_EXC_NESTED};
static const ml_rule java_nested_line = {IN(ML_IN_EXC_NESTED), "\\S", ML_IN_EXC_HEAD};
/* ...and sometimes a blank line before the frames. */
static const ml_rule java_blank = {IN(ML_IN_EXC_HEAD), "^\\s*$", ML_IN_EXC_HEAD};
/* .NET's markers between the parts of an async or nested trace. */
static const ml_rule csharp_marker = {
    IN(ML_IN_EXC_HEAD) | IN(ML_IN_EXC_FRAMES),
    "^\\s*--- End of (?:inner exception stack trace|stack trace from previous location where "
    "exception was thrown) ---$",
    ML_IN_EXC_FRAMES};

/* ---- Python -------------------------------------------------------------- */

static const ml_rule py_start = {IN(ML_IN_NONE), "^Traceback \\(most recent call last\\):$",
                                 ML_IN_PY};
/* Everything indented: '  File "x.py", line 3, in f', the source line
 * under it, the "    ^^^^" markers of recent versions. */
static const ml_rule py_body = {IN(ML_IN_PY), "^[\\t ]", ML_IN_PY};
/* The exception closes the traceback: "ValueError: msg",
 * "requests.exceptions.HTTPError: ...", a bare "KeyboardInterrupt". */
static const ml_rule py_end = {IN(ML_IN_PY), "^[A-Za-z_][\\w.]*(?::|$)", ML_IN_NONE};

/* ---- Go ------------------------------------------------------------------ */

/* net/http recovering a handler's panic: the goroutine follows at once. */
static const ml_rule go_http_start = {IN(ML_IN_NONE), "http: panic serving ", ML_IN_GO_BETWEEN};
/* "panic: msg" (not "tympanic: "), and the runtime's "fatal error: msg". */
static const ml_rule go_start = {IN(ML_IN_NONE), "\\bpanic: |^fatal error: ", ML_IN_GO_PANIC};
/* "[signal SIGSEGV: segmentation violation ...]" and the "\tpanic: ..."
 * of a panic raised again after a recover. */
static const ml_rule go_panic_more = {IN(ML_IN_GO_PANIC), "^(?:\\[signal |\\s+panic: )",
                                      ML_IN_GO_PANIC};
/* Blank lines come before the first goroutine and between goroutines. */
static const ml_rule go_blank = {IN(ML_IN_GO_PANIC) | IN(ML_IN_GO_FUNC), "^$", ML_IN_GO_BETWEEN};
static const ml_rule go_goroutine = {IN(ML_IN_GO_PANIC) | IN(ML_IN_GO_BETWEEN),
                                     "^goroutine \\d+ \\[[^\\]]+\\]:$", ML_IN_GO_FUNC};
/* A frame is two lines: the function, "main.main()",
 * "net/http.(*conn).serve.func1(0xc00007eaa0)", "created by main.main"... */
static const ml_rule go_func = {IN(ML_IN_GO_FUNC), "^(?:created by |[^\\s(]\\S*\\()",
                                ML_IN_GO_FILE};
/* ...then its file, indented: "\t/usr/local/go/src/runtime/panic.go:542 +0x46c". */
static const ml_rule go_file = {IN(ML_IN_GO_FILE), "^\\s", ML_IN_GO_FUNC};
static const ml_rule go_elided = {IN(ML_IN_GO_FUNC), "^\\.\\.\\.additional frames elided\\.\\.\\.$",
                                  ML_IN_GO_FUNC};

/* ---- Ruby ---------------------------------------------------------------- */

/* "/app/config/routes.rb:6:in `/': divided by 0 (ZeroDivisionError)"
 * (Ruby 3.4 quotes 'like this'). */
static const ml_rule ruby_start = {IN(ML_IN_NONE), ":\\d+:in [`'].*\\(\\w+(?:::\\w+)*\\)$",
                                   ML_IN_RUBY};
/* Rails: " ActionController::RoutingError (No route matches ...):" */
static const ml_rule rails_start = {IN(ML_IN_NONE), "(?:Error|Exception) \\(.*\\):$", ML_IN_RAILS};
static const ml_rule rails_blank = {IN(ML_IN_RAILS), "^\\s*$", ML_IN_RAILS};
/* "\tfrom /app/config/routes.rb:6:in `block in <main>'", and Rails'
 * "  actionpack (5.1.4) lib/action_dispatch/x.rb:63:in `call'". */
static const ml_rule ruby_frame = {IN(ML_IN_RAILS) | IN(ML_IN_RUBY),
                                   "^\\s+(?:from )?\\S.*:\\d+:in [`']", ML_IN_RUBY};
static const ml_rule ruby_levels = {IN(ML_IN_RUBY), "^\\s+\\.\\.\\. \\d+ levels\\.\\.\\.$",
                                    ML_IN_RUBY};

/* ---- the rule sets ------------------------------------------------------- */

/* Within a state the first matching rule wins: specific ones first. */
static const ml_rule *const java_rules[] = {
    &exc_start,        &java_caused, &java_more, &java_nested,
    &java_nested_line, &java_blank,  &exc_frame, NULL,
};
static const ml_rule *const nodejs_rules[] = {&exc_start, &v8_start, &exc_frame, NULL};
static const ml_rule *const csharp_rules[] = {&exc_start, &csharp_marker, &exc_frame, NULL};
static const ml_rule *const python_rules[] = {&py_start, &py_body, &py_end, NULL};
static const ml_rule *const go_rules[] = {
    &go_http_start, &go_start, &go_panic_more, &go_blank, &go_goroutine,
    &go_elided,     &go_func,  &go_file,       NULL,
};
static const ml_rule *const ruby_rules[] = {
    &ruby_start, &rails_start, &rails_blank, &ruby_frame, &ruby_levels, NULL,
};

/* auto: the most specific start rules first (the generic exception rule
 * would also take some of their lines). */
static const ml_rule *const *const auto_sets[] = {
    python_rules, go_rules, ruby_rules, java_rules, nodejs_rules, csharp_rules, NULL,
};

#define ML_MAX_RULES 48
/* Backtracking steps one match may take; far above what any sane pattern
 * needs on a line, far below "stuck". */
#define ML_MATCH_LIMIT 200000

struct ml_detector {
    ml_mode mode;
    size_t nrules;
    const ml_rule *rules[ML_MAX_RULES];
    pcre2_code *codes[ML_MAX_RULES];
    pcre2_code *start, *cont; /* regex mode */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
};

/* ---- the PCRE2 wrapper (private to this plugin) -------------------------- */

static pcre2_code *re_compile(const char *what, const char *pattern, uint32_t options,
                              dr_error *err)
{
    int code;
    PCRE2_SIZE offset;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &offset, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        dr_error_set(err, "%s: %s at offset %zu", what, (const char *)msg, (size_t)offset);
        return NULL;
    }
    /* Without JIT (some platforms) the interpreter does the same work,
     * slower: not an error. */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static bool re_match(ml_detector *d, const pcre2_code *re, const char *s, size_t n)
{
    return pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, d->md, d->mctx) >= 0;
}

/* ---- building a detector ------------------------------------------------- */

static bool has_rule(const ml_detector *d, const ml_rule *r)
{
    for (size_t i = 0; i < d->nrules; i++)
        if (d->rules[i] == r)
            return true;
    return false;
}

static int add_rules(ml_detector *d, const ml_rule *const *set, dr_error *err)
{
    for (size_t i = 0; set[i]; i++) {
        if (has_rule(d, set[i]))
            continue;
        if (d->nrules == ML_MAX_RULES) {
            dr_error_set(err, "too many rules");
            return DR_EINVAL;
        }
        d->codes[d->nrules] = re_compile("built-in rule", set[i]->pattern, 0, err);
        if (!d->codes[d->nrules])
            return DR_EINVAL;
        d->rules[d->nrules++] = set[i];
    }
    return 0;
}

static int add_language_rules(ml_detector *d, ml_mode mode, dr_error *err)
{
    switch (mode) {
    case ML_MODE_JAVA:
        return add_rules(d, java_rules, err);
    case ML_MODE_GO:
        return add_rules(d, go_rules, err);
    case ML_MODE_PYTHON:
        return add_rules(d, python_rules, err);
    case ML_MODE_NODEJS:
        return add_rules(d, nodejs_rules, err);
    case ML_MODE_RUBY:
        return add_rules(d, ruby_rules, err);
    case ML_MODE_CSHARP:
        return add_rules(d, csharp_rules, err);
    case ML_MODE_AUTO:
        for (size_t i = 0; auto_sets[i]; i++)
            if (add_rules(d, auto_sets[i], err) < 0)
                return DR_EINVAL;
        return 0;
    case ML_MODE_REGEX:
        break;
    }
    dr_error_set(err, "unknown mode");
    return DR_EINVAL;
}

static int add_patterns(ml_detector *d, const char *start, const char *cont, dr_error *err)
{
    /* UTF-8 aware, and invalid UTF-8 in a line is no error */
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    d->start = re_compile("start_pattern", start, options, err);
    if (!d->start)
        return DR_EINVAL;
    if (cont && !(d->cont = re_compile("continue_pattern", cont, options, err)))
        return DR_EINVAL;
    return 0;
}

ml_detector *ml_detector_new(ml_mode mode, const char *start_pattern, const char *continue_pattern,
                             dr_error *err)
{
    ml_detector *d = calloc(1, sizeof *d);
    if (!d) {
        dr_error_set(err, "out of memory");
        return NULL;
    }
    d->mode = mode;
    d->md = pcre2_match_data_create(1, NULL);
    d->mctx = pcre2_match_context_create(NULL);
    if (!d->md || !d->mctx) {
        dr_error_set(err, "out of memory");
        ml_detector_free(d);
        return NULL;
    }
    pcre2_set_match_limit(d->mctx, ML_MATCH_LIMIT);
    int rc = mode == ML_MODE_REGEX ? add_patterns(d, start_pattern, continue_pattern, err)
                                   : add_language_rules(d, mode, err);
    if (rc < 0) {
        ml_detector_free(d);
        return NULL;
    }
    return d;
}

void ml_detector_free(ml_detector *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nrules; i++)
        pcre2_code_free(d->codes[i]);
    pcre2_code_free(d->start);
    pcre2_code_free(d->cont);
    pcre2_match_data_free(d->md);
    pcre2_match_context_free(d->mctx);
    free(d);
}

/* ---- classifying --------------------------------------------------------- */

/* The first rule allowed in `state` that the line matches, or -1. */
static int find_rule(ml_detector *d, uint8_t state, const char *s, size_t n)
{
    for (size_t i = 0; i < d->nrules; i++)
        if ((d->rules[i]->from & IN(state)) && re_match(d, d->codes[i], s, n))
            return (int)i;
    return -1;
}

static ml_verdict detect_language(ml_detector *d, uint8_t *state, const char *s, size_t n)
{
    if (*state != ML_IN_NONE) {
        int i = find_rule(d, *state, s, n);
        if (i >= 0) {
            *state = d->rules[i]->to;
            return *state == ML_IN_NONE ? ML_LAST : ML_CONTINUE;
        }
        *state = ML_IN_NONE; /* the group is over: the line may start the next */
    }
    int i = find_rule(d, ML_IN_NONE, s, n);
    if (i < 0)
        return ML_SINGLE;
    *state = d->rules[i]->to;
    return ML_START;
}

/* What a line does here depends on the line alone: the source's state
 * stays ML_IN_NONE. */
static ml_verdict detect_regex(ml_detector *d, const char *s, size_t n)
{
    if (re_match(d, d->start, s, n))
        return ML_START;
    if (!d->cont || re_match(d, d->cont, s, n))
        return ML_CONTINUE;
    return ML_SINGLE;
}

ml_verdict ml_detect(ml_detector *d, uint8_t *state, const char *line, size_t len)
{
    if (d->mode == ML_MODE_REGEX)
        return detect_regex(d, line, len);
    return detect_language(d, state, line, len);
}
