/* SPDX-License-Identifier: MIT */
/*
 * Signatures and TLS handshakes through OpenSSL's standard API, the same
 * code for every key path: a software key (the ceiling), a keyhold key
 * loaded from a pkcs11: URI, a libp11 engine key, TPM keys. Also the
 * footprint (keyhold loaded but unused) and memory children.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/store.h>

#include "kh_bench.h"

/*
 * keyhold with key-files = no. OpenSSL 3.0 passes provider parameters only
 * from a configuration file, so one is written for this process, loaded
 * into the context and removed.
 */
static int load_keyhold_no_key_files(OSSL_LIB_CTX *ctx)
{
    char path[4096];
    FILE *f;
    int ok;

    snprintf(path, sizeof(path), "%s/keyfiles-no.%ld.cnf", khb_env.dir,
             (long)getpid());
    f = fopen(path, "w");
    if (f == NULL) {
        return 0;
    }
    fprintf(f, "openssl_conf = openssl_init\n"
               "[openssl_init]\n"
               "providers = provider_sect\n"
               "[provider_sect]\n"
               "keyhold = keyhold_sect\n"
               "[keyhold_sect]\n"
               "module = %s/keyhold.so\n"
               "key-files = no\n"
               "activate = 1\n", khb_env.provdir);
    ok = fclose(f) == 0 && OSSL_LIB_CTX_load_config(ctx, path);
    unlink(path);
    return ok && OSSL_PROVIDER_available(ctx, "keyhold");
}

/* |keyhold|: 0 not loaded, 1 loaded, 2 loaded with key-files = no */
OSSL_LIB_CTX *khb_libctx_new(int keyhold)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();

    if (ctx == NULL) {
        return NULL;
    }
    if (OSSL_PROVIDER_load(ctx, "default") == NULL) {
        khb_ossl_err("load default provider");
        goto err;
    }
    if (keyhold == 2) {
        if (!load_keyhold_no_key_files(ctx)) {
            khb_ossl_err("load keyhold provider with key-files = no");
            goto err;
        }
    } else if (keyhold) {
        if (!OSSL_PROVIDER_set_default_search_path(ctx, khb_env.provdir)
            || OSSL_PROVIDER_load(ctx, "keyhold") == NULL) {
            khb_ossl_err("load keyhold provider");
            goto err;
        }
    }
    return ctx;
err:
    OSSL_LIB_CTX_free(ctx);
    return NULL;
}

EVP_PKEY *khb_load_pem_key(OSSL_LIB_CTX *libctx, const char *file)
{
    EVP_PKEY *pk = NULL;
    BIO *in = BIO_new_file(file, "r");

    if (in != NULL) {
        pk = PEM_read_bio_PrivateKey_ex(in, NULL, NULL, NULL, libctx, NULL);
        BIO_free(in);
    }
    if (pk == NULL) {
        khb_ossl_err(file);
    }
    return pk;
}

EVP_PKEY *khb_load_uri_key(OSSL_LIB_CTX *libctx, const char *uri,
                           const char *propq)
{
    OSSL_STORE_CTX *sc;
    OSSL_STORE_INFO *info;
    EVP_PKEY *pk = NULL;
    int guard;

    sc = OSSL_STORE_open_ex(uri, libctx, propq, NULL, NULL, NULL, NULL,
                            NULL);
    if (sc == NULL) {
        khb_ossl_err("OSSL_STORE_open_ex");
        return NULL;
    }
    OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
    for (guard = 0; guard < 64 && pk == NULL && !OSSL_STORE_eof(sc);
         guard++) {
        info = OSSL_STORE_load(sc);
        if (info != NULL && OSSL_STORE_INFO_get_type(info)
                            == OSSL_STORE_INFO_PKEY) {
            pk = OSSL_STORE_INFO_get1_PKEY(info);
        }
        OSSL_STORE_INFO_free(info);
        if (info == NULL && OSSL_STORE_error(sc)) {
            break;
        }
    }
    OSSL_STORE_close(sc);
    if (pk == NULL) {
        khb_ossl_err("load key from URI");
    }
    return pk;
}

const char *khb_uri(int slot, const char *label, int with_pin_source)
{
    static char buf[4][2048];
    char *b = buf[slot & 3];

    if (with_pin_source) {
        snprintf(b, sizeof(buf[0]), "pkcs11:token=%s;object=%s;type=private"
                 "?module-path=%s&pin-source=file:%s", khb_env.token, label,
                 khb_env.module, khb_path(3, "pin"));
    } else {
        /* libp11 takes the module and PIN through engine controls */
        snprintf(b, sizeof(buf[0]), "pkcs11:token=%s;object=%s;type=private",
                 khb_env.token, label);
    }
    return b;
}

/* ---------------------------------------------------------------- sign */

struct sig_state {
    EVP_MD_CTX *mctx;
    EVP_PKEY *pkey;
    OSSL_LIB_CTX *libctx;
    const char *propq;
    enum khb_alg alg;
    int reuse;          /* keep the context: re-initialise it per signature */
    int primed;         /* reuse: the context holds the key and padding */
    unsigned char msg[KHB_MSG_LEN];
    unsigned char sig[512];
    size_t siglen;
};

/*
 * EVP_DigestSignInit_ex with the key (or, |again|, without: the context's
 * key is kept) and the algorithm's padding. The padding is set again on a
 * re-initialised context too: OpenSSL's own RSA signature resets it to
 * PKCS#1 v1.5 there.
 */
