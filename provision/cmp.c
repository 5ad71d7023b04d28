/* SPDX-License-Identifier: MIT */
/*
 * The CMP enrolment transport (RFC 9810 / RFC 4210, HTTP transfer per
 * RFC 6712) on OpenSSL's CMP client (OSSL_CMP_*): a first enrolment is an
 * initial request (ir) protected by a reference + shared secret (PBMAC) or
 * signed by a bootstrap identity; a renewal or rekey is a key update (kur)
 * signed by the current hardware key. In both the proof of possession is
 * signed by the new hardware key through the keyhold provider. The rest
 * (pinning, key, CSR, checks, install, hooks, rollback) is est_run.c's.
 *
 * Settings (identity config): cmp-url, cmp-ref, cmp-secret-file,
 * cmp-bootstrap (else est-bootstrap), server-ca (trust for an https://
 * server's TLS and for the CMP server's signed responses, besides the
 * pinned CA), cmp-timeout (per message, 60 s), cmp-poll-max (the whole
 * exchange with polling, 600 s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/cmp.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "keyhold.h"
#include "enrol.h"
#include "kh_pin.h"

#define KH_CMP_SECRET_MAX 256
#define KH_CMP_CHAIN_MAX 8

/* The CMP client's own log: shown only with --debug. */
static int cmp_debug;

static int cmp_log(const char *func, const char *file, int line,
                   OSSL_CMP_severity level, const char *msg)
{
    (void)func;
    (void)file;
    (void)line;
    if (cmp_debug && level <= OSSL_CMP_LOG_INFO) {
        fprintf(stderr, "keyhold: debug: cmp: %s\n", msg);
    }
    return 1;
}

/* HTTPS: OpenSSL's HTTP client hands over the connected socket BIO; a
 * TLS BIO goes on top, verifying the server against --server-ca (else the
 * system store) and its name. On disconnect the chain is freed whole. */
typedef struct cmp_tls {
    SSL_CTX *ssl_ctx;
    const char *host;
} CMP_TLS;

static BIO *cmp_tls_cb(BIO *bio, void *arg, int connect, int detail)
{
    CMP_TLS *t = arg;
    BIO *sbio;
    SSL *ssl = NULL;

    if (!connect || !detail) {
        return bio;
    }
    sbio = BIO_new_ssl(t->ssl_ctx, 1);
    if (sbio == NULL) {
        return NULL;
    }
    BIO_get_ssl(sbio, &ssl);
    if (ssl == NULL || !SSL_set1_host(ssl, t->host)
        || (!kh_host_is_ip(t->host)
            && !SSL_set_tlsext_host_name(ssl, t->host))) {
        BIO_free(sbio);
        return NULL;
    }
    return BIO_push(sbio, bio);
}

static int tls_ctx(KH_ENROL_IO *io, SSL_CTX **out, char *err,
                   size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new_ex(io->ctx->libctx, "?provider=default",
                                TLS_client_method());
    int ok;

    if (c == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: cannot set up "
                         "TLS", io->id->name);
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    ok = io->server_ca != NULL
             ? SSL_CTX_load_verify_file(c, io->server_ca)
             : SSL_CTX_set_default_verify_paths(c);
    if (!ok) {
        ERR_clear_error();
        SSL_CTX_free(c);
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: --server-ca "
                         "%s holds no usable CA certificate", io->id->name,
                         io->server_ca != NULL ? io->server_ca
                                               : "(system store)");
    }
    *out = c;
    return KH_EXIT_OK;
}

static int self_issued(X509 *c)
{
    return X509_NAME_cmp(X509_get_subject_name(c),
                         X509_get_issuer_name(c)) == 0;
}

/* The certificate of |pool| matching the "sha256:HEX" pin, or NULL. */
static X509 *find_by_fp(STACK_OF(X509) *pool, const char *pin)
{
    char f[80];
    int i;

    for (i = 0; i < sk_X509_num(pool); i++) {
        X509 *c = sk_X509_value(pool, i);

        if (kh_fp_cert(c, f, sizeof(f)) && strcasecmp(f, pin) == 0) {
            return c;
        }
    }
    return NULL;
}

