/* SPDX-License-Identifier: MIT */
/*
 * The thin token-management layer: what the provider does not do. Token
 * init and PINs, key pair generation with the custody attributes set and
 * read back, certificate objects, deletion, token information. Every
 * signature still goes through the provider.
 *
 * The module is shared with the provider inside this process (dlopen gives
 * the same instance), so it is never finalised here and a login done here
 * is the application's login the provider sees as well.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "keyhold.h"
#include "kh_p11lock.h"
#include "kh_p11util.h"
#include "kh_uri.h"

struct kh_token {
    CK_FUNCTION_LIST_PTR fl;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE session;
    char module[KH_PATH_MAX];
    char label[33];
    int logged_in;
};

static struct {
    char path[KH_PATH_MAX];
    void *dlh;
    CK_FUNCTION_LIST_PTR fl;
    char lockdir[PATH_MAX]; /* SoftHSM's token directory, or "" */
} g_mod;

/*
 * Calls that read (|exclusive| 0) or rewrite SoftHSM's token files run in a
 * section of its token-file lock, which the provider in every other
 * keyhold process takes as well (kh_p11lock.h); no-op for other modules.
 * A section that could not get the lock in time goes on without it.
 */
static void files_enter(KH_P11LOCK *lk, int exclusive)
{
    (void)kh_p11lock_enter(lk, g_mod.lockdir[0] != '\0' ? g_mod.lockdir : NULL,
                           exclusive);
}

/*
 * SoftHSM answers CKR_GENERAL_ERROR now and then while another process
 * rewrites the token's files (a server reloading during a renewal). Such
 * a call is tried again, a bounded number of times; never a call that
 * failed for a reason (a wrong PIN is never retried).
 */
static int transient(CK_RV rv)
{
    return rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR;
}

#define KH_P11_TRIES 3

static const char *module_or_default(const char *module)
{
    return module != NULL && *module != '\0' ? module : KH_DEFAULT_P11_MODULE;
}

static int module_get(const char *module, CK_FUNCTION_LIST_PTR *fl, char *err,
                      size_t errlen)
{
    CK_C_INITIALIZE_ARGS args;
    char merr[512];
    KH_P11LOCK lk;
    CK_RV rv;

    module = module_or_default(module);
    if (g_mod.fl != NULL) {
        if (strcmp(g_mod.path, module) != 0) {
            return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                             "one PKCS#11 module per run (have %s, asked %s)",
                             g_mod.path, module);
        }
        *fl = g_mod.fl;
        return KH_EXIT_OK;
    }
    if (!kh_p11_module_open(module, &g_mod.dlh, &g_mod.fl, merr,
                            sizeof(merr))) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "%s (install the module or set module= in the "
                         "identity's config)", merr);
    }
    g_mod.lockdir[0] = '\0';
    if (kh_p11lock_is_softhsm(module)
        && !kh_p11lock_tokendir(g_mod.lockdir, sizeof(g_mod.lockdir))) {
        g_mod.lockdir[0] = '\0';
    }
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    files_enter(&lk, 0);
    rv = g_mod.fl->C_Initialize(&args);
    kh_p11lock_leave(&lk);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        g_mod.fl = NULL;
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "PKCS#11 module %s: C_Initialize: %s", module,
                         kh_ckr_name(rv));
    }
    if (g_mod.lockdir[0] == '\0') {
        /* SoftHSM under a file name that does not say so. */
        CK_INFO info;
        char manuf[33];

        if (g_mod.fl->C_GetInfo(&info) == CKR_OK) {
            kh_p11_str(manuf, sizeof(manuf), info.manufacturerID,
                       sizeof(info.manufacturerID));
            if (strncmp(manuf, "SoftHSM", 7) != 0
                || !kh_p11lock_tokendir(g_mod.lockdir,
                                        sizeof(g_mod.lockdir))) {
                g_mod.lockdir[0] = '\0';
            }
        }
    }
    snprintf(g_mod.path, sizeof(g_mod.path), "%s", module);
    *fl = g_mod.fl;
    return KH_EXIT_OK;
}

/* Both C_GetSlotList calls for the slots holding a token: *slots (free()
 * it; NULL when none) and *n, the list's CK_RV in *rv. KH_EXIT_TOKEN only
 * when the list cannot be allocated. */