static int sig_init_key(struct sig_state *st, EVP_MD_CTX *mctx, int verify,
                        int again)
{
    EVP_PKEY_CTX *pctx = NULL;
    int ok = verify ? EVP_DigestVerifyInit_ex(mctx, &pctx, "SHA256",
                                              st->libctx, st->propq,
                                              st->pkey, NULL)
             : again ? EVP_DigestSignInit_ex(mctx, &pctx, "SHA256", NULL,
                                             NULL, NULL, NULL)
                     : EVP_DigestSignInit_ex(mctx, &pctx, "SHA256",
                                             st->libctx, st->propq, st->pkey,
                                             NULL);

    if (!ok) {
        return 0;
    }
    if (st->alg == KHB_RSA_PKCS1
        && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
        return 0;
    }
    if (st->alg == KHB_RSA_PSS
        && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                RSA_PSS_SALTLEN_DIGEST) <= 0)) {
        return 0;
    }
    return 1;
}

/*
 * What an application does per signature (and what libssl does per
 * handshake): init with the key, set padding, sign, reset.
 * With |reuse|, what a program that signs many messages with one key can
 * do instead: the first signature sets the context up with the key,
 * every later one re-initialises it with EVP_DigestSignInit_ex and no key
 * (OpenSSL keeps the key and the signature context) and sets the padding,
 * so OpenSSL builds no EVP_PKEY_CTX per signature.
 */
static int sig_op(void *arg)
{
    struct sig_state *st = arg;
    int ok = 0;

    if (!sig_init_key(st, st->mctx, 0, st->reuse && st->primed)) {
        goto end;
    }
    st->siglen = sizeof(st->sig);
    if (!EVP_DigestSign(st->mctx, st->sig, &st->siglen, st->msg,
                        sizeof(st->msg))) {
        goto end;
    }
    ok = 1;
end:
    st->primed = st->reuse && ok;
    if (!st->primed) {
        EVP_MD_CTX_reset(st->mctx);
    }
    if (!ok) {
        khb_ossl_err("EVP_DigestSign");
    }
    return ok;
}

/*
 * Before a reused context is measured: two signatures that way (the
 * second from the re-initialised context), the second verified with the
 * public key, so a fast path that signs wrongly is never timed.
 */
static int sig_check_reuse(struct sig_state *st)
{
    EVP_MD_CTX *v = EVP_MD_CTX_new();
    int ok = 0;

    if (v == NULL || !sig_op(st) || !sig_op(st)
        || !sig_init_key(st, v, 1, 0)
        || EVP_DigestVerify(v, st->sig, st->siglen, st->msg,
                            sizeof(st->msg)) != 1) {
        khb_ossl_err("reused context: signature check");
        goto end;
    }
    ok = 1;
end:
    EVP_MD_CTX_free(v);
    return ok;
}

static const char *path_name(enum khb_path path)
{
    switch (path) {
    case KHB_PATH_SW:
        return "sw";
    case KHB_PATH_KEYHOLD:
        return "keyhold";
    case KHB_PATH_LIBP11:
        return "libp11";
    case KHB_PATH_TPM_KEYHOLD:
        return "tpm-keyhold";
    case KHB_PATH_TPM_KEYHOLD_HOLD:
        return "tpm-keyhold-hold";
    default:
        return "tpm-peer";
    }
}

/*
 * The key pair of a path: [0] EC P-256, [1] RSA-2048, with the library
 * context and property query to use them with, and their certificates.
 */
struct path_keys {
    OSSL_LIB_CTX *libctx;
    const char *propq;
    EVP_PKEY *key[2];
    char cert[2][1024];
};

static int load_path(enum khb_path path, struct path_keys *pk)
{
    static const char *const hw_label[2] = { "bench-ec", "bench-rsa" };
    int i;

    memset(pk, 0, sizeof(*pk));
    for (i = 0; i < 2; i++) {
        snprintf(pk->cert[i], sizeof(pk->cert[i]), "%s",
                 khb_path(0, path == KHB_PATH_SW
                             ? (i ? "sw-rsa.crt" : "sw-ec.crt")
                             : path == KHB_PATH_TPM_KEYHOLD
                                   || path == KHB_PATH_TPM_KEYHOLD_HOLD
                                   || path == KHB_PATH_TPM_PEER
                             ? (i ? "tpm-rsa.crt" : "tpm-ec.crt")
                             : (i ? "hw-rsa.crt" : "hw-ec.crt")));
    }
    switch (path) {
    case KHB_PATH_SW:
        pk->libctx = khb_libctx_new(0);
        if (pk->libctx == NULL) {
            return 0;
        }
        pk->key[0] = khb_load_pem_key(pk->libctx, khb_path(0, "sw-ec.key"));
        pk->key[1] = khb_load_pem_key(pk->libctx, khb_path(0, "sw-rsa.key"));
        break;
    case KHB_PATH_KEYHOLD:
        pk->libctx = khb_libctx_new(1);
        if (pk->libctx == NULL) {
            return 0;
        }
        for (i = 0; i < 2; i++) {
            pk->key[i] = khb_load_uri_key(pk->libctx, khb_uri(0, hw_label[i], 1),
                                          NULL);
        }
        break;
    case KHB_PATH_LIBP11:
        pk->libctx = NULL; /* engines live in the default context only */
        for (i = 0; i < 2; i++) {
            pk->key[i] = khb_libp11_load(hw_label[i]);
        }
        break;
    case KHB_PATH_TPM_KEYHOLD:
    case KHB_PATH_TPM_KEYHOLD_HOLD:
        /*
         * Read by the TPM backend when it first reaches the TPM. It picks
         * "connect per operation" by itself for a swtpm: TCTI, but the
         * counting TCTI in front hides that name, so say it explicitly.
         */
        setenv("KEYHOLD_TPM_HOLD", path == KHB_PATH_TPM_KEYHOLD_HOLD ? "1" : "0",
               1);
        pk->libctx = khb_libctx_new(1);
        if (pk->libctx == NULL) {
            return 0;
        }
        pk->key[0] = khb_load_pem_key(pk->libctx, khb_path(0, "tpm-ec.tss"));
        pk->key[1] = khb_load_pem_key(pk->libctx, khb_path(0, "tpm-rsa.tss"));
        break;
    case KHB_PATH_TPM_PEER:
        pk->libctx = OSSL_LIB_CTX_new();
        if (pk->libctx == NULL
            || OSSL_PROVIDER_load(pk->libctx, "default") == NULL
            || OSSL_PROVIDER_load(pk->libctx, "tpm2") == NULL) {
            khb_ossl_err("load tpm2 provider");
            return 0;
        }
        pk->propq = "?provider=tpm2";
        for (i = 0; i < 2; i++) {
            BIO *in = BIO_new_file(khb_path(0, i ? "tpm-rsa.tss"
                                                 : "tpm-ec.tss"), "r");

            if (in != NULL) {
                pk->key[i] = PEM_read_bio_PrivateKey_ex(in, NULL, NULL, NULL,
                                                        pk->libctx,
                                                        pk->propq);
                BIO_free(in);
            }
            if (pk->key[i] == NULL) {
                khb_ossl_err("tpm2-openssl key");
            }
        }
        break;
    }
    return pk->key[0] != NULL && pk->key[1] != NULL;
}

