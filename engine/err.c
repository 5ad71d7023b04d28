/* SPDX-License-Identifier: MIT */
/*
 * Raising errors through the core's error upcalls, and debug traces. The
 * provider prints nothing unless KEYHOLD_DEBUG (or debug=1 in its config
 * section) asks for traces; neither path ever formats a PIN.
 */
#include <stdio.h>
#include <stdarg.h>
#include <unistd.h>

#include <openssl/err.h>

#include "keyhold.h"

int kh_debug_on;

void kh_raise(KH_PROV_CTX *prov, const char *file, int line,
              const char *func, int reason, const char *fmt, ...)
{
    va_list ap;

    if (kh_debug_on) {
        char buf[512];

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        kh_debug_printf("error: %s (%s:%d)", buf, file, line);
    }
    if (prov == NULL || prov->core_new_error == NULL) {
        return;
    }
    prov->core_new_error(prov->handle);
    prov->core_set_error_debug(prov->handle, file, line, func);
    va_start(ap, fmt);
    prov->core_vset_error(prov->handle, (uint32_t)reason,
                          fmt, ap);
    va_end(ap);
}

void kh_debug_printf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    n = snprintf(buf, sizeof(buf), "keyhold[%ld]: ", (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", buf);
}