static int slot_list(CK_FUNCTION_LIST_PTR fl, CK_SLOT_ID **slots,
                     CK_ULONG *n, CK_RV *rv, char *err, size_t errlen)
{
    KH_P11LOCK lk;
    int rc = KH_EXIT_OK;

    *slots = NULL;
    *n = 0;
    files_enter(&lk, 0);
    *rv = fl->C_GetSlotList(CK_TRUE, NULL, n);
    if (*rv == CKR_OK && *n > 0) {
        *slots = calloc(*n, sizeof(**slots));
        if (*slots == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "out of memory");
        } else {
            *rv = fl->C_GetSlotList(CK_TRUE, *slots, n);
        }
    }
    kh_p11lock_leave(&lk);
    return rc;
}

/* C_GetTokenInfo, which SoftHSM answers from the token's file. */
static CK_RV token_info(CK_FUNCTION_LIST_PTR fl, CK_SLOT_ID slot,
                        CK_TOKEN_INFO *ti)
{
    KH_P11LOCK lk;
    CK_RV rv;

    files_enter(&lk, 0);
    rv = fl->C_GetTokenInfo(slot, ti);
    kh_p11lock_leave(&lk);
    return rv;
}

/* Slot holding the initialised token |label|; KH_EXIT_TOKEN when none. */
static int find_slot(CK_FUNCTION_LIST_PTR fl, const char *label,
                     CK_SLOT_ID *slot, int *count, char *err, size_t errlen)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, i;
    CK_TOKEN_INFO ti;
    char l[33];
    CK_RV rv;
    int found = 0, rc;

    rc = slot_list(fl, &slots, &n, &rv, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (rv != CKR_OK) {
        free(slots);
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "C_GetSlotList: %s",
                         kh_ckr_name(rv));
    }
    for (i = 0; i < n; i++) {
        if (token_info(fl, slots[i], &ti) != CKR_OK
            || !(ti.flags & CKF_TOKEN_INITIALIZED)) {
            continue;
        }
        kh_p11_str(l, sizeof(l), ti.label, sizeof(ti.label));
        if (strcmp(l, label) == 0) {
            if (found++ == 0) {
                *slot = slots[i];
            }
        }
    }
    free(slots);
    if (count != NULL) {
        *count = found;
    }
    if (found == 0) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "token '%s' not found (is it present? 'keyhold "
                         "doctor' lists the tokens; SoftHSM: check "
                         "SOFTHSM2_CONF)", label);
    }
    if (found > 1) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "%d tokens are labelled '%s': give each a unique "
                         "label", found, label);
    }
    return KH_EXIT_OK;
}

int kh_token_open(KH_CTX *ctx, const char *module, const char *label,
                  KH_TOKEN **out, char *err, size_t errlen)
{
    KH_TOKEN *t;
    CK_FUNCTION_LIST_PTR fl = NULL;
    CK_RV rv;
    int rc, tries;

    *out = NULL;
    if (label == NULL || *label == '\0') {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "no token label (token= in the config or the URI)");
    }
    rc = module_get(module, &fl, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "out of memory");
    }
    t->fl = fl;
    snprintf(t->module, sizeof(t->module), "%s", module_or_default(module));
    snprintf(t->label, sizeof(t->label), "%s", label);
    /* SoftHSM rescans its token directory on every slot list and, while
     * another process rewrites a token file, can miss the token: look
     * again a few times before calling it absent */
    for (tries = 0; tries < 3; tries++) {
        int count = 0;

        rc = find_slot(fl, label, &t->slot, &count, err, errlen);
        if (rc == KH_EXIT_OK || count > 1) {
            break;
        }
        usleep(100 * 1000);
    }
    if (rc != KH_EXIT_OK) {
        free(t);
        return rc;
    }
    rv = fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                           NULL, &t->session);
    if (rv == CKR_TOKEN_WRITE_PROTECTED) {
        rv = fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL,
                               &t->session);
    }
    if (rv != CKR_OK) {
        free(t);
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "open token '%s': %s%s%s", label, kh_ckr_name(rv),
                         kh_ckr_hint(rv) ? " (" : "",
                         kh_ckr_hint(rv) ? kh_ckr_hint(rv) : "");
    }
    kh_dbg(ctx, "token '%s' open (slot %lu)", label, (unsigned long)t->slot);
    *out = t;
    return KH_EXIT_OK;
}

int kh_token_open_identity(KH_CTX *ctx, const KH_IDENTITY *id, KH_TOKEN **out,
                           char *err, size_t errlen)
{
    const char *label = kh_id_get(id, "token");
    const char *module = kh_id_get(id, "module");
    const char *uri = kh_id_get(id, "key-uri");
    KH_P11_URI *u = NULL;
    char uerr[256];
    int rc;

    if ((label == NULL || module == NULL) && uri != NULL
        && kh_p11_uri_parse(uri, &u, uerr, sizeof(uerr))) {
        if (label == NULL) {
            label = u->token;
        }
        if (module == NULL) {
            module = u->module_path;
        }
    }
    rc = kh_token_open(ctx, module, label, out, err, errlen);
    kh_p11_uri_free(u);
    return rc;
}