/*
 * TPM rows run one thread: swtpm serves one command at a time and
 * tpm2-openssl shares one ESYS context per provider without a lock.
 */
static int max_threads(enum khb_path path)
{
    return path == KHB_PATH_TPM_KEYHOLD || path == KHB_PATH_TPM_PEER
                   || path == KHB_PATH_TPM_KEYHOLD_HOLD
               ? 1
               : 2;
}

/* Frees what load_path() made: TPM backends flush key contexts here. */
static void free_path(struct path_keys *pk)
{
    EVP_PKEY_free(pk->key[0]);
    EVP_PKEY_free(pk->key[1]);
    OSSL_LIB_CTX_free(pk->libctx);
    memset(pk, 0, sizeof(*pk));
}

int khb_child_sign(enum khb_path path)
{
    static struct sig_state st[2];
    struct path_keys pk;
    void *states[2] = { &st[0], &st[1] };
    char name[128];
    int a, t, i, rc = 1;
    double r;

    if (!load_path(path, &pk)) {
        goto end;
    }
    for (a = 0; a < KHB_NALG; a++) {
        for (i = 0; i < 2; i++) {
            if (st[i].mctx == NULL) {
                st[i].mctx = EVP_MD_CTX_new();
                RAND_bytes(st[i].msg, sizeof(st[i].msg));
            }
            st[i].pkey = pk.key[a == KHB_ECDSA ? 0 : 1];
            st[i].libctx = pk.libctx;
            st[i].propq = pk.propq;
            st[i].alg = a;
        }
        for (t = 1; t <= max_threads(path); t++) {
            r = khb_measure(sig_op, states, t);
            if (r < 0) {
                goto end;
            }
            snprintf(name, sizeof(name), "sign.%s.%s.t%d", path_name(path),
                     khb_alg_name[a], t);
            khb_rate(name, r);
        }
    }
    rc = 0;
end:
    for (i = 0; i < 2; i++) {
        EVP_MD_CTX_free(st[i].mctx);
        st[i].mctx = NULL;
    }
    free_path(&pk);
    return rc;
}

int khb_profile(const char *path, enum khb_alg alg, long n)
{
    static const char *const names[] = {
        "sw", "keyhold", "libp11", "tpm-keyhold", "tpm-peer",
        "tpm-keyhold-hold"
    };
    struct sig_state st;
    struct path_keys pk;
    size_t i, len = strcspn(path, "+");
    int rc = 1;

    memset(&st, 0, sizeof(st));
    memset(&pk, 0, sizeof(pk));
    /* PATH+reuse: the context re-initialised per signature (sig_op) */
    st.reuse = strcmp(path + len, "+reuse") == 0;
    if (path[len] != '\0' && !st.reuse) {
        fprintf(stderr, "kh-bench: unknown path '%s'\n", path);
        return 1;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == len && strncmp(path, names[i], len) == 0) {
            break;
        }
    }
    if (i == sizeof(names) / sizeof(names[0])) {
        fprintf(stderr, "kh-bench: unknown path '%s'\n", path);
        return 1;
    }
    st.mctx = EVP_MD_CTX_new();
    if (st.mctx == NULL || !load_path((enum khb_path)i, &pk)) {
        goto end;
    }
    st.pkey = pk.key[alg == KHB_ECDSA ? 0 : 1];
    st.libctx = pk.libctx;
    st.propq = pk.propq;
    st.alg = alg;
    /* one signature first: pools, caches and lazy fetches are set up */
    if ((st.reuse ? sig_check_reuse(&st) : sig_op(&st))
        && khb_profile_loop(sig_op, &st, n)) {
        rc = 0;
    }
end:
    EVP_MD_CTX_free(st.mctx);
    free_path(&pk);
    return rc;
}

/*
 * Child "sign": the four PKCS#11-era paths in one process, their windows
 * interleaved per algorithm and thread count (order rotated by round), so
 * the ratios compare measurements seconds apart rather than a minute.
 * They share the one SoftHSM instance of the process, as libraries in a
 * server do: the raw path logs the application in first, keyhold and
 * libp11 must cope with an initialised module and a logged-in token.
 * The three OpenSSL paths are measured twice: a fresh context per
 * signature (what libssl does), and one context re-initialised per
 * signature ("-reuse", sig_op), which takes OpenSSL's EVP_PKEY_CTX set-up
 * out and leaves what the provider adds.
 */
