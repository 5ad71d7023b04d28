/* SPDX-License-Identifier: MIT */
/*
 * The CLI's use of the keyhold provider: loading it in-process, opening a
 * hardware key by URI through OSSL_STORE (the PIN handed over the UI
 * callback, never in the URI), turning the provider's errors into exit
 * codes, and the end-to-end self test (sign/verify, loopback TLS).
 */
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509v3.h>

#include "keyhold.h"
#include "kh_pin.h"

int kh_prov_load(KH_CTX *ctx, char *err, size_t errlen)
{
    char exe[PATH_MAX];
    char dir[PATH_MAX];
    char so[PATH_MAX + 16];
    const char *env = getenv("KEYHOLD_PROVIDER_PATH");
    ssize_t n;

    if (ctx->prov_keyhold != NULL) {
        return KH_EXIT_OK;
    }
    if (ctx->prov_default == NULL) {
        ctx->prov_default = OSSL_PROVIDER_load(ctx->libctx, "default");
        if (ctx->prov_default == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_BROKEN,
                             "OpenSSL default provider does not load");
        }
    }
    ERR_set_mark();
    /* 1. next to the executable (build tree, or an install with both in
     *    one directory) */
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        snprintf(dir, sizeof(dir), "%s", dirname(exe));
        snprintf(so, sizeof(so), "%s/keyhold.so", dir);
        if (access(so, R_OK) == 0) {
            /* loaded by its name from that directory: a provider loaded by
             * path is named after the path, and "provider=keyhold" queries
             * (libssl's among them) would not find it */
            OSSL_PROVIDER_set_default_search_path(ctx->libctx, dir);
            ctx->prov_keyhold = OSSL_PROVIDER_load(ctx->libctx, "keyhold");
        }
    }
    /* 2. $KEYHOLD_PROVIDER_PATH (a directory or the .so itself) */
    if (ctx->prov_keyhold == NULL && env != NULL && *env != '\0') {
        size_t el = strlen(env);

        if (el > 3 && strcmp(env + el - 3, ".so") == 0) {
            snprintf(so, sizeof(so), "%s", env);
            snprintf(dir, sizeof(dir), "%s", dirname(so));
        } else {
            snprintf(dir, sizeof(dir), "%s", env);
        }
        OSSL_PROVIDER_set_default_search_path(ctx->libctx, dir);
        ctx->prov_keyhold = OSSL_PROVIDER_load(ctx->libctx, "keyhold");
    }
    /* 3. OpenSSL's modules directory */
    if (ctx->prov_keyhold == NULL) {
        OSSL_PROVIDER_set_default_search_path(ctx->libctx, NULL);
        ctx->prov_keyhold = OSSL_PROVIDER_load(ctx->libctx, "keyhold");
    }
    if (ctx->prov_keyhold == NULL) {
        unsigned long e = ERR_peek_last_error();
        char ebuf[256] = "";

        if (e != 0) {
            ERR_error_string_n(e, ebuf, sizeof(ebuf));
        }
        ERR_pop_to_mark();
        return kh_seterr(err, errlen, KH_EXIT_BROKEN,
                         "the keyhold provider does not load%s%s (install "
                         "keyhold.so into OpenSSL's modules dir or set "
                         "KEYHOLD_PROVIDER_PATH)", *ebuf ? ": " : "", ebuf);
    }
    ERR_pop_to_mark();
    kh_dbg(ctx, "provider keyhold loaded");
    return KH_EXIT_OK;
}

/* The PIN goes to the provider through this UI method: the reader answers
 * the prompt with the PIN kept in the UI's user data. */
struct pin_ref {
    const char *pin;
    size_t len;
    int asked;
};

static int ui_read(UI *ui, UI_STRING *uis)
{
    struct pin_ref *p = UI_get0_user_data(ui);

    switch (UI_get_string_type(uis)) {
    case UIT_PROMPT:
    case UIT_VERIFY:
        if (p == NULL || p->pin == NULL) {
            return 0;
        }
        p->asked++;
        return UI_set_result_ex(ui, uis, p->pin, (int)p->len) == 0;
    default:
        return 1;
    }
}

static int ui_write(UI *ui, UI_STRING *uis)
{
    return 1;
}

static int ui_flush(UI *ui)
{
    return 1;
}