void kh_token_close(KH_TOKEN *t)
{
    if (t == NULL) {
        return;
    }
    t->fl->C_CloseSession(t->session);
    free(t);
}

int kh_token_get_info(KH_TOKEN *t, KH_TOKEN_INFO *info, char *err,
                      size_t errlen)
{
    CK_TOKEN_INFO ti;
    CK_MECHANISM_TYPE *mechs = NULL;
    CK_ULONG n = 0, i;
    CK_RV rv;

    memset(info, 0, sizeof(*info));
    rv = token_info(t->fl, t->slot, &ti);
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "C_GetTokenInfo: %s",
                         kh_ckr_name(rv));
    }
    kh_p11_str(info->label, sizeof(info->label), ti.label, sizeof(ti.label));
    kh_p11_str(info->serial, sizeof(info->serial), ti.serialNumber,
               sizeof(ti.serialNumber));
    kh_p11_str(info->manufacturer, sizeof(info->manufacturer),
               ti.manufacturerID, sizeof(ti.manufacturerID));
    kh_p11_str(info->model, sizeof(info->model), ti.model, sizeof(ti.model));
    info->flags = ti.flags;
    info->free_public = ti.ulFreePublicMemory;
    info->free_private = ti.ulFreePrivateMemory;
    info->slot = t->slot;
    rv = t->fl->C_GetMechanismList(t->slot, NULL, &n);
    if (rv == CKR_OK && n > 0 && (mechs = calloc(n, sizeof(*mechs))) != NULL
        && t->fl->C_GetMechanismList(t->slot, mechs, &n) == CKR_OK) {
        for (i = 0; i < n; i++) {
            if (mechs[i] == CKM_RSA_PKCS_PSS) {
                info->has_rsa_pss = 1;
            } else if (mechs[i] == CKM_ECDSA) {
                info->has_ecdsa = 1;
            } else if (mechs[i] == CKM_RSA_PKCS) {
                info->has_rsa = 1;
            }
        }
    }
    free(mechs);
    return KH_EXIT_OK;
}


int kh_token_login(KH_TOKEN *t, const char *pin, size_t pinlen, char *err,
                   size_t errlen)
{
    CK_TOKEN_INFO ti;
    KH_P11LOCK lk;
    CK_RV rv;
    int i;

    if (t->logged_in) {
        return KH_EXIT_OK;
    }
    for (i = 0; i < KH_P11_TRIES; i++) {
        rv = token_info(t->fl, t->slot, &ti);
        if (!transient(rv)) {
            break;
        }
        usleep(100 * 1000);
    }
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "token '%s': %s",
                         t->label, kh_ckr_name(rv));
    }
    if (ti.flags & CKF_USER_PIN_LOCKED) {
        return kh_seterr(err, errlen, KH_EXIT_PIN,
                         "token '%s': user PIN is locked (reset it with the "
                         "SO PIN: keyhold token set-pin --so-pin-file F)",
                         t->label);
    }
    if (ti.flags & CKF_USER_PIN_FINAL_TRY) {
        return kh_seterr(err, errlen, KH_EXIT_PIN,
                         "token '%s' is on its final PIN try: not logging in "
                         "(check the PIN file, then reset the counter with "
                         "the SO PIN)", t->label);
    }
    for (i = 0; i < KH_P11_TRIES; i++) {
        /* SoftHSM rewrites the token's file at every login. */
        files_enter(&lk, 1);
        rv = t->fl->C_Login(t->session, CKU_USER, (CK_UTF8CHAR_PTR)pin,
                            (CK_ULONG)pinlen);
        kh_p11lock_leave(&lk);
        if (!transient(rv)) {
            break;
        }
        usleep(100 * 1000);
    }
    if (rv == CKR_USER_ALREADY_LOGGED_IN) {
        rv = CKR_OK;
    }
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE
        || rv == CKR_PIN_INVALID) {
        return kh_seterr(err, errlen, KH_EXIT_PIN,
                         "token '%s': PIN incorrect (%s); check the PIN file "
                         "- further wrong tries lock the token", t->label,
                         kh_ckr_name(rv));
    }
    if (rv == CKR_PIN_LOCKED) {
        return kh_seterr(err, errlen, KH_EXIT_PIN,
                         "token '%s': PIN locked (reset with the SO PIN)",
                         t->label);
    }
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "token '%s': C_Login: %s",
                         t->label, kh_ckr_name(rv));
    }
    t->logged_in = 1;
    return KH_EXIT_OK;
}