int khb_child_sign_all(void)
{
    enum { P_RAW, P_SW, P_KH, P_P11, P_SW_R, P_KH_R, P_P11_R, NP };
    static const char *const pname[NP] = {
        "raw", "sw", "keyhold", "libp11", "sw-reuse", "keyhold-reuse",
        "libp11-reuse"
    };
    static const enum khb_path opath[NP] = {
        KHB_PATH_SW, KHB_PATH_SW, KHB_PATH_KEYHOLD, KHB_PATH_LIBP11,
        KHB_PATH_SW, KHB_PATH_KEYHOLD, KHB_PATH_LIBP11
    };
    /* the reuse paths sign with the keys their base path loaded */
    static const int keys_of[NP] = {
        P_RAW, P_SW, P_KH, P_P11, P_SW, P_KH, P_P11
    };
    static struct sig_state st[NP][2];
    static struct path_keys pk[NP];
    int ok[NP], a, t, k, i, p, any = 0, round = khb_round();
    void *states[2];
    char name[128];
    double r;

    memset(pk, 0, sizeof(pk));
    for (p = 0; p < NP; p++) {
        if (p == P_RAW) {
            ok[p] = khb_raw_open();
        } else if (keys_of[p] == p) {
            ok[p] = load_path(opath[p], &pk[p]);
        } else {
            ok[p] = ok[keys_of[p]];
        }
        if (!ok[p]) {
            khb_unavailable(pname[p], NULL);
        }
        for (i = 0; i < 2 && p != P_RAW; i++) {
            st[p][i].mctx = EVP_MD_CTX_new();
            st[p][i].reuse = keys_of[p] != p;
            RAND_bytes(st[p][i].msg, sizeof(st[p][i].msg));
        }
    }
    for (a = 0; a < KHB_NALG; a++) {
        for (p = 0; p < NP; p++) {
            const struct path_keys *kp = &pk[keys_of[p]];

            for (i = 0; i < 2 && p != P_RAW; i++) {
                EVP_MD_CTX_reset(st[p][i].mctx);
                st[p][i].primed = 0;
                st[p][i].pkey = kp->key[a == KHB_ECDSA ? 0 : 1];
                st[p][i].libctx = kp->libctx;
                st[p][i].propq = kp->propq;
                st[p][i].alg = a;
                if (ok[p] && st[p][i].reuse && !sig_check_reuse(&st[p][i])) {
                    khb_unavailable(pname[p], "reused context failed");
                    ok[p] = 0;
                }
            }
        }
        for (t = 1; t <= 2; t++) {
            for (k = 0; k < NP; k++) {
                p = (k + round) % NP;
                if (!ok[p]) {
                    continue;
                }
                for (i = 0; i < 2; i++) {
                    states[i] = p == P_RAW ? khb_raw_state(a, i)
                                           : (void *)&st[p][i];
                }
                r = khb_measure(p == P_RAW ? khb_raw_op : sig_op, states, t);
                if (r < 0) {
                    khb_unavailable(pname[p], NULL);
                    ok[p] = 0;
                    continue;
                }
                snprintf(name, sizeof(name), "sign.%s.%s.t%d", pname[p],
                         khb_alg_name[a], t);
                khb_rate(name, r);
                any = 1;
            }
        }
    }
    /* contexts first: a reuse context holds its base path's key */
    for (p = 0; p < NP; p++) {
        for (i = 0; i < 2; i++) {
            EVP_MD_CTX_free(st[p][i].mctx);
        }
    }
    for (p = 0; p < NP; p++) {
        free_path(&pk[p]);
    }
    return any ? 0 : 1;
}

/* ----------------------------------------------------------------- TLS */

struct tls_state {
    SSL_CTX *sctx;
    SSL_CTX *cctx;
};

/* One full handshake, client and server in this thread over a BIO pair:
 * no sockets, so the key operation and the handshake's own crypto are all
 * that is measured. */
static int tls_op(void *arg)
{
    struct tls_state *st = arg;
    SSL *s = SSL_new(st->sctx), *c = SSL_new(st->cctx);
    BIO *sb = NULL, *cb = NULL;
    int cdone = 0, sdone = 0, i, r, ok = 0;

    if (s == NULL || c == NULL || !BIO_new_bio_pair(&sb, 0, &cb, 0)) {
        goto end;
    }
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (i = 0; i < 32 && !(cdone && sdone); i++) {
        if (!cdone) {
            r = SSL_do_handshake(c);
            if (r == 1) {
                cdone = 1;
            } else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ) {
                goto end;
            }
        }
        if (!sdone) {
            r = SSL_do_handshake(s);
            if (r == 1) {
                sdone = 1;
            } else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ) {
                goto end;
            }
        }
    }
    ok = cdone && sdone && SSL_session_reused(c) == 0;
end:
    if (!ok) {
        khb_ossl_err("TLS handshake");
    }
    SSL_free(s);
    SSL_free(c);
    return ok;
}