/* The intermediates from |leaf| up to |ca| found in |pool|. */
static STACK_OF(X509) *pick_chain(X509 *leaf, X509 *ca,
                                  STACK_OF(X509) *pool)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *cur = leaf;
    int depth, i;

    if (chain == NULL) {
        return NULL;
    }
    for (depth = 0; depth < KH_CMP_CHAIN_MAX; depth++) {
        X509 *next = NULL;

        if (X509_NAME_cmp(X509_get_issuer_name(cur),
                          X509_get_subject_name(ca)) == 0) {
            break;
        }
        for (i = 0; i < sk_X509_num(pool); i++) {
            X509 *c = sk_X509_value(pool, i);

            if (X509_cmp(c, cur) != 0 && !self_issued(c)
                && X509_NAME_cmp(X509_get_subject_name(c),
                                 X509_get_issuer_name(cur)) == 0) {
                next = c;
                break;
            }
        }
        if (next == NULL) {
            break;
        }
        next = kh_cert_rebind(next);
        if (next == NULL || !sk_X509_push(chain, next)) {
            X509_free(next);
            break;
        }
        cur = next;
    }
    return chain;
}

/* Trust for the server's signed messages: the pinned CA + --server-ca. */
static X509_STORE *trust_store(KH_ENROL_IO *io, char *err, size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    STACK_OF(X509) *more = NULL;
    X509 *first = NULL;
    int i, ok = 0;

    if (st == NULL) {
        return NULL;
    }
    if (io->pinned_ca != NULL && !X509_STORE_add_cert(st, io->pinned_ca)) {
        goto end;
    }
    if (io->server_ca != NULL) {
        char e2[KH_ERR_MAX];

        if (kh_certs_read(io->server_ca, &first, &more, e2, sizeof(e2))
            != KH_EXIT_OK) {
            kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: --server-ca %s: "
                      "%s", io->id->name, io->server_ca, e2);
            goto end;
        }
        if (!X509_STORE_add_cert(st, first)) {
            goto end;
        }
        for (i = 0; i < sk_X509_num(more); i++) {
            if (!X509_STORE_add_cert(st, sk_X509_value(more, i))) {
                goto end;
            }
        }
    }
    ok = 1;
end:
    X509_free(first);
    sk_X509_pop_free(more, X509_free);
    if (!ok) {
        if (err != NULL && err[0] == '\0') {
            kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                      io->id->name);
        }
        X509_STORE_free(st);
        return NULL;
    }
    return st;
}

