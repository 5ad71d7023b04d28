/* SPDX-License-Identifier: MIT */
/* Loading a PKCS#11 module and naming its return codes: shared by the
 * provider's p11 backend, the CLI's token-management layer and the tests. */
#ifndef KH_COMMON_P11UTIL_H
#define KH_COMMON_P11UTIL_H

#include <stddef.h>
#include <p11-kit/pkcs11.h>

#define KH_DEFAULT_P11_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* "CKR_PIN_INCORRECT", or "CKR_0x%08lx" for unknown codes (static buffer per thread). */
const char *kh_ckr_name(CK_RV rv);

/* The code named |name| ("CKR_PIN_INCORRECT"); 1 when known, else 0. */
int kh_ckr_parse(const char *name, CK_RV *rv);

/* A short remedy for common codes ("check the PIN ...") or NULL. */
const char *kh_ckr_hint(CK_RV rv);

/*
 * dlopen()s the module and fetches its function list (C_GetInterface for
 * 3.0 modules is not needed: 2.40 list). Returns 1 on success, 0 with err.
 */
int kh_p11_module_open(const char *path, void **dlh, CK_FUNCTION_LIST_PTR *fl,
                       char *err, size_t errlen);

/* Copies a blank-padded PKCS#11 string field into a NUL-terminated buffer. */
void kh_p11_str(char *dst, size_t dstlen, const unsigned char *src,
                size_t srclen);

#endif