static SSL_CTX *server_ctx(OSSL_LIB_CTX *libctx, const char *propq,
                           int version, const char *cert, EVP_PKEY *key)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, propq, TLS_server_method());

    if (ctx == NULL) {
        goto err;
    }
    /* No resumption of any kind: every handshake is a full one. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (!SSL_CTX_set_min_proto_version(ctx, version)
        || !SSL_CTX_set_max_proto_version(ctx, version)
        || !SSL_CTX_set1_groups_list(ctx, "X25519")
        /* What a default client and server agree on anyway; fixed so the
         * handshake signs exactly what the sign rows measure. */
        || !SSL_CTX_set1_sigalgs_list(ctx, "ecdsa_secp256r1_sha256:"
                                           "rsa_pss_rsae_sha256")
        || !SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                         "ECDHE-RSA-AES128-GCM-SHA256")
        || !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256")
        || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1
        || SSL_CTX_use_PrivateKey(ctx, key) != 1
        || SSL_CTX_check_private_key(ctx) != 1) {
        goto err;
    }
    return ctx;
err:
    khb_ossl_err("server SSL_CTX");
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *client_ctx(OSSL_LIB_CTX *libctx, int version)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_client_method());

    if (ctx == NULL) {
        goto err;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!SSL_CTX_set_min_proto_version(ctx, version)
        || !SSL_CTX_set_max_proto_version(ctx, version)
        || SSL_CTX_load_verify_locations(ctx, khb_path(0, "ca.pem"), NULL)
           != 1) {
        goto err;
    }
    return ctx;
err:
    khb_ossl_err("client SSL_CTX");
    SSL_CTX_free(ctx);
    return NULL;
}

static const struct {
    const char *name;
    int version;
} protos[2] = { { "tls13", TLS1_3_VERSION }, { "tls12", TLS1_2_VERSION } };

/*
 * Child "tls-PATH": the server side uses the path's key (and library
 * context); the client is always a plain default-provider context, as a
 * remote peer would be.
 */
int khb_child_tls(enum khb_path path)
{
    static struct tls_state st[2];
    struct path_keys pk;
    OSSL_LIB_CTX *cli = khb_libctx_new(0);
    void *states[2] = { &st[0], &st[1] };
    SSL_CTX *sctx = NULL, *cctx = NULL;
    char name[128];
    int p, k, t, rc = 1, tpm = max_threads(path) == 1;
    double r;

    memset(&pk, 0, sizeof(pk));
    if (cli == NULL || (!tpm && !load_path(path, &pk))) {
        goto end;
    }
    for (p = 0; p < 2; p++) {
        for (k = 0; k < 2; k++) {
            /* Without a resource manager swtpm holds three objects: keep
             * only the key in use loaded, the rest is for the handshake. */
            if (tpm) {
                if (!load_path(path, &pk)) {
                    goto end;
                }
                EVP_PKEY_free(pk.key[1 - k]);
                pk.key[1 - k] = NULL;
            }
            sctx = server_ctx(pk.libctx, pk.propq, protos[p].version, pk.cert[k],
                              pk.key[k]);
            cctx = client_ctx(cli, protos[p].version);
            if (sctx == NULL || cctx == NULL) {
                goto end;
            }
            st[0].sctx = st[1].sctx = sctx;
            st[0].cctx = st[1].cctx = cctx;
            for (t = 1; t <= max_threads(path); t++) {
                r = khb_measure(tls_op, states, t);
                if (r < 0) {
                    goto end;
                }
                snprintf(name, sizeof(name), "tls.%s.%s.%s.t%d",
                         path_name(path), protos[p].name,
                         k ? "rsa" : "ecdsa", t);
                khb_rate(name, r);
            }
            SSL_CTX_free(sctx);
            SSL_CTX_free(cctx);
            sctx = cctx = NULL;
            if (tpm) {
                free_path(&pk);
            }
        }
    }
    rc = 0;
end:
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    free_path(&pk);
    OSSL_LIB_CTX_free(cli);
    return rc;
}

/*
 * Child "tls": software, keyhold and libp11 servers in one process, their
 * windows interleaved per protocol, key and thread count. The client side
 * is a plain default-provider context for all three.
 */
int khb_child_tls_all(void)
{
    enum { NP = 3 };
    static const enum khb_path path[NP] = {
        KHB_PATH_SW, KHB_PATH_KEYHOLD, KHB_PATH_LIBP11
    };
    static struct path_keys pk[NP];
    static struct tls_state st[NP][2];
    OSSL_LIB_CTX *cli = khb_libctx_new(0);
    SSL_CTX *cctx;
    void *states[2];
    char name[128];
    int ok[NP], pr, k, t, j, p, any = 0, round = khb_round();
    double r;

    memset(pk, 0, sizeof(pk));
    if (cli == NULL) {
        return 1;
    }
    for (p = 0; p < NP; p++) {
        ok[p] = load_path(path[p], &pk[p]);
        if (!ok[p]) {
            khb_unavailable(path_name(path[p]), NULL);
        }
    }
    for (pr = 0; pr < 2; pr++) {
        cctx = client_ctx(cli, protos[pr].version);
        if (cctx == NULL) {
            return 1;
        }
        for (k = 0; k < 2; k++) {
            for (p = 0; p < NP; p++) {
                st[p][0].sctx = NULL;
                if (ok[p]) {
                    st[p][0].sctx = server_ctx(pk[p].libctx, pk[p].propq,
                                               protos[pr].version,
                                               pk[p].cert[k], pk[p].key[k]);
                    if (st[p][0].sctx == NULL) {
                        khb_unavailable(path_name(path[p]), NULL);
                        ok[p] = 0;
                    }
                }
                st[p][1].sctx = st[p][0].sctx;
                st[p][0].cctx = st[p][1].cctx = cctx;
            }
            for (t = 1; t <= 2; t++) {
                for (j = 0; j < NP; j++) {
                    p = (j + round) % NP;
                    if (!ok[p]) {
                        continue;
                    }
                    states[0] = &st[p][0];
                    states[1] = &st[p][1];
                    r = khb_measure(tls_op, states, t);
                    if (r < 0) {
                        khb_unavailable(path_name(path[p]), NULL);
                        ok[p] = 0;
                        continue;
                    }
                    snprintf(name, sizeof(name), "tls.%s.%s.%s.t%d",
                             path_name(path[p]), protos[pr].name,
                             k ? "rsa" : "ecdsa", t);
                    khb_rate(name, r);
                    any = 1;
                }
            }
            for (p = 0; p < NP; p++) {
                SSL_CTX_free(st[p][0].sctx);
                st[p][0].sctx = st[p][1].sctx = NULL;
            }
        }
        SSL_CTX_free(cctx);
    }
    for (p = 0; p < NP; p++) {
        free_path(&pk[p]);
    }
    OSSL_LIB_CTX_free(cli);
    return any ? 0 : 1;
}