static int hex2bin(const char *hex, unsigned char *out, size_t max,
                   size_t *outlen)
{
    size_t n = strlen(hex), i;

    if (n == 0 || n % 2 != 0 || n / 2 > max) {
        return 0;
    }
    for (i = 0; i < n / 2; i++) {
        unsigned int v;

        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return 0;
        }
        out[i] = (unsigned char)v;
    }
    *outlen = n / 2;
    return 1;
}

static void bin2hex(const unsigned char *b, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
    out[2 * n] = '\0';
}

/* Handles of objects matching |tmpl| (at most |max|). */
static CK_ULONG find_objects(KH_TOKEN *t, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                             CK_OBJECT_HANDLE *out, CK_ULONG max)
{
    CK_ULONG got = 0;
    KH_P11LOCK lk;
    CK_RV rv = CKR_OK;
    int i;

    for (i = 0; i < KH_P11_TRIES; i++) {
        got = 0;
        files_enter(&lk, 0);
        rv = t->fl->C_FindObjectsInit(t->session, tmpl, n);
        if (rv == CKR_OK) {
            rv = t->fl->C_FindObjects(t->session, out, max, &got);
            t->fl->C_FindObjectsFinal(t->session);
        }
        kh_p11lock_leave(&lk);
        if (!transient(rv)) {
            break;
        }
        usleep(100 * 1000);
    }
    return rv == CKR_OK ? got : 0;
}

static int check_custody(KH_TOKEN *t, CK_OBJECT_HANDLE priv, char *err,
                         size_t errlen)
{
    CK_BBOOL sens = 0, asens = 0, extr = 1, nextr = 0, local = 0;
    CK_ATTRIBUTE a[] = {
        { CKA_SENSITIVE, &sens, sizeof(sens) },
        { CKA_ALWAYS_SENSITIVE, &asens, sizeof(asens) },
        { CKA_EXTRACTABLE, &extr, sizeof(extr) },
        { CKA_NEVER_EXTRACTABLE, &nextr, sizeof(nextr) },
        { CKA_LOCAL, &local, sizeof(local) },
    };
    CK_RV rv = t->fl->C_GetAttributeValue(t->session, priv, a, 5);

    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "reading the new key's attributes: %s",
                         kh_ckr_name(rv));
    }
    if (!sens || !asens || extr || !nextr || !local) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "token '%s' made a key that is not protected "
                         "(SENSITIVE=%d ALWAYS_SENSITIVE=%d EXTRACTABLE=%d "
                         "NEVER_EXTRACTABLE=%d LOCAL=%d): key destroyed; use "
                         "a token that keeps keys inside", t->label, sens,
                         asens, extr, nextr, local);
    }
    return KH_EXIT_OK;
}

