/* SPDX-License-Identifier: MIT */
/* The limit: C_SignInit + C_Sign straight against the module, one logged-in
 * session per thread, the digest already computed. Nothing a provider can
 * do costs less than this. */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kh_bench.h"
#include "kh_p11util.h"

/* DER prefix of DigestInfo for SHA-256 (RFC 8017, 9.2 note 1). */
static const unsigned char sha256_prefix[] = {
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
    0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20
};

int khb_p11_open(KHB_P11 *p, int allow_initialized)
{
    CK_C_INITIALIZE_ARGS args;
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64, i;
    CK_TOKEN_INFO ti;
    char err[256], label[33];
    CK_RV rv;

    memset(p, 0, sizeof(*p));
    if (!kh_p11_module_open(khb_env.module, &p->dlh, &p->f, err,
                            sizeof(err))) {
        fprintf(stderr, "kh-bench: %s\n", err);
        return 0;
    }
    /* Threads share the module: OS locking, as every provider asks for. */
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = p->f->C_Initialize(&args);
    if (rv != CKR_OK
        && !(allow_initialized && rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
        fprintf(stderr, "kh-bench: C_Initialize: %s\n", kh_ckr_name(rv));
        return 0;
    }
    rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        fprintf(stderr, "kh-bench: C_GetSlotList: %s\n", kh_ckr_name(rv));
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
            continue;
        }
        kh_p11_str(label, sizeof(label), ti.label, sizeof(ti.label));
        if (strcmp(label, khb_env.token) == 0) {
            p->slot = slots[i];
            return 1;
        }
    }
    fprintf(stderr, "kh-bench: token '%s' not found\n", khb_env.token);
    return 0;
}

int khb_p11_session(KHB_P11 *p, CK_SESSION_HANDLE *s, int login)
{
    CK_RV rv;

    rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, s);
    if (rv != CKR_OK) {
        fprintf(stderr, "kh-bench: C_OpenSession: %s\n", kh_ckr_name(rv));
        return 0;
    }
    if (login) {
        rv = p->f->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)khb_env.pin,
                           strlen(khb_env.pin));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
            fprintf(stderr, "kh-bench: C_Login: %s\n", kh_ckr_name(rv));
            return 0;
        }
    }
    return 1;
}

int khb_p11_find_key(KHB_P11 *p, CK_SESSION_HANDLE s, const char *label,
                     CK_OBJECT_HANDLE *key)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_ULONG n = 0;
    CK_RV rv;

    rv = p->f->C_FindObjectsInit(s, tmpl, 2);
    if (rv == CKR_OK) {
        rv = p->f->C_FindObjects(s, key, 1, &n);
        p->f->C_FindObjectsFinal(s);
    }
    if (rv != CKR_OK || n != 1) {
        fprintf(stderr, "kh-bench: private key '%s' not found (%s)\n", label,
                kh_ckr_name(rv));
        return 0;
    }
    return 1;
}

void khb_p11_prepare(enum khb_alg alg, const unsigned char *msg, size_t len,
                     CK_MECHANISM *mech, CK_RSA_PKCS_PSS_PARAMS *pss,
                     unsigned char *tbs, CK_ULONG *tbslen)
{
    unsigned char md[32];

    EVP_Digest(msg, len, md, NULL, EVP_sha256(), NULL);
    memset(mech, 0, sizeof(*mech));
    switch (alg) {
    case KHB_ECDSA:
        mech->mechanism = CKM_ECDSA;
        memcpy(tbs, md, 32);
        *tbslen = 32;
        break;
    case KHB_RSA_PKCS1:
        mech->mechanism = CKM_RSA_PKCS;
        memcpy(tbs, sha256_prefix, sizeof(sha256_prefix));
        memcpy(tbs + sizeof(sha256_prefix), md, 32);
        *tbslen = sizeof(sha256_prefix) + 32;
        break;
    default:
        pss->hashAlg = CKM_SHA256;
        pss->mgf = CKG_MGF1_SHA256;
        pss->sLen = 32;
        mech->mechanism = CKM_RSA_PKCS_PSS;
        mech->pParameter = pss;
        mech->ulParameterLen = sizeof(*pss);
        memcpy(tbs, md, 32);
        *tbslen = 32;
        break;
    }
}

/*
 * SoftHSM numbers session handles from 1 upwards and reuses freed ones, so
 * probing a bounded range counts the sessions of the whole process (every
 * user of the module in it shares one instance).
 */
int khb_p11_count_sessions(KHB_P11 *p)
{
    CK_SESSION_INFO si;
    CK_SESSION_HANDLE h;
    int n = 0;

    for (h = 1; h <= 1024; h++) {
        if (p->f->C_GetSessionInfo(h, &si) == CKR_OK) {
            n++;
        }
    }
    return n;
}

struct raw_state {
    KHB_P11 *p;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    unsigned char tbs[64];
    CK_ULONG tbslen;
};

static int raw_op(void *arg)
{
    struct raw_state *st = arg;
    unsigned char sig[512];
    CK_ULONG siglen = sizeof(sig);
    CK_RV rv;

    rv = st->p->f->C_SignInit(st->s, &st->mech, st->key);
    if (rv == CKR_OK) {
        rv = st->p->f->C_Sign(st->s, st->tbs, st->tbslen, sig, &siglen);
    }
    if (rv != CKR_OK) {
        fprintf(stderr, "kh-bench: raw sign: %s\n", kh_ckr_name(rv));
        return 0;
    }
    return 1;
}

/* The raw path of the "sign" child: one module, two sessions (the first
 * logged in, which logs in the application), both keys. */
static struct {
    KHB_P11 p;
    CK_SESSION_HANDLE s[2];
    CK_OBJECT_HANDLE keys[2];
    struct raw_state st[2];
    unsigned char msg[KHB_MSG_LEN];
} raw;

int khb_raw_open(void)
{
    RAND_bytes(raw.msg, sizeof(raw.msg));
    return khb_p11_open(&raw.p, 1) && khb_p11_session(&raw.p, &raw.s[0], 1)
           && khb_p11_session(&raw.p, &raw.s[1], 0)
           && khb_p11_find_key(&raw.p, raw.s[0], "bench-ec", &raw.keys[0])
           && khb_p11_find_key(&raw.p, raw.s[0], "bench-rsa", &raw.keys[1]);
}

void *khb_raw_state(enum khb_alg alg, int thread)
{
    struct raw_state *st = &raw.st[thread & 1];

    st->p = &raw.p;
    st->s = raw.s[thread & 1];
    st->key = raw.keys[alg == KHB_ECDSA ? 0 : 1];
    khb_p11_prepare(alg, raw.msg, sizeof(raw.msg), &st->mech, &st->pss,
                    st->tbs, &st->tbslen);
    return st;
}

int khb_raw_op(void *state)
{
    return raw_op(state);
}

int khb_profile_raw(enum khb_alg alg, long n)
{
    static struct raw_state st;
    KHB_P11 p;
    CK_SESSION_HANDLE s;
    unsigned char msg[KHB_MSG_LEN] = { 0 };

    if (!khb_p11_open(&p, 0) || !khb_p11_session(&p, &s, 1)
        || !khb_p11_find_key(&p, s, alg == KHB_ECDSA ? "bench-ec"
                                                     : "bench-rsa", &st.key)) {
        return 1;
    }
    st.p = &p;
    st.s = s;
    khb_p11_prepare(alg, msg, sizeof(msg), &st.mech, &st.pss, st.tbs,
                    &st.tbslen);
    return khb_profile_loop(raw_op, &st, n) ? 0 : 1;
}