/* the footprint variants: khb_libctx_new's argument is the index */
static const char *const fp_variant[3] = { "plain", "loaded", "lazy" };

/*
 * Child "footprint": software-key handshakes (client and server in the
 * same context, as inside one server process that also makes outgoing
 * connections) in a context with only the default provider, in one where
 * keyhold is loaded as well but never used, and in one where it is loaded
 * with key-files = no. Windows rotate.
 */
int khb_child_footprint(void)
{
    static struct tls_state st[3][2];
    OSSL_LIB_CTX *ctx[3];
    EVP_PKEY *key;
    void *states[1];
    char name[128];
    int v, k, rep;
    double r;

    for (v = 0; v < 3; v++) {
        ctx[v] = khb_libctx_new(v);
        if (ctx[v] == NULL) {
            return 1;
        }
        for (k = 0; k < 2; k++) {
            key = khb_load_pem_key(ctx[v], khb_path(0, k ? "sw-rsa.key"
                                                         : "sw-ec.key"));
            if (key == NULL) {
                return 1;
            }
            st[v][k].sctx = server_ctx(ctx[v], NULL, TLS1_3_VERSION,
                                       khb_path(1, k ? "sw-rsa.crt"
                                                     : "sw-ec.crt"), key);
            st[v][k].cctx = client_ctx(ctx[v], TLS1_3_VERSION);
            EVP_PKEY_free(key);
            if (st[v][k].sctx == NULL || st[v][k].cctx == NULL) {
                return 1;
            }
        }
    }
    for (rep = 0; rep < 2; rep++) {
        for (k = 0; k < 2; k++) {
            for (v = 0; v < 3; v++) {
                /* rotate which goes first, so drift spreads */
                int vv = (v + rep) % 3;

                states[0] = &st[vv][k];
                r = khb_measure(tls_op, states, 1);
                if (r < 0) {
                    return 1;
                }
                snprintf(name, sizeof(name), "footprint.%s.tls13.%s.t1",
                         fp_variant[vv], k ? "rsa" : "ecdsa");
                khb_rate(name, r);
            }
        }
    }
    return 0;
}

/*
 * "kh-bench profile-hs plain|loaded|lazy ecdsa|rsa N": N software-key
 * TLS 1.3 handshakes for callgrind, in a context without keyhold, with
 * keyhold loaded, or with keyhold loaded with key-files = no: the
 * footprint in instructions per handshake.
 */
int khb_profile_hs(const char *variant, const char *kalg, long n)
{
    struct tls_state st;
    OSSL_LIB_CTX *ctx;
    EVP_PKEY *key;
    int rsa = strcmp(kalg, "rsa") == 0, rc = 1, v;

    for (v = 0; v < 3 && strcmp(variant, fp_variant[v]) != 0; v++) {
    }
    if (v == 3) {
        fprintf(stderr, "profile-hs: variant %s\n", variant);
        return 1;
    }
    ctx = khb_libctx_new(v);
    if (ctx == NULL) {
        return 1;
    }
    key = khb_load_pem_key(ctx, khb_path(0, rsa ? "sw-rsa.key" : "sw-ec.key"));
    if (key == NULL) {
        goto end;
    }
    st.sctx = server_ctx(ctx, NULL, TLS1_3_VERSION,
                         khb_path(1, rsa ? "sw-rsa.crt" : "sw-ec.crt"), key);
    st.cctx = client_ctx(ctx, TLS1_3_VERSION);
    EVP_PKEY_free(key);
    if (st.sctx != NULL && st.cctx != NULL && tls_op(&st)
        && khb_profile_loop(tls_op, &st, n)) {
        rc = 0;
    }
    SSL_CTX_free(st.sctx);
    SSL_CTX_free(st.cctx);
end:
    OSSL_LIB_CTX_free(ctx);
    return rc;
}

/*
 * "kh-bench profile-tls sw|keyhold|libp11 ecdsa|rsa N": N TLS 1.3 full
 * handshakes whose server holds that path's key (the client a plain
 * default-provider context, as in the tls rows), for callgrind: with the
 * profiled signatures of the same paths this gives the handshake limit in
 * instructions (sw handshake - sw signature + raw C_Sign).
 */