int kh_token_keygen(KH_TOKEN *t, const char *alg, const char *name,
                    unsigned gen, int allow_decrypt, char id_hex[KH_KEYID_HEX],
                    char *err, size_t errlen)
{
    static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
                                          0x3d, 0x03, 0x01, 0x07 };
    static const unsigned char p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
                                          0x22 };
    static const unsigned char e65537[] = { 0x01, 0x00, 0x01 };
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BBOOL dec = allow_decrypt ? CK_TRUE : CK_FALSE;
    CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt;
    CK_ULONG bits = 0;
    CK_MECHANISM mech = { 0, NULL, 0 };
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    unsigned char id[KH_KEYID_LEN];
    char label[128];
    const unsigned char *curve = NULL;
    size_t curvelen = 0;
    KH_P11LOCK lk;
    int is_ec, rc;
    CK_RV rv;

    if (strcmp(alg, "ec-p256") == 0) {
        curve = p256;
        curvelen = sizeof(p256);
    } else if (strcmp(alg, "ec-p384") == 0) {
        curve = p384;
        curvelen = sizeof(p384);
    } else if (strcmp(alg, "rsa-2048") == 0) {
        bits = 2048;
    } else if (strcmp(alg, "rsa-3072") == 0) {
        bits = 3072;
    } else {
        return kh_seterr(err, errlen, KH_EXIT_USAGE,
                         "unknown --alg '%s' (ec-p256, ec-p384, rsa-2048, "
                         "rsa-3072)", alg);
    }
    is_ec = curve != NULL;
    kt = is_ec ? CKK_EC : CKK_RSA;
    mech.mechanism = is_ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN;
    if (RAND_bytes(id, sizeof(id)) != 1) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "no random CKA_ID");
    }
    snprintf(label, sizeof(label), "keyhold:%s:%u", name, gen);

    CK_ATTRIBUTE pubt[] = {
        { CKA_CLASS, &pubc, sizeof(pubc) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &yes, sizeof(yes) },
        { CKA_PRIVATE, &no, sizeof(no) },
        { CKA_VERIFY, &yes, sizeof(yes) },
        { CKA_ENCRYPT, &dec, sizeof(dec) },
        { CKA_ID, id, sizeof(id) },
        { CKA_LABEL, label, strlen(label) },
        { is_ec ? CKA_EC_PARAMS : CKA_MODULUS_BITS,
          is_ec ? (void *)curve : (void *)&bits,
          is_ec ? curvelen : sizeof(bits) },
        { CKA_PUBLIC_EXPONENT, (void *)e65537, sizeof(e65537) },
    };
    CK_ATTRIBUTE privt[] = {
        { CKA_CLASS, &privc, sizeof(privc) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &yes, sizeof(yes) },
        { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
        { CKA_EXTRACTABLE, &no, sizeof(no) },
        { CKA_SIGN, &yes, sizeof(yes) },
        { CKA_DERIVE, &no, sizeof(no) },
        { CKA_UNWRAP, &no, sizeof(no) },
        { CKA_ID, id, sizeof(id) },
        { CKA_LABEL, label, strlen(label) },
        { CKA_DECRYPT, &dec, sizeof(dec) },
    };
    CK_ULONG npub = sizeof(pubt) / sizeof(pubt[0]);
    CK_ULONG npriv = sizeof(privt) / sizeof(privt[0]);

    if (is_ec) {
        /* EC public keys take no exponent and EC keys do not decrypt: an
         * EC identity that may "decrypt" derives (ECDH) instead */
        npub--;
        pubt[5].type = CKA_DERIVE;
        pubt[5].pValue = &no;
        privt[7].pValue = &dec;
        /* said explicitly: SoftHSM defaults CKA_DECRYPT to true */
        privt[11].pValue = &no;
    }
    if (!t->logged_in) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "not logged in");
    }
    /* New object files appear in the token directory. */
    files_enter(&lk, 1);
    rv = t->fl->C_GenerateKeyPair(t->session, &mech, pubt, npub, privt, npriv,
                                  &pub, &priv);
    kh_p11lock_leave(&lk);
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "token '%s': key generation (%s) failed: %s%s",
                         t->label, alg, kh_ckr_name(rv),
                         rv == CKR_DEVICE_MEMORY
                             ? " (token full: zeroize unused identities)"
                             : "");
    }
    kh_crash_point("keygen");
    rc = check_custody(t, priv, err, errlen);
    if (rc != KH_EXIT_OK) {
        files_enter(&lk, 1);
        t->fl->C_DestroyObject(t->session, priv);
        t->fl->C_DestroyObject(t->session, pub);
        kh_p11lock_leave(&lk);
        return rc;
    }
    bin2hex(id, sizeof(id), id_hex);
    return KH_EXIT_OK;
}

static EVP_PKEY *pub_from_attrs(CK_KEY_TYPE kt, const unsigned char *a,
                                size_t alen, const unsigned char *b,
                                size_t blen)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *pt = NULL;
    const unsigned char *p;

    if (bld == NULL) {
        return NULL;
    }
    if (kt == CKK_EC) {
        char gname[80];

        p = a;
        oid = d2i_ASN1_OBJECT(NULL, &p, (long)alen);
        p = b;
        pt = d2i_ASN1_OCTET_STRING(NULL, &p, (long)blen);
        if (oid == NULL || pt == NULL
            || OBJ_obj2txt(gname, sizeof(gname), oid, 0) <= 0
            || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                                OBJ_nid2sn(OBJ_obj2nid(oid)), 0)
            || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                                 ASN1_STRING_get0_data(pt),
                                                 ASN1_STRING_length(pt))) {
            goto end;
        }
        pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", "provider=default");
    } else {
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(b, (int)blen, NULL);
        if (n == NULL || e == NULL
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
            goto end;
        }
        pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", "provider=default");
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (pctx == NULL || params == NULL || EVP_PKEY_fromdata_init(pctx) <= 0
        || EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pkey = NULL;
    }
end:
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(pt);
    return pkey;
}