/* Exit code for the provider's errors on the queue; text into err. */
int kh_prov_map_errors(const char *what, char *err, size_t errlen)
{
    unsigned long e;
    const char *data = NULL, *func = NULL, *file = NULL;
    int flags = 0, line = 0;
    int code = KH_EXIT_TOKEN;
    char text[512] = "";
    char one[256];

    int have_ours = 0, pass;
    unsigned long marks[32];
    char datas[32][200];
    int nerr = 0, i;

    /* keep the queue's entries, then report keyhold's own when there are
     * any: stale entries from elsewhere (engines, config) only confuse */
    while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        const char *lib = ERR_lib_error_string(e);

        if (nerr < 32) {
            marks[nerr] = e;
            snprintf(datas[nerr], sizeof(datas[nerr]), "%s",
                     data != NULL && (flags & ERR_TXT_STRING) ? data : "");
            nerr++;
        }
        if (lib != NULL && strcmp(lib, "keyhold") == 0) {
            have_ours = 1;
        }
    }
    for (pass = 0, i = 0; pass == 0 && i < nerr; i++) {
        const char *lib = ERR_lib_error_string(marks[i]);
        int ours = lib != NULL && strcmp(lib, "keyhold") == 0;
        int reason = ERR_GET_REASON(marks[i]);

        e = marks[i];
        data = datas[i];
        if (have_ours && !ours) {
            continue;
        }
        if (ours) {
            switch (reason) {
            case 8:  /* KH_R_LOGIN */
            case 9:  /* KH_R_PIN_LOCKED */
            case 10: /* KH_R_PIN_FINAL_TRY */
            case 11: /* KH_R_NO_PIN */
                code = KH_EXIT_PIN;
                break;
            case 3:  /* KH_R_BAD_URI */
            case 6:  /* KH_R_AMBIGUOUS */
                if (code != KH_EXIT_PIN) {
                    code = KH_EXIT_REJECTED;
                }
                break;
            case 7:  /* KH_R_NO_OBJECT */
                if (code == KH_EXIT_TOKEN) {
                    code = KH_EXIT_BROKEN;
                }
                break;
            default:
                break;
            }
        }
        if (*data != '\0') {
            snprintf(one, sizeof(one), "%.200s", data);
        } else {
            ERR_error_string_n(e, one, sizeof(one));
        }
        if (strstr(data, "CKR_PIN_INCORRECT") != NULL) {
            code = KH_EXIT_PIN;
        }
        if (strlen(text) + strlen(one) + 3 < sizeof(text)) {
            if (*text) {
                strcat(text, "; ");
            }
            strcat(text, one);
        }
    }
    kh_seterr(err, errlen, code, "%s: %s%s", what,
              *text ? text : "no key found",
              code == KH_EXIT_PIN ? " (check the PIN source; another wrong "
                                    "try counts against the token)"
                                  : "");
    return code;
}

int kh_key_load(KH_CTX *ctx, const char *uri, const char *pin, size_t pinlen,
                EVP_PKEY **pkey, char *err, size_t errlen)
{
    UI_METHOD *ui = NULL;
    OSSL_STORE_CTX *sc = NULL;
    OSSL_STORE_INFO *info;
    struct pin_ref ref = { pin, pinlen, 0 };
    int rc;

    *pkey = NULL;
    rc = kh_prov_load(ctx, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    ui = UI_create_method("keyhold PIN");
    if (ui == NULL || UI_method_set_reader(ui, ui_read) != 0
        || UI_method_set_writer(ui, ui_write) != 0
        || UI_method_set_flusher(ui, ui_flush) != 0) {
        UI_destroy_method(ui);
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
    }
    ERR_clear_error();
    sc = OSSL_STORE_open_ex(uri, ctx->libctx, NULL, ui, &ref, NULL, NULL,
                            NULL);
    if (sc == NULL) {
        rc = kh_prov_map_errors("opening the key", err, errlen);
        goto end;
    }
    OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
    while (*pkey == NULL && !OSSL_STORE_eof(sc)) {
        info = OSSL_STORE_load(sc);
        if (info == NULL) {
            if (OSSL_STORE_error(sc)) {
                break;
            }
            continue;
        }
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
            *pkey = OSSL_STORE_INFO_get1_PKEY(info);
        }
        OSSL_STORE_INFO_free(info);
    }
    if (*pkey == NULL) {
        rc = kh_prov_map_errors("loading the key", err, errlen);
        goto end;
    }
    ERR_clear_error();
    rc = KH_EXIT_OK;
end:
    OSSL_STORE_close(sc);
    UI_destroy_method(ui);
    return rc;
}