int khb_profile_tls(const char *pathname, const char *kalg, long n)
{
    static const enum khb_path paths[3] = {
        KHB_PATH_SW, KHB_PATH_KEYHOLD, KHB_PATH_LIBP11
    };
    struct tls_state st;
    struct path_keys pk;
    OSSL_LIB_CTX *cli = NULL;
    int rsa = strcmp(kalg, "rsa") == 0, rc = 1, i;

    memset(&pk, 0, sizeof(pk));
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 3 && strcmp(pathname, path_name(paths[i])) != 0; i++) {
    }
    if (i == 3) {
        fprintf(stderr, "profile-tls: path %s\n", pathname);
        return 1;
    }
    cli = khb_libctx_new(0);
    if (cli == NULL || !load_path(paths[i], &pk)) {
        goto end;
    }
    st.sctx = server_ctx(pk.libctx, pk.propq, TLS1_3_VERSION, pk.cert[rsa],
                         pk.key[rsa]);
    st.cctx = client_ctx(cli, TLS1_3_VERSION);
    if (st.sctx != NULL && st.cctx != NULL && tls_op(&st)
        && khb_profile_loop(tls_op, &st, n)) {
        rc = 0;
    }
end:
    SSL_CTX_free(st.sctx);
    SSL_CTX_free(st.cctx);
    free_path(&pk);
    OSSL_LIB_CTX_free(cli);
    return rc;
}

/*
 * "kh-bench cold-sign ecdsa|rsa N": the handshake limit assumes the
 * token's signature costs inside a handshake what it costs in the
 * back-to-back C_Sign loop, and that the rest of the handshake costs
 * what it costs back to back. This measures, with the raw C_Sign (no
 * keyhold, no EVP) and software-key TLS 1.3 handshakes, in the CPU time
 * of this thread: N signatures in a row, N handshakes in a row, and N
 * pairs of one handshake and one signature (each part timed). Prints
 * microseconds, medians of five rounds; "pair / sum" is what a handshake
 * that adds a token signature really costs over what the limit assumes.
 */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int khb_cold_sign(const char *kalg, long n)
{
    enum { ROUNDS = 5 };
    struct tls_state st;
    struct path_keys pk;
    OSSL_LIB_CTX *cli = NULL;
    void *raw;
    double sign_b2b[ROUNDS], hs_b2b[ROUNDS], sign_in[ROUNDS], hs_in[ROUNDS];
    double pair[ROUNDS];
    int rsa = strcmp(kalg, "rsa") == 0, rc = 1, r;
    long i;

    memset(&pk, 0, sizeof(pk));
    memset(&st, 0, sizeof(st));
    cli = khb_libctx_new(0);
    if (cli == NULL || !load_path(KHB_PATH_SW, &pk) || !khb_raw_open()) {
        goto end;
    }
    raw = khb_raw_state(rsa ? KHB_RSA_PSS : KHB_ECDSA, 0);
    st.sctx = server_ctx(pk.libctx, NULL, TLS1_3_VERSION, pk.cert[rsa],
                         pk.key[rsa]);
    st.cctx = client_ctx(cli, TLS1_3_VERSION);
    if (st.sctx == NULL || st.cctx == NULL || !tls_op(&st)
        || !khb_raw_op(raw)) {
        goto end;
    }
    for (r = 0; r < ROUNDS; r++) {
        uint64_t t0, t1, s_sum = 0, h_sum = 0;

        t0 = khb_thread_cpu_ns();
        for (i = 0; i < n; i++) {
            if (!khb_raw_op(raw)) {
                goto end;
            }
        }
        sign_b2b[r] = (double)(khb_thread_cpu_ns() - t0) / 1000.0 / (double)n;
        t0 = khb_thread_cpu_ns();
        for (i = 0; i < n; i++) {
            if (!tls_op(&st)) {
                goto end;
            }
        }
        hs_b2b[r] = (double)(khb_thread_cpu_ns() - t0) / 1000.0 / (double)n;
        for (i = 0; i < n; i++) {
            t0 = khb_thread_cpu_ns();
            if (!tls_op(&st)) {
                goto end;
            }
            t1 = khb_thread_cpu_ns();
            if (!khb_raw_op(raw)) {
                goto end;
            }
            h_sum += t1 - t0;
            s_sum += khb_thread_cpu_ns() - t1;
        }
        hs_in[r] = (double)h_sum / 1000.0 / (double)n;
        sign_in[r] = (double)s_sum / 1000.0 / (double)n;
        pair[r] = (hs_in[r] + sign_in[r]) / (hs_b2b[r] + sign_b2b[r]);
    }
    qsort(sign_b2b, ROUNDS, sizeof(double), cmp_double);
    qsort(hs_b2b, ROUNDS, sizeof(double), cmp_double);
    qsort(sign_in, ROUNDS, sizeof(double), cmp_double);
    qsort(hs_in, ROUNDS, sizeof(double), cmp_double);
    qsort(pair, ROUNDS, sizeof(double), cmp_double);
    printf("%-6s %10.1f %10.1f %10.1f %10.1f %10.3f\n", kalg,
           sign_b2b[ROUNDS / 2], sign_in[ROUNDS / 2], hs_b2b[ROUNDS / 2],
           hs_in[ROUNDS / 2], pair[ROUNDS / 2]);
    rc = 0;
end:
    if (rc != 0) {
        khb_ossl_err("cold-sign");
    }
    SSL_CTX_free(st.sctx);
    SSL_CTX_free(st.cctx);
    free_path(&pk);
    OSSL_LIB_CTX_free(cli);
    return rc;
}

/* ------------------------------------------------------------- memory */

static long rss_kb(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) {
        res = -1;
    }
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/*
 * Child "memory": resident memory per pooled session. Eight threads of
 * software signatures first (so thread stacks are already resident and
 * cached), then eight threads of keyhold signatures grow the pool; the
 * RSS growth divided by the sessions the module gained is the cost of one
 * pooled session. The module's own per-session cost is measured beside it
 * with raw C_OpenSession.
 */