/* Names the failure of an exchange from the status and the error queue. */
static int explain(KH_ENROL_IO *io, OSSL_CMP_CTX *cmp, const char *what,
                   const char *url, int mac, const char *hint, char *err,
                   size_t errlen)
{
    unsigned long e;
    int reason = 0, lib = 0, status = OSSL_CMP_CTX_get_status(cmp);
    int tls_reason = 0, dlib = 0, dreason = 0;
    char sbuf[512] = "";
    const char *name = io->id->name;

    /* the first CMP reason is the most telling, else the first at all */
    while ((e = ERR_get_error()) != 0) {
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && tls_reason == 0) {
            tls_reason = ERR_GET_REASON(e);
        }
        /* the first reason below CMP: what was wrong with the transfer */
        if (ERR_GET_LIB(e) != ERR_LIB_CMP && dlib == 0) {
            dlib = ERR_GET_LIB(e);
            dreason = ERR_GET_REASON(e);
        }
        if (ERR_GET_LIB(e) == ERR_LIB_CMP && lib != ERR_LIB_CMP) {
            lib = ERR_LIB_CMP;
            reason = ERR_GET_REASON(e);
        } else if (lib == 0) {
            lib = ERR_GET_LIB(e);
            reason = ERR_GET_REASON(e);
        }
    }
    if (status >= 0 && OSSL_CMP_CTX_snprint_PKIStatus(cmp, sbuf,
                                                      sizeof(sbuf)) == NULL) {
        sbuf[0] = '\0';
    }
    if (status < 0 && tls_reason != 0) {
        const char *r = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0,
                                                         tls_reason));

        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s: TLS "
                         "with %s failed (%s): give --server-ca with the CA "
                         "of the CMP server's TLS certificate; the identity "
                         "is unchanged", name, what, url,
                         r != NULL ? r : "handshake failed");
    }
    if (lib == ERR_LIB_CMP) {
        switch (reason) {
        case CMP_R_WRONG_PBM_VALUE:
        case CMP_R_ERROR_VALIDATING_PROTECTION:
        case CMP_R_MISSING_PROTECTION:
            if (mac) {
                return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s "
                                 "to %s failed: the server's reply does not "
                                 "carry our shared secret (wrong --ref or "
                                 "--secret-file?)%s%s; the identity is "
                                 "unchanged", name, what, url,
                                 sbuf[0] != '\0' ? "; server said: " : "",
                                 sbuf);
            }
            return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s to "
                             "%s failed: the server's reply is not signed "
                             "by a certificate chaining to the pinned CA or "
                             "--server-ca (give --server-ca with the CMP "
                             "server's CA)%s%s; the identity is unchanged",
                             name, what, url,
                             sbuf[0] != '\0' ? "; server said: " : "", sbuf);
        case CMP_R_TRANSFER_ERROR:
            if (status < 0 && dlib != 0 && dlib != ERR_LIB_SYS
                && dlib != ERR_LIB_BIO) {
                /* something answered, but not with a CMP message */
                const char *l = ERR_lib_error_string(ERR_PACK(dlib, 0, 0));
                const char *d = ERR_reason_error_string(
                    ERR_PACK(dlib, 0, dreason));

                return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s: "
                                 "the answer from %s is not a usable CMP "
                                 "message (%s%s%s; is the URL the CA's CMP "
                                 "endpoint?); the identity is unchanged",
                                 name, what, url, l != NULL ? l : "",
                                 l != NULL ? ": " : "",
                                 d != NULL ? d : "malformed");
            }
            if (status < 0) {
                return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s: "
                                 "no answer from %s (is the CMP server "
                                 "running and the URL right?); the identity "
                                 "is unchanged", name, what, url);
            }
            break;
        case CMP_R_TOTAL_TIMEOUT:
            return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s to %s "
                             "timed out (raise cmp-poll-max, or ask why the "
                             "CA does not answer); the identity is "
                             "unchanged", name, what, url);
        case CMP_R_CERTIFICATE_NOT_ACCEPTED:
            return kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: CMP %s to "
                             "%s: the certificate returned is not for our "
                             "key (the CA answered another request?); the "
                             "identity is unchanged", name, what, url);
        default:
            break;
        }
    }
    if (status >= 0 && sbuf[0] != '\0') {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s refused "
                         "by %s: %s (%s); the identity is unchanged", name,
                         what, url, sbuf, hint);
    }
    if (status < 0 && (lib == ERR_LIB_HTTP || lib == ERR_LIB_BIO
                       || lib == ERR_LIB_SYS || lib == ERR_LIB_CMP)) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s: no "
                         "usable answer from %s (%s; is the CMP server "
                         "running and the URL right?); the identity is "
                         "unchanged", name, what, url,
                         reason != 0 ? ERR_reason_error_string(
                             ERR_PACK(lib, 0, reason)) : "no reason given");
    }
    return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: CMP %s to %s "
                     "failed: %s; the identity is unchanged", name, what, url,
                     reason != 0 ? ERR_reason_error_string(
                         ERR_PACK(lib, 0, reason)) : "unknown error");
}

/* Signature protection of the ir by a bootstrap identity (key in
 * hardware too): its certificate, chain and key. */
static int load_bootstrap(KH_ENROL_IO *io, const char *boot, X509 **cert,
                          STACK_OF(X509) **chain, EVP_PKEY **key, char *err,
                          size_t errlen)
{
    KH_IDENTITY *bid = NULL;
    int rc;

    if (!kh_name_valid(boot)) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: invalid bootstrap "
                         "identity name", io->id->name);
    }
    rc = kh_identity_load(io->ctx, boot, &bid, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    kh_state_load_current(io->ctx, boot, cert, chain, NULL);
    if (*chain != NULL && sk_X509_num(*chain) > 0 && *cert != NULL
        && X509_cmp(sk_X509_value(*chain, 0), *cert) == 0) {
        X509_free(sk_X509_shift(*chain));
    }
    if (*cert == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: bootstrap identity "
                       "'%s' has no certificate (install one first)",
                       io->id->name, boot);
    } else {
        rc = kh_identity_load_key(io->ctx, bid, NULL, key, err, errlen);
    }
    kh_identity_free(bid);
    return rc;
}