int kh_identity_load_key(KH_CTX *ctx, const KH_IDENTITY *id, const char *uri,
                         EVP_PKEY **pkey, char *err, size_t errlen)
{
    char pin[KH_PIN_MAX + 1];
    size_t pinlen = 0;
    char *own = NULL;
    int rc;

    *pkey = NULL;
    if (uri == NULL) {
        rc = kh_identity_key_uri(ctx, id, &own);
        if (rc != KH_EXIT_OK) {
            return kh_seterr(err, errlen, rc, "identity '%s' has no key URI "
                             "(provision it)", id->name);
        }
        uri = own;
    }
    if (strncmp(uri, "tpm2:", 5) == 0) {
        /* a TPM key's auth (if any) comes through its URI's pin-source;
         * keys without auth need no PIN at all */
        rc = kh_key_load(ctx, uri, NULL, 0, pkey, err, errlen);
    } else {
        rc = kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, err, errlen);
        if (rc == KH_EXIT_OK) {
            rc = kh_key_load(ctx, uri, pin, pinlen, pkey, err, errlen);
        }
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    free(own);
    return rc;
}

/* The loopback client accepts a not-before within the clock skew, as the
 * install check does (CAs often issue with not-before = now). */
static int skew_verify_cb(int ok, X509_STORE_CTX *sctx)
{
    if (!ok
        && X509_STORE_CTX_get_error(sctx) == X509_V_ERR_CERT_NOT_YET_VALID) {
        X509 *x = X509_STORE_CTX_get_current_cert(sctx);
        time_t soon = time(NULL) + KH_CLOCK_SKEW;

        if (x != NULL && X509_cmp_time(X509_get0_notBefore(x), &soon) <= 0) {
            X509_STORE_CTX_set_error(sctx, X509_V_OK);
            return 1;
        }
    }
    return ok;
}

/* One handshake step of one end, unless it is *done: 1 while all is well
 * (finished, or waiting for the other end), 0 when the handshake failed. */
static int tls_step(SSL *ssl, int *done)
{
    int r, e;

    if (*done) {
        return 1;
    }
    r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = 1;
        return 1;
    }
    e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Frees both ends of a loopback attempt and their contexts (NULL-safe) and
 * clears the pointers for the next attempt. */
static void tls_ends_free(SSL **s, SSL **c, SSL_CTX **sctx, SSL_CTX **cctx)
{
    SSL_free(*s);
    SSL_free(*c);
    SSL_CTX_free(*sctx);
    SSL_CTX_free(*cctx);
    *s = *c = NULL;
    *sctx = *cctx = NULL;
}

/* Drives both ends of an in-memory TLS connection until both are done. */
static int tls_pump(SSL *c, SSL *s)
{
    int i, cd = 0, sd = 0;

    for (i = 0; i < 200 && !(cd && sd); i++) {
        if (!tls_step(c, &cd) || !tls_step(s, &sd)) {
            return 0;
        }
    }
    return cd && sd;
}