int kh_token_get_pubkey(KH_TOKEN *t, const char *id_hex, EVP_PKEY **pub,
                        char *err, size_t errlen)
{
    unsigned char id[64];
    size_t idlen = 0;
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_OBJECT_HANDLE h;
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE q[2];
    CK_ATTRIBUTE a[2];
    unsigned char *v1 = NULL, *v2 = NULL;
    int rc = KH_EXIT_TOKEN;
    CK_RV rv;

    *pub = NULL;
    if (id_hex == NULL || !hex2bin(id_hex, id, sizeof(id), &idlen)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "bad key id '%s'",
                         id_hex ? id_hex : "");
    }
    q[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
    q[1] = (CK_ATTRIBUTE){ CKA_ID, id, idlen };
    if (find_objects(t, q, 2, &h, 1) != 1) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN,
                         "token '%s' has no key with id %s (key-missing: it "
                         "was deleted or this is another token; provision "
                         "again)", t->label, id_hex);
    }
    a[0] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kt, sizeof(kt) };
    if (t->fl->C_GetAttributeValue(t->session, h, a, 1) != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "reading key type failed");
    }
    if (kt == CKK_EC) {
        a[0] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, NULL, 0 };
        a[1] = (CK_ATTRIBUTE){ CKA_EC_POINT, NULL, 0 };
    } else if (kt == CKK_RSA) {
        a[0] = (CK_ATTRIBUTE){ CKA_MODULUS, NULL, 0 };
        a[1] = (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, NULL, 0 };
    } else {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "key %s: unsupported type",
                         id_hex);
    }
    rv = t->fl->C_GetAttributeValue(t->session, h, a, 2);
    if (rv != CKR_OK || a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION
        || a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION
        || a[0].ulValueLen > 8192 || a[1].ulValueLen > 8192) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "reading public key %s: %s", id_hex, kh_ckr_name(rv));
    }
    v1 = malloc(a[0].ulValueLen + 1);
    v2 = malloc(a[1].ulValueLen + 1);
    if (v1 == NULL || v2 == NULL) {
        goto end;
    }
    a[0].pValue = v1;
    a[1].pValue = v2;
    rv = t->fl->C_GetAttributeValue(t->session, h, a, 2);
    if (rv != CKR_OK) {
        kh_seterr(err, errlen, KH_EXIT_TOKEN, "reading public key %s: %s",
                  id_hex, kh_ckr_name(rv));
        goto end;
    }
    *pub = pub_from_attrs(kt, v1, a[0].ulValueLen, v2, a[1].ulValueLen);
    if (*pub == NULL) {
        kh_seterr(err, errlen, KH_EXIT_TOKEN, "public key %s is malformed",
                  id_hex);
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    free(v1);
    free(v2);
    return rc;
}

static int destroy_matching(KH_TOKEN *t, CK_ATTRIBUTE *q, CK_ULONG nq,
                            CK_OBJECT_HANDLE keep, int *count)
{
    CK_OBJECT_HANDLE hs[64];
    CK_ULONG n, i;
    KH_P11LOCK lk;
    CK_RV rv;
    int ok = 1;

    n = find_objects(t, q, nq, hs, 64);
    for (i = 0; i < n; i++) {
        if (hs[i] == keep) {
            continue;
        }
        files_enter(&lk, 1);
        rv = t->fl->C_DestroyObject(t->session, hs[i]);
        kh_p11lock_leave(&lk);
        if (rv != CKR_OK) {
            ok = 0;
        } else if (count != NULL) {
            (*count)++;
        }
    }
    return ok;
}

