/* SPDX-License-Identifier: MIT */
/* The table of enrolment transports besides EST (see enrol.h). */
#include <string.h>

#include "enrol.h"

/* Each protocol's file defines its entry point; its line joins the table
 * when that file is in. */
static const struct {
    const char *name;
    kh_enrol_fn fn;
} protocols[] = {
    { "cmp", kh_cmp_enrol },
    { "acme", kh_acme_enrol },
    { "scep", kh_scep_enrol },
    { NULL, NULL }
};

kh_enrol_fn kh_enrol_protocol(const char *name)
{
    size_t i;

    for (i = 0; name != NULL && protocols[i].name != NULL; i++) {
        if (strcmp(protocols[i].name, name) == 0) {
            return protocols[i].fn;
        }
    }
    return NULL;
}

void kh_enrol_io_clear(KH_ENROL_IO *io)
{
    X509_free(io->cert);
    io->cert = NULL;
    sk_X509_pop_free(io->chain, X509_free);
    io->chain = NULL;
    X509_free(io->ca);
    io->ca = NULL;
}