int kh_key_selftest(KH_CTX *ctx, EVP_PKEY *pkey, X509 *cert,
                    STACK_OF(X509) *chain, X509 *ca, const char *host,
                    char *err, size_t errlen)
{
    static const unsigned char probe[] = "keyhold self test";
    EVP_MD_CTX *md = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    SSL_CTX *sctx = NULL, *cctx = NULL;
    SSL *s = NULL, *c = NULL;
    BIO *b1 = NULL, *b2 = NULL;
    X509_STORE *store = NULL;
    EVP_PKEY *certkey = X509_get0_pubkey(cert);
    int rc = KH_EXIT_REJECTED, i, tries, no_pss = 0;
    unsigned char buf[16];
    const char *vers[2] = { "TLSv1.3", "TLSv1.2" };

    /* 1. sign with the hardware key, verify with the certificate */
    md = EVP_MD_CTX_new();
    if (md == NULL
        || EVP_DigestSignInit_ex(md, NULL, "SHA256", ctx->libctx, NULL, pkey,
                                 NULL) != 1
        || EVP_DigestSign(md, NULL, &siglen, probe, sizeof(probe)) != 1
        || (sig = OPENSSL_malloc(siglen)) == NULL
        || EVP_DigestSign(md, sig, &siglen, probe, sizeof(probe)) != 1) {
        rc = kh_prov_map_errors("signing with the hardware key", err, errlen);
        goto end;
    }
    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    if (md == NULL || certkey == NULL
        || EVP_DigestVerifyInit_ex(md, NULL, "SHA256", ctx->libctx,
                                   "provider=default", certkey, NULL) != 1
        || EVP_DigestVerify(md, sig, siglen, probe, sizeof(probe)) != 1) {
        ERR_clear_error();
        kh_seterr(err, errlen, KH_EXIT_BROKEN,
                  "signature check: the hardware key's signature does not "
                  "verify with the certificate's public key (mismatch)");
        rc = KH_EXIT_BROKEN;
        goto end;
    }
    /* 2. loopback TLS handshakes (1.3, then 1.2) */
    store = X509_STORE_new();
    if (store == NULL || (ca != NULL && !X509_STORE_add_cert(store, ca))) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
        goto end;
    }
    for (tries = 0; tries < 2; tries++) {
        int v = tries == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;

        sctx = SSL_CTX_new_ex(ctx->libctx, NULL, TLS_server_method());
        cctx = SSL_CTX_new_ex(ctx->libctx, NULL, TLS_client_method());
        if (sctx == NULL || cctx == NULL
            || SSL_CTX_use_certificate(sctx, cert) != 1
            || SSL_CTX_use_PrivateKey(sctx, pkey) != 1) {
            rc = kh_prov_map_errors("TLS setup with the identity", err, errlen);
            goto end;
        }
        for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
            SSL_CTX_add1_chain_cert(sctx, sk_X509_value(chain, i));
        }
        if (no_pss) {
            /* TLS 1.2 with PKCS#1 v1.5 signatures only */
            SSL_CTX_set1_sigalgs_list(sctx, "RSA+SHA256:RSA+SHA384:RSA+SHA512");
        }
        SSL_CTX_set_min_proto_version(sctx, v);
        SSL_CTX_set_max_proto_version(sctx, v);
        SSL_CTX_set_min_proto_version(cctx, v);
        SSL_CTX_set_max_proto_version(cctx, v);
        X509_STORE_up_ref(store);
        SSL_CTX_set_cert_store(cctx, store);
        SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, skew_verify_cb);
        s = SSL_new(sctx);
        c = SSL_new(cctx);
        if (s == NULL || c == NULL || !BIO_new_bio_pair(&b1, 0, &b2, 0)) {
            kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
            goto end;
        }
        SSL_set_bio(s, b1, b1);
        SSL_set_bio(c, b2, b2);
        b1 = b2 = NULL;
        SSL_set_accept_state(s);
        SSL_set_connect_state(c);
        if (host != NULL) {
            if (kh_host_is_ip(host)) {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c), host);
            } else {
                SSL_set_tlsext_host_name(c, host);
                SSL_set1_host(c, host);
                /* the VMS clients accept the host in the CN even when the
                 * certificate has other DNS SANs (host-in = cn) */
                X509_VERIFY_PARAM_set_hostflags(
                    SSL_get0_param(c), X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT);
            }
        }
        if (!tls_pump(c, s)) {
            long vr = SSL_get_verify_result(c);
            char e2[400];

            kh_prov_map_errors("handshake", e2, sizeof(e2));
            if (tries == 0 && vr == X509_V_OK && EVP_PKEY_is_a(certkey, "RSA")) {
                /* TLS 1.3 needs RSA-PSS, which some tokens lack: the
                 * identity still serves TLS 1.2 */
                kh_warn(ctx, "loopback TLS 1.3 handshake failed with this "
                        "RSA key (does the token lack RSA-PSS? TLS 1.3 "
                        "clients cannot connect; prefer an EC key): %s", e2);
                tls_ends_free(&s, &c, &sctx, &cctx);
                no_pss = 1;
                continue;
            }
            kh_seterr(err, errlen, KH_EXIT_BROKEN,
                      "loopback %s handshake failed%s%s: %s", vers[tries],
                      vr != X509_V_OK ? ", certificate: " : "",
                      vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "",
                      e2);
            rc = KH_EXIT_BROKEN;
            goto end;
        }
        if (SSL_write(c, "ping", 4) != 4
            || SSL_read(s, buf, sizeof(buf)) != 4) {
            kh_seterr(err, errlen, KH_EXIT_BROKEN,
                      "loopback %s: no data after the handshake", vers[tries]);
            rc = KH_EXIT_BROKEN;
            goto end;
        }
        tls_ends_free(&s, &c, &sctx, &cctx);
        if (EVP_PKEY_is_a(certkey, "RSA")) {
            /* an RSA key without PSS can only do 1.2: one is enough */
        }
    }
    rc = KH_EXIT_OK;
end:
    if (rc != KH_EXIT_OK) {
        ERR_clear_error();
    }
    EVP_MD_CTX_free(md);
    OPENSSL_free(sig);
    tls_ends_free(&s, &c, &sctx, &cctx);
    BIO_free(b1);
    BIO_free(b2);
    X509_STORE_free(store);
    return rc;
}