int kh_token_store_cert(KH_TOKEN *t, const char *id_hex, const char *label,
                        X509 *cert, char *err, size_t errlen)
{
    unsigned char id[64];
    size_t idlen = 0;
    unsigned char *der = NULL, *subj = NULL, *iss = NULL, *ser = NULL;
    int derlen, sl, il, serl;
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv;
    int rc = KH_EXIT_TOKEN;

    if (!hex2bin(id_hex, id, sizeof(id), &idlen)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "bad key id");
    }
    derlen = i2d_X509(cert, &der);
    sl = i2d_X509_NAME(X509_get_subject_name(cert), &subj);
    il = i2d_X509_NAME(X509_get_issuer_name(cert), &iss);
    serl = i2d_ASN1_INTEGER(X509_get_serialNumber(cert), &ser);
    if (derlen <= 0 || sl <= 0 || il <= 0 || serl <= 0) {
        kh_seterr(err, errlen, KH_EXIT_REJECTED, "cannot encode certificate");
        goto end;
    }
    {
        CK_ATTRIBUTE tmpl[] = {
            { CKA_CLASS, &cls, sizeof(cls) },
            { CKA_CERTIFICATE_TYPE, &ct, sizeof(ct) },
            { CKA_TOKEN, &yes, sizeof(yes) },
            { CKA_PRIVATE, &no, sizeof(no) },
            { CKA_ID, id, idlen },
            { CKA_LABEL, (void *)label, strlen(label) },
            { CKA_SUBJECT, subj, (CK_ULONG)sl },
            { CKA_ISSUER, iss, (CK_ULONG)il },
            { CKA_SERIAL_NUMBER, ser, (CK_ULONG)serl },
            { CKA_VALUE, der, (CK_ULONG)derlen },
        };
        CK_ATTRIBUTE q[] = {
            { CKA_CLASS, &cls, sizeof(cls) },
            { CKA_ID, id, idlen },
        };

        KH_P11LOCK lk;
        int i;

        for (i = 0; i < KH_P11_TRIES; i++) {
            files_enter(&lk, 1);
            rv = t->fl->C_CreateObject(t->session, tmpl,
                                       sizeof(tmpl) / sizeof(tmpl[0]), &h);
            kh_p11lock_leave(&lk);
            if (!transient(rv)) {
                break;
            }
            usleep(100 * 1000);
        }
        if (rv != CKR_OK) {
            kh_seterr(err, errlen, KH_EXIT_TOKEN,
                      "storing the certificate in token '%s': %s", t->label,
                      kh_ckr_name(rv));
            goto end;
        }
        /* the new object exists before the old ones go */
        destroy_matching(t, q, 2, h, NULL);
    }
    rc = KH_EXIT_OK;
end:
    OPENSSL_free(der);
    OPENSSL_free(subj);
    OPENSSL_free(iss);
    OPENSSL_free(ser);
    return rc;
}

int kh_token_destroy_id(KH_TOKEN *t, const char *id_hex, int *count,
                        char *err, size_t errlen)
{
    unsigned char id[64];
    size_t idlen = 0;
    CK_ATTRIBUTE q[1];
    int n = 0;

    if (!hex2bin(id_hex, id, sizeof(id), &idlen)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "bad key id");
    }
    q[0] = (CK_ATTRIBUTE){ CKA_ID, id, idlen };
    if (!destroy_matching(t, q, 1, CK_INVALID_HANDLE, &n)) {
        if (count != NULL) {
            *count = n;
        }
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "token '%s': could not destroy every object of key "
                         "%s (log in as the user; is the token writable?)",
                         t->label, id_hex);
    }
    if (count != NULL) {
        *count = n;
    }
    return KH_EXIT_OK;
}

int kh_token_list_ids(KH_TOKEN *t, const char *name, KH_STRLIST *ids,
                      char *err, size_t errlen)
{
    CK_OBJECT_CLASS classes[2] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
    CK_OBJECT_HANDLE hs[256];
    char prefix[KH_NAME_MAX + 16];
    int c;

    snprintf(prefix, sizeof(prefix), "keyhold:%s:", name);
    for (c = 0; c < 2; c++) {
        CK_ATTRIBUTE q[] = { { CKA_CLASS, &classes[c], sizeof(classes[c]) } };
        CK_ULONG n = find_objects(t, q, 1, hs, 256), i;

        for (i = 0; i < n; i++) {
            unsigned char label[128], id[64];
            char hex[2 * sizeof(id) + 1];
            CK_ATTRIBUTE a[] = {
                { CKA_LABEL, label, sizeof(label) - 1 },
                { CKA_ID, id, sizeof(id) },
            };

            if (t->fl->C_GetAttributeValue(t->session, hs[i], a, 2) != CKR_OK
                || a[0].ulValueLen >= sizeof(label) || a[1].ulValueLen == 0
                || a[1].ulValueLen > sizeof(id)) {
                continue;
            }
            label[a[0].ulValueLen] = '\0';
            if (strncmp((char *)label, prefix, strlen(prefix)) != 0) {
                continue;
            }
            bin2hex(id, a[1].ulValueLen, hex);
            if (!kh_strlist_has(ids, hex) && !kh_strlist_add(ids, hex)) {
                return kh_seterr(err, errlen, KH_EXIT_TOKEN, "out of memory");
            }
        }
    }
    return KH_EXIT_OK;
}

