/* SPDX-License-Identifier: MIT */
/* PKCS#11 module loading and return-code names, shared by every part that
 * talks to a token. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kh_errbuf.h"
#include "kh_p11util.h"

#define R(x) { x, #x }
static const struct {
    CK_RV rv;
    const char *name;
} ckr_names[] = {
    R(CKR_OK), R(CKR_CANCEL), R(CKR_HOST_MEMORY), R(CKR_SLOT_ID_INVALID),
    R(CKR_GENERAL_ERROR), R(CKR_FUNCTION_FAILED), R(CKR_ARGUMENTS_BAD),
    R(CKR_NO_EVENT), R(CKR_NEED_TO_CREATE_THREADS), R(CKR_CANT_LOCK),
    R(CKR_ATTRIBUTE_READ_ONLY), R(CKR_ATTRIBUTE_SENSITIVE),
    R(CKR_ATTRIBUTE_TYPE_INVALID), R(CKR_ATTRIBUTE_VALUE_INVALID),
    R(CKR_ACTION_PROHIBITED), R(CKR_DATA_INVALID), R(CKR_DATA_LEN_RANGE),
    R(CKR_DEVICE_ERROR), R(CKR_DEVICE_MEMORY), R(CKR_DEVICE_REMOVED),
    R(CKR_ENCRYPTED_DATA_INVALID), R(CKR_ENCRYPTED_DATA_LEN_RANGE),
    R(CKR_FUNCTION_CANCELED), R(CKR_FUNCTION_NOT_PARALLEL),
    R(CKR_FUNCTION_NOT_SUPPORTED), R(CKR_KEY_HANDLE_INVALID),
    R(CKR_KEY_SIZE_RANGE), R(CKR_KEY_TYPE_INCONSISTENT),
    R(CKR_KEY_NOT_NEEDED), R(CKR_KEY_CHANGED), R(CKR_KEY_NEEDED),
    R(CKR_KEY_INDIGESTIBLE), R(CKR_KEY_FUNCTION_NOT_PERMITTED),
    R(CKR_KEY_NOT_WRAPPABLE), R(CKR_KEY_UNEXTRACTABLE),
    R(CKR_MECHANISM_INVALID), R(CKR_MECHANISM_PARAM_INVALID),
    R(CKR_OBJECT_HANDLE_INVALID), R(CKR_OPERATION_ACTIVE),
    R(CKR_OPERATION_NOT_INITIALIZED), R(CKR_PIN_INCORRECT),
    R(CKR_PIN_INVALID), R(CKR_PIN_LEN_RANGE), R(CKR_PIN_EXPIRED),
    R(CKR_PIN_LOCKED), R(CKR_SESSION_CLOSED), R(CKR_SESSION_COUNT),
    R(CKR_SESSION_HANDLE_INVALID), R(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    R(CKR_SESSION_READ_ONLY), R(CKR_SESSION_EXISTS),
    R(CKR_SESSION_READ_ONLY_EXISTS), R(CKR_SESSION_READ_WRITE_SO_EXISTS),
    R(CKR_SIGNATURE_INVALID), R(CKR_SIGNATURE_LEN_RANGE),
    R(CKR_TEMPLATE_INCOMPLETE), R(CKR_TEMPLATE_INCONSISTENT),
    R(CKR_TOKEN_NOT_PRESENT), R(CKR_TOKEN_NOT_RECOGNIZED),
    R(CKR_TOKEN_WRITE_PROTECTED), R(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    R(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT), R(CKR_USER_ALREADY_LOGGED_IN),
    R(CKR_USER_NOT_LOGGED_IN), R(CKR_USER_PIN_NOT_INITIALIZED),
    R(CKR_USER_TYPE_INVALID), R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    R(CKR_USER_TOO_MANY_TYPES), R(CKR_WRAPPED_KEY_INVALID),
    R(CKR_WRAPPED_KEY_LEN_RANGE), R(CKR_WRAPPING_KEY_HANDLE_INVALID),
    R(CKR_WRAPPING_KEY_SIZE_RANGE), R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    R(CKR_RANDOM_SEED_NOT_SUPPORTED), R(CKR_RANDOM_NO_RNG),
    R(CKR_DOMAIN_PARAMS_INVALID), R(CKR_CURVE_NOT_SUPPORTED),
    R(CKR_BUFFER_TOO_SMALL), R(CKR_SAVED_STATE_INVALID),
    R(CKR_INFORMATION_SENSITIVE), R(CKR_STATE_UNSAVEABLE),
    R(CKR_CRYPTOKI_NOT_INITIALIZED), R(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    R(CKR_MUTEX_BAD), R(CKR_MUTEX_NOT_LOCKED),
    R(CKR_FUNCTION_REJECTED), R(CKR_VENDOR_DEFINED),
};
#undef R

const char *kh_ckr_name(CK_RV rv)
{
    static __thread char buf[32];
    size_t i;

    for (i = 0; i < sizeof(ckr_names) / sizeof(ckr_names[0]); i++) {
        if (ckr_names[i].rv == rv) {
            return ckr_names[i].name;
        }
    }
    snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
    return buf;
}

int kh_ckr_parse(const char *name, CK_RV *rv)
{
    size_t i;

    for (i = 0; name != NULL && i < sizeof(ckr_names) / sizeof(ckr_names[0]);
         i++) {
        if (strcmp(ckr_names[i].name, name) == 0) {
            *rv = ckr_names[i].rv;
            return 1;
        }
    }
    return 0;
}

const char *kh_ckr_hint(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
        return "the PIN is wrong; check the PIN file (further wrong tries "
               "lock the token)";
    case CKR_PIN_LOCKED:
        return "the user PIN is locked; the security officer must reset it "
               "(keyhold token set-pin)";
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
        return "is the token plugged in? see keyhold status";
    case CKR_SLOT_ID_INVALID:
        return "the slot is gone; check the token URI (keyhold doctor)";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "the token has no user PIN yet (keyhold token init)";
    case CKR_MECHANISM_INVALID:
        return "the token does not offer this mechanism (keyhold doctor "
               "lists what it does)";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "the key does not allow this operation (sign-only keys "
               "cannot decrypt)";
    case CKR_DEVICE_MEMORY:
        return "the token is full; remove unused objects";
    default:
        return NULL;
    }
}

int kh_p11_module_open(const char *path, void **dlh, CK_FUNCTION_LIST_PTR *fl,
                       char *err, size_t errlen)
{
    CK_C_GetFunctionList getfl;
    CK_RV rv;
    void *h;

    *dlh = NULL;
    *fl = NULL;
    if (path == NULL || *path == '\0') {
        path = KH_DEFAULT_P11_MODULE;
    }
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();

        kh_errbuf_set(err, errlen,
               "cannot load PKCS#11 module '%s': %s (check module-path; "
               "is the package installed?)", path, why != NULL ? why : "?");
        return 0;
    }
    getfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (getfl == NULL) {
        kh_errbuf_set(err, errlen, "'%s' is not a PKCS#11 module (no C_GetFunctionList)",
               path);
        dlclose(h);
        return 0;
    }
    rv = getfl(fl);
    if (rv != CKR_OK || *fl == NULL) {
        kh_errbuf_set(err, errlen, "PKCS#11 module '%s': C_GetFunctionList: %s", path,
               kh_ckr_name(rv));
        dlclose(h);
        *fl = NULL;
        return 0;
    }
    *dlh = h;
    return 1;
}

void kh_p11_str(char *dst, size_t dstlen, const unsigned char *src,
                size_t srclen)
{
    size_t n = srclen;

    if (dstlen == 0) {
        return;
    }
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0')) {
        n--;
    }
    if (n >= dstlen) {
        n = dstlen - 1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}