int khb_child_memory(void)
{
    static struct sig_state st[KHB_MAX_THREADS];
    void *states[KHB_MAX_THREADS];
    OSSL_LIB_CTX *sw = khb_libctx_new(0), *kh = khb_libctx_new(1);
    EVP_PKEY *swkey, *khkey;
    CK_SESSION_HANDLE extra[32];
    KHB_P11 p;
    long rss0, rss1, rss2;
    int s0, s1, s2, i;
    double save = khb_env.seconds;

    if (sw == NULL || kh == NULL) {
        return 1;
    }
    swkey = khb_load_pem_key(sw, khb_path(0, "sw-ec.key"));
    khkey = khb_load_uri_key(kh, khb_uri(0, "bench-ec", 1), NULL);
    if (swkey == NULL || khkey == NULL) {
        return 1;
    }
    for (i = 0; i < KHB_MAX_THREADS; i++) {
        st[i].mctx = EVP_MD_CTX_new();
        st[i].pkey = swkey;
        st[i].libctx = sw;
        st[i].alg = KHB_ECDSA;
        states[i] = &st[i];
    }
    khb_env.seconds = 0.1;
    if (khb_measure(sig_op, states, KHB_MAX_THREADS) < 0) {
        return 1;
    }
    /* one keyhold signature: the pool holds its first session */
    st[0].pkey = khkey;
    st[0].libctx = kh;
    if (!sig_op(&st[0]) || !khb_p11_open(&p, 1)) {
        return 1;
    }
    s1 = khb_p11_count_sessions(&p);
    rss1 = rss_kb();
    for (i = 0; i < KHB_MAX_THREADS; i++) {
        st[i].pkey = khkey;
        st[i].libctx = kh;
    }
    if (khb_measure(sig_op, states, KHB_MAX_THREADS) < 0) {
        return 1;
    }
    khb_env.seconds = save;
    s2 = khb_p11_count_sessions(&p);
    rss2 = rss_kb();
    khb_result("mem.keyhold.sessions_1thread", s1);
    khb_result("mem.keyhold.sessions_8threads", s2);
    if (s2 > s1) {
        khb_result("mem.keyhold.kb_per_session",
                   (double)(rss2 - rss1) / (s2 - s1));
    }
    khb_result("mem.keyhold.rss_kb", rss2);
    /* the module's own cost of a session */
    rss0 = rss_kb();
    s0 = 0;
    for (i = 0; i < 32; i++) {
        if (p.f->C_OpenSession(p.slot, CKF_SERIAL_SESSION, NULL, NULL,
                               &extra[i]) != CKR_OK) {
            break;
        }
        s0++;
    }
    if (s0 > 0) {
        khb_result("mem.raw.kb_per_session", (double)(rss_kb() - rss0) / s0);
    }
    for (i = 0; i < s0; i++) {
        p.f->C_CloseSession(extra[i]);
    }
    return 0;
}

/* ---------------------------------------------------------- TPM count */

typedef unsigned long (*count_fn)(void);

/* Commands per signature for one path; 0 when the path is unavailable. */
static int count_path(enum khb_path path, const char *lib, count_fn *get)
{
    struct sig_state st;
    struct path_keys pk;
    unsigned long c0, c1;
    char name[128];
    void *h;
    int a, i, n = 20, ok = 0;

    memset(&st, 0, sizeof(st));
    memset(&pk, 0, sizeof(pk));
    st.mctx = EVP_MD_CTX_new();
    if (st.mctx == NULL || !load_path(path, &pk)) {
        goto end;
    }
    for (a = 0; a < KHB_NALG; a++) {
        st.pkey = pk.key[a == KHB_ECDSA ? 0 : 1];
        st.libctx = pk.libctx;
        st.propq = pk.propq;
        st.alg = a;
        if (!sig_op(&st)) {
            goto end;
        }
        if (*get == NULL) {
            h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
            *get = h != NULL ? (count_fn)dlsym(h, "kh_tcti_count") : NULL;
            if (*get == NULL) {
                fprintf(stderr, "kh-bench: %s is not in use\n", lib);
                goto end;
            }
        }
        c0 = (*get)();
        for (i = 0; i < n; i++) {
            if (!sig_op(&st)) {
                goto end;
            }
        }
        c1 = (*get)();
        snprintf(name, sizeof(name), "tpmcmd.%s.%s", path_name(path),
                 khb_alg_name[a]);
        khb_result(name, (double)(c1 - c0) / n);
    }
    ok = 1;
end:
    EVP_MD_CTX_free(st.mctx);
    free_path(&pk);
    return ok;
}

/*
 * Child "tpmcmd-PATH": TPM commands per signature for one path (one process
 * each: keyhold reads its TPM settings once per process), counted by the
 * khcount TCTI that bench.sh puts in front of swtpm for both providers.
 * The counting library is loaded here first, so that a provider that opens
 * and closes its TCTI per operation cannot unload it (and its counter).
 */
int khb_child_tpm_commands(enum khb_path path)
{
    const char *lib = getenv("KHB_TCTI_COUNT_LIB");
    count_fn get = NULL;
    void *h;

    if (lib == NULL) {
        fprintf(stderr, "kh-bench: KHB_TCTI_COUNT_LIB not set\n");
        return 1;
    }
    h = dlopen(lib, RTLD_NOW);
    if (h == NULL) {
        fprintf(stderr, "kh-bench: %s: %s\n", lib, dlerror());
        return 1;
    }
    get = (count_fn)dlsym(h, "kh_tcti_count");
    if (get == NULL) {
        fprintf(stderr, "kh-bench: %s has no kh_tcti_count\n", lib);
        return 1;
    }
    return count_path(path, lib, &get) ? 0 : 1;
}
