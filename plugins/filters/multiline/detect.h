/*
 * The multiline filter's line classifier: what one line does to the group
 * of lines open for its source. Each source (a container's stream) carries
 * one byte of state between lines; ML_IN_NONE means "outside any group".
 */
#ifndef DROVER_ML_DETECT_H
#define DROVER_ML_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"

/* The modes, in the order of the `mode` option's choices. */
typedef enum {
    ML_MODE_AUTO = 0,
    ML_MODE_JAVA,
    ML_MODE_GO,
    ML_MODE_PYTHON,
    ML_MODE_NODEJS,
    ML_MODE_RUBY,
    ML_MODE_CSHARP,
    ML_MODE_REGEX,
} ml_mode;

/* The state of a source that is outside any group. */
#define ML_IN_NONE 0

typedef enum {
    ML_SINGLE,   /* a record of its own: ends the open group, joins nothing */
    ML_START,    /* ends the open group and opens a new one with this line */
    ML_CONTINUE, /* joins the open group (opens one when none is open) */
    ML_LAST,     /* joins the open group and ends it */
} ml_verdict;

typedef struct ml_detector ml_detector;

/* Compiles the rules of a mode; the patterns only for ML_MODE_REGEX
 * (start_pattern required, continue_pattern optional). NULL with err set
 * on a bad pattern or out of memory. */
ml_detector *ml_detector_new(ml_mode mode, const char *start_pattern, const char *continue_pattern,
                             dr_error *err);
void ml_detector_free(ml_detector *d);

/* Classifies one line (any bytes, no newline) and moves *state on. */
ml_verdict ml_detect(ml_detector *d, uint8_t *state, const char *line, size_t len);

#endif