int kh_cmp_enrol(KH_ENROL_IO *io, char *err, size_t errlen)
{
    const char *name = io->id->name;
    const char *url = kh_id_get(io->id, "cmp-url");
    const char *ref = kh_id_get(io->id, "cmp-ref");
    const char *secfile = kh_id_get(io->id, "cmp-secret-file");
    const char *boot = kh_id_get(io->id, "cmp-bootstrap");
    const char *v, *what;
    char secret[KH_CMP_SECRET_MAX], e2[KH_ERR_MAX];
    size_t seclen = 0;
    char *host = NULL, *port = NULL, *path = NULL;
    int ssl = 0, portnum = 0, rc, mac = 0, kur;
    long timeout, poll_max;
    OSSL_CMP_CTX *cmp = NULL;
    X509_STORE *store = NULL;
    X509_EXTENSIONS *exts = NULL;
    X509 *bcert = NULL, *newcert, *ca;
    STACK_OF(X509) *bchain = NULL, *capubs = NULL, *extra = NULL;
    STACK_OF(X509) *pool = NULL;
    EVP_PKEY *bkey = NULL;
    CMP_TLS tls = { NULL, NULL };
    int i;

    secret[0] = '\0';
    cmp_debug = io->ctx->debug;
    if (boot == NULL) {
        boot = kh_id_get(io->id, "est-bootstrap");
    }
    if (url == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no CMP server "
                         "configured (run keyhold enroll %s --cmp URL ...)",
                         name, name);
    }
    if (!OSSL_HTTP_parse_url(url, &ssl, NULL, &host, &port, &portnum, &path,
                             NULL, NULL)) {
        ERR_clear_error();
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: cmp-url '%s' is "
                         "not a URL (http://HOST[:PORT]/PATH)", name, url);
    }
    kur = io->renewal && io->cur_cert != NULL && io->cur_key != NULL;
    what = kur ? "key update (kur)" : "initial request (ir)";

    cmp = OSSL_CMP_CTX_new(io->ctx->libctx, NULL);
    if (cmp == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    OSSL_CMP_CTX_set_log_cb(cmp, cmp_log);
    if (ssl) {
        tls.host = host;
        rc = tls_ctx(io, &tls.ssl_ctx, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        if (!OSSL_CMP_CTX_set_http_cb(cmp, cmp_tls_cb)
            || !OSSL_CMP_CTX_set_http_cb_arg(cmp, &tls)) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                           name);
            goto end;
        }
    }
    v = kh_id_get(io->id, "cmp-timeout");
    timeout = v != NULL ? atol(v) : 60;
    if (timeout <= 0 || timeout > 3600) {
        timeout = 60;
    }
    v = kh_id_get(io->id, "cmp-poll-max");
    poll_max = v != NULL ? atol(v) : 600;
    if (poll_max < timeout || poll_max > 86400) {
        poll_max = timeout > 600 ? timeout : 600;
    }
    if (!OSSL_CMP_CTX_set1_server(cmp, host)
        || !OSSL_CMP_CTX_set_serverPort(cmp, portnum)
        || !OSSL_CMP_CTX_set1_serverPath(cmp, path)
        || !OSSL_CMP_CTX_set_option(cmp, OSSL_CMP_OPT_MSG_TIMEOUT,
                                    (int)timeout)
        || !OSSL_CMP_CTX_set_option(cmp, OSSL_CMP_OPT_TOTAL_TIMEOUT,
                                    (int)poll_max)
        /* a refusal the server could not protect (it may not know our
         * secret) is still shown; only its status is used, never a
         * certificate */
        || !OSSL_CMP_CTX_set_option(cmp, OSSL_CMP_OPT_UNPROTECTED_ERRORS,
                                    1)) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: cannot set up the "
                       "CMP client", name);
        goto end;
    }
    store = trust_store(io, err, errlen);
    if (store == NULL) {
        rc = KH_EXIT_REJECTED;
        goto end;
    }
    if (!OSSL_CMP_CTX_set0_trustedStore(cmp, store)) {
        X509_STORE_free(store);
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    if (io->pinned_ca != NULL) {
        OSSL_CMP_CTX_set1_recipient(cmp,
                                    X509_get_subject_name(io->pinned_ca));
    }

    /* protection of our requests */
    if (kur) {
        /* RFC 9810 5.3.5: signed by the certificate being updated */
        if (!OSSL_CMP_CTX_set1_cert(cmp, io->cur_cert)
            || !OSSL_CMP_CTX_set1_pkey(cmp, io->cur_key)
            || (io->cur_chain != NULL
                && !OSSL_CMP_CTX_set1_untrusted(cmp, io->cur_chain))) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: the current "
                           "certificate cannot sign CMP messages", name);
            goto end;
        }
    } else if (ref != NULL || secfile != NULL) {
        enum kh_pin_rc prc;

        if (ref == NULL || secfile == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: CMP with a "
                           "shared secret needs both --ref REF and "
                           "--secret-file FILE", name);
            goto end;
        }
        prc = kh_pin_read_file(secfile, secret, sizeof(secret), &seclen, e2,
                               sizeof(e2));
        if (prc != KH_PIN_OK) {
            rc = kh_seterr(err, errlen, prc == KH_PIN_ERR_PERM
                               ? KH_EXIT_PERM : KH_EXIT_REJECTED,
                           "%s: CMP secret file: %s", name, e2);
            goto end;
        }
        if (!OSSL_CMP_CTX_set1_referenceValue(cmp,
                                              (const unsigned char *)ref,
                                              (int)strlen(ref))
            || !OSSL_CMP_CTX_set1_secretValue(cmp,
                                              (unsigned char *)secret,
                                              (int)seclen)) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                           name);
            goto end;
        }
        mac = 1;
    } else if (boot != NULL) {
        rc = load_bootstrap(io, boot, &bcert, &bchain, &bkey, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        if (!OSSL_CMP_CTX_set1_cert(cmp, bcert)
            || !OSSL_CMP_CTX_set1_pkey(cmp, bkey)
            || (bchain != NULL && !OSSL_CMP_CTX_set1_untrusted(cmp, bchain))) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: the bootstrap "
                           "certificate cannot sign CMP messages", name);
            goto end;
        }
    } else {
        rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no credentials for "
                       "a first CMP enrolment (--ref REF with --secret-file "
                       "FILE, or --bootstrap IDENTITY)", name);
        goto end;
    }

    /* what we ask for: the CSR's subject and extensions, for the key in
     * hardware, which signs the proof of possession */
    if (!EVP_PKEY_up_ref(io->key)) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    if (!OSSL_CMP_CTX_set0_newPkey(cmp, 1, io->key)) {
        EVP_PKEY_free(io->key);
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    if (!OSSL_CMP_CTX_set1_subjectName(cmp,
                                       X509_REQ_get_subject_name(io->csr))) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    exts = X509_REQ_get_extensions(io->csr);
    if (exts != NULL && sk_X509_EXTENSION_num(exts) > 0) {
        if (!OSSL_CMP_CTX_set0_reqExtensions(cmp, exts)) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                           name);
            goto end;
        }
        exts = NULL;
    }

    ERR_clear_error();
    kh_dbg(io->ctx, "%s: CMP %s to %s (%s)", name, what, url,
           kur ? "signed by the current key" : mac ? "PBMAC protected"
                                                   : "signed by bootstrap");
    newcert = kur ? OSSL_CMP_exec_KUR_ses(cmp) : OSSL_CMP_exec_IR_ses(cmp);
    if (newcert == NULL) {
        rc = explain(io, cmp, what, url, mac,
                     kur ? "the CA does not accept the current certificate "
                           "for a key update: enrol again with --ref and "
                           "--secret-file"
                         : mac ? "check --ref and --secret-file with the CA"
                               : "the CA does not accept the bootstrap "
                                 "certificate", err, errlen);
        goto end;
    }
    ERR_clear_error();

    io->cert = kh_cert_rebind(newcert);
    capubs = OSSL_CMP_CTX_get1_caPubs(cmp);
    extra = OSSL_CMP_CTX_get1_extraCertsIn(cmp);
    pool = sk_X509_new_null();
    if (io->cert == NULL || pool == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    for (i = 0; i < sk_X509_num(capubs); i++) {
        sk_X509_push(pool, sk_X509_value(capubs, i));
    }
    for (i = 0; i < sk_X509_num(extra); i++) {
        sk_X509_push(pool, sk_X509_value(extra, i));
    }
    if (io->pinned_ca != NULL) {
        ca = io->pinned_ca;
    } else if (io->ca_fingerprint != NULL) {
        ca = find_by_fp(pool, io->ca_fingerprint);
        if (ca == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: no CA "
                           "certificate from %s matches the pinned "
                           "fingerprint %s (give the CA with --ca FILE); the "
                           "identity is unchanged", name, url,
                           io->ca_fingerprint);
            goto end;
        }
    } else {
        rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no pinned CA: give "
                       "--ca FILE or --ca-fingerprint sha256:HEX", name);
        goto end;
    }
    io->ca = kh_cert_rebind(ca);
    io->chain = pick_chain(io->cert, io->ca, pool);
    if (io->ca == NULL || io->chain == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: out of memory",
                       name);
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    if (rc != KH_EXIT_OK) {
        kh_enrol_io_clear(io);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    OSSL_CMP_CTX_free(cmp);
    SSL_CTX_free(tls.ssl_ctx);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    sk_X509_free(pool);
    sk_X509_pop_free(capubs, X509_free);
    sk_X509_pop_free(extra, X509_free);
    X509_free(bcert);
    sk_X509_pop_free(bchain, X509_free);
    EVP_PKEY_free(bkey);
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    ERR_clear_error();
    return rc;
}
