/* SPDX-License-Identifier: MIT */
/* Error messages into a caller's buffer, the way every parser in
 * engine/common reports a problem (NULL or empty buffer: nothing written). */
#ifndef KH_COMMON_ERRBUF_H
#define KH_COMMON_ERRBUF_H

#include <stddef.h>

void kh_errbuf_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