int kh_token_init(KH_CTX *ctx, const char *module, const char *label,
                  const char *so_pin, size_t so_len, const char *pin,
                  size_t pin_len, char serial[17], char *err, size_t errlen)
{
    CK_FUNCTION_LIST_PTR fl = NULL;
    CK_SLOT_ID *slots = NULL, slot = 0;
    CK_ULONG n = 0, i;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    unsigned char lab[32];
    KH_P11LOCK lk;
    int rc, count = 0, found = 0;
    CK_RV rv;

    if (label == NULL || *label == '\0' || strlen(label) > 32) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE,
                         "--label must have 1 to 32 characters");
    }
    rc = module_get(module, &fl, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (find_slot(fl, label, &slot, &count, NULL, 0) == KH_EXIT_OK
        || count > 0) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "a token labelled '%s' exists already (pick another "
                         "label, or zeroize and delete it first)", label);
    }
    rc = slot_list(fl, &slots, &n, &rv, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    for (i = 0; rv == CKR_OK && i < n; i++) {
        if (token_info(fl, slots[i], &ti) == CKR_OK
            && !(ti.flags & CKF_TOKEN_INITIALIZED)) {
            slot = slots[i];
            found = 1;
            break;
        }
    }
    free(slots);
    if (!found) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "no free slot for a new token in %s (SoftHSM: check "
                         "SOFTHSM2_CONF and its tokendir)",
                         module_or_default(module));
    }
    memset(lab, ' ', sizeof(lab));
    memcpy(lab, label, strlen(label));
    files_enter(&lk, 1);
    rv = fl->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, (CK_ULONG)so_len, lab);
    kh_p11lock_leave(&lk);
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "C_InitToken: %s",
                         kh_ckr_name(rv));
    }
    /* SoftHSM moves an initialised token to a new slot id: look it up */
    rc = find_slot(fl, label, &slot, NULL, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                           NULL, &s);
    /* The SO login and the new user PIN rewrite the token's file. */
    files_enter(&lk, 1);
    if (rv == CKR_OK) {
        rv = fl->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, (CK_ULONG)so_len);
    }
    if (rv == CKR_OK) {
        rv = fl->C_InitPIN(s, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)pin_len);
        fl->C_Logout(s);
    }
    kh_p11lock_leave(&lk);
    if (s != CK_INVALID_HANDLE) {
        fl->C_CloseSession(s);
    }
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                         "token '%s': setting the user PIN: %s", label,
                         kh_ckr_name(rv));
    }
    if (token_info(fl, slot, &ti) == CKR_OK) {
        kh_p11_str(serial, 17, ti.serialNumber, sizeof(ti.serialNumber));
    } else {
        serial[0] = '\0';
    }
    kh_dbg(ctx, "token '%s' initialised, serial %s", label, serial);
    return KH_EXIT_OK;
}

int kh_token_set_pin(KH_TOKEN *t, const char *old_pin, size_t old_len,
                     const char *new_pin, size_t new_len, char *err,
                     size_t errlen)
{
    int rc = kh_token_login(t, old_pin, old_len, err, errlen);
    KH_P11LOCK lk;
    CK_RV rv;

    if (rc != KH_EXIT_OK) {
        return rc;
    }
    files_enter(&lk, 1);
    rv = t->fl->C_SetPIN(t->session, (CK_UTF8CHAR_PTR)old_pin,
                         (CK_ULONG)old_len, (CK_UTF8CHAR_PTR)new_pin,
                         (CK_ULONG)new_len);
    kh_p11lock_leave(&lk);
    if (rv != CKR_OK) {
        return kh_seterr(err, errlen,
                         rv == CKR_PIN_INCORRECT ? KH_EXIT_PIN : KH_EXIT_TOKEN,
                         "token '%s': C_SetPIN: %s%s", t->label,
                         kh_ckr_name(rv),
                         rv == CKR_PIN_LEN_RANGE ? " (PIN length not accepted "
                                                   "by the token)" : "");
    }
    return KH_EXIT_OK;
}

char *kh_token_key_uri(const char *module, const char *label,
                       const char *id_hex)
{
    KH_P11_URI u;
    unsigned char id[64];
    size_t idlen = 0;
    char *s;

    memset(&u, 0, sizeof(u));
    u.slot_id = -1;
    u.token = (char *)label;
    u.type = KH_URI_TYPE_PRIVATE;
    if (id_hex != NULL && hex2bin(id_hex, id, sizeof(id), &idlen)) {
        u.id = id;
        u.idlen = idlen;
        u.has_id = 1;
    }
    if (module != NULL && *module != '\0'
        && strcmp(module, KH_DEFAULT_P11_MODULE) != 0) {
        u.module_path = (char *)module;
    }
    s = kh_p11_uri_format(&u, KH_URI_FMT_MODULE);
    return s;
}
