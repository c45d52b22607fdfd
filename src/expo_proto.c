/* placeholder: filled in by the expo_proto work */
#include "expo_internal.h"

int dr_expo_parse_protobuf(const char *body, size_t len, const dr_expo_sink *sink, dr_error *err)
{
    (void)body;
    (void)len;
    (void)sink;
    dr_error_set(err, "protobuf exposition is not available");
    return DR_EINVAL;
}
