/* SPDX-License-Identifier: MIT */
/*
 * One enrolment over EST for one identity, shared by enroll, renew and
 * rekey: settings from the identity config, /cacerts against the pin, the
 * key (in service, pending, or a new one for rekey), the hardware-signed
 * CSR, simpleenroll or simplereenroll, every install check, a loopback TLS
 * health check, the atomic switch, reload hooks with rollback, and the
 * old key retired after a rekey. The caller holds the identity's lock.
 */
#include <errno.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "keyhold.h"
#include "enrol.h"
#include "est.h"
#include "kh_pin.h"

static time_t cert_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return timegm(&tm);
}

/* 1 when |cert| can still authenticate itself and names every host. */
static int can_reenroll(const KH_IDENTITY *id, X509 *cert, time_t now,
                        const char **why)
{
    KH_STRLIST names = { 0 };
    size_t i;
    int ok = 1;

    if (cert == NULL) {
        *why = "no certificate yet";
        return 0;
    }
    if (now >= cert_time(X509_get0_notAfter(cert))) {
        *why = "the certificate has expired and can no longer authenticate "
               "itself";
        return 0;
    }
    if (kh_identity_names(id, &names)) {
        for (i = 0; i < names.n && ok; i++) {
            if (!kh_cert_has_name(cert, names.v[i])) {
                *why = "the host names changed (set-hosts)";
                ok = 0;
            }
        }
    }
    kh_strlist_free(&names);
    return ok;
}

static X509 *read_pem_cert(const char *path, char *err, size_t errlen)
{
    X509 *x = NULL;
    STACK_OF(X509) *rest = NULL;

    if (kh_certs_read(path, &x, &rest, err, errlen) != KH_EXIT_OK) {
        return NULL;
    }
    sk_X509_pop_free(rest, X509_free);
    return x;
}

/* The public key of |uri| as the token (or TPM) reports it. */
static int key_public(KH_CTX *ctx, const KH_IDENTITY *id, const char *uri,
                      EVP_PKEY **pub, char *err, size_t errlen)
{
    char hex[130];
    KH_TOKEN *t = NULL;
    int rc;

    *pub = NULL;
    if (strncmp(uri, "pkcs11:", 7) != 0) {
        if (kh_tpm_get_pubkey == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_TOKEN, "no TPM support "
                             "in this build for %s", uri);
        }
        return kh_tpm_get_pubkey(ctx, id, uri, pub, err, errlen);
    }
    if (!kh_uri_key_id(uri, hex, sizeof(hex))) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "key URI has no id=");
    }
    rc = kh_token_open_identity(ctx, id, &t, err, errlen);
    if (rc == KH_EXIT_OK) {
        rc = kh_token_get_pubkey(t, hex, pub, err, errlen);
    }
    kh_token_close(t);
    return rc;
}

/* rekey: a new key in the identity's token (or TPM), recorded as pending
 * so that a crash leaves it findable and a second run reuses it. */
static int new_key(KH_CTX *ctx, KH_IDENTITY *id, char **uri, char *err,
                   size_t errlen)
{
    const char *alg = kh_id_get(id, "alg");
    const char *backend = kh_id_get(id, "backend");
    int decrypt = kh_id_get_bool(id, "allow-decrypt", 0);
    unsigned gen = kh_state_max_gen(ctx, id->name) + 1;
    char hex[KH_KEYID_HEX], pin[KH_PIN_MAX + 1], e2[256];
    size_t pinlen = 0;
    KH_TOKEN *t = NULL;
    KH_STATUS_REC st;
    int rc;

    *uri = NULL;
    if (alg == NULL) {
        alg = "ec-p256";
    }
    if (backend != NULL && strcmp(backend, "tpm2") == 0) {
        if (kh_tpm_keygen == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_TOKEN, "no TPM support in "
                             "this build");
        }
        rc = kh_tpm_keygen(ctx, id, alg, gen, decrypt, uri, err, errlen);
        if (rc != KH_EXIT_OK) {
            return rc;
        }
    } else {
        rc = kh_token_open_identity(ctx, id, &t, err, errlen);
        if (rc == KH_EXIT_OK) {
            rc = kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, err,
                               errlen);
        }
        if (rc == KH_EXIT_OK) {
            rc = kh_token_login(t, pin, pinlen, err, errlen);
        }
        OPENSSL_cleanse(pin, sizeof(pin));
        if (rc == KH_EXIT_OK) {
            rc = kh_token_keygen(t, alg, id->name, gen, decrypt, hex, err,
                                 errlen);
        }
        kh_token_close(t);
        if (rc != KH_EXIT_OK) {
            return rc;
        }
        *uri = kh_token_key_uri(kh_id_get(id, "module"),
                                kh_id_get(id, "token"), hex);
        if (*uri == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_TOKEN, "out of memory");
        }
    }
    kh_crash_point("rekey-keygen");
    kh_status_read(ctx, id->name, &st);
    snprintf(st.pending_key_uri, sizeof(st.pending_key_uri), "%s", *uri);
    rc = kh_status_write(ctx, id->name, &st, e2, sizeof(e2));
    if (rc != KH_EXIT_OK) {
        return kh_seterr(err, errlen, rc, "cannot record the new key: %s", e2);
    }
    kh_audit(ctx, "keygen", id->name, hex, "ok", "rekey: new key pending");
    return KH_EXIT_OK;
}

/*
 * Destroys the key |uri| a rekey replaced (after its health check, reload
 * hooks and grace period); with |uri| NULL, sweeps the keys of this identity
 * that nothing references any more (a crash right after keygen).
 */
static void retire_key(KH_CTX *ctx, KH_IDENTITY *id, const char *uri,
                       int quiet)
{
    char hex[130] = "", pin[KH_PIN_MAX + 1], e2[KH_ERR_MAX];
    size_t pinlen = 0;
    KH_TOKEN *t = NULL;
    int rc;

    if (uri != NULL && strncmp(uri, "pkcs11:", 7) != 0) {
        if (kh_tpm_key_destroy != NULL
            && kh_tpm_key_destroy(ctx, id, uri, e2, sizeof(e2))
               == KH_EXIT_OK) {
            kh_audit(ctx, "key-destroy", id->name, NULL, "ok",
                     "replaced by rekey");
        }
        return;
    }
    if (uri != NULL && !kh_uri_key_id(uri, hex, sizeof(hex))) {
        return;
    }
    rc = kh_token_open_identity(ctx, id, &t, e2, sizeof(e2));
    if (rc == KH_EXIT_OK) {
        rc = kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, e2,
                           sizeof(e2));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_token_login(t, pin, pinlen, e2, sizeof(e2));
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rc == KH_EXIT_OK && uri != NULL) {
        int count = 0;

        rc = kh_token_destroy_id(t, hex, &count, e2, sizeof(e2));
        if (rc == KH_EXIT_OK && count > 0) {
            kh_audit(ctx, "key-destroy", id->name, hex, "ok",
                     "replaced by rekey");
        }
    }
    if (rc == KH_EXIT_OK && uri == NULL) {
        rc = kh_identity_clean_orphans(ctx, id, t, e2, sizeof(e2));
    }
    kh_token_close(t);
    if (rc != KH_EXIT_OK && !quiet) {
        kh_warn(ctx, "%s: old key %s not destroyed: %s", id->name,
                hex[0] ? hex : "(orphans)", e2);
    } else if (rc != KH_EXIT_OK) {
        kh_dbg(ctx, "%s: orphan keys not checked: %s", id->name, e2);
    }
}

/* A rekey's new key: the pending one an interrupted run made (named on
 * stderr), or a new one. */
static int rekey_key(KH_CTX *ctx, KH_IDENTITY *id, char **uri, char *err,
                     size_t errlen)
{
    KH_STATUS_REC st;

    kh_status_read(ctx, id->name, &st);
    if (st.pending_key_uri[0] == '\0') {
        return new_key(ctx, id, uri, err, errlen);
    }
    *uri = strdup(st.pending_key_uri);
    fprintf(stderr, "keyhold: rekey %s: reusing the new key made by an "
            "earlier run\n", id->name);
    return *uri != NULL ? KH_EXIT_OK
                        : kh_seterr(err, errlen, KH_EXIT_BROKEN,
                                    "out of memory");
}

/* rekey --csr-out: the pending key (made now or by an earlier run) and its
 * CSR; the identity in service is not touched. */
static int offline_csr(KH_CTX *ctx, KH_IDENTITY *id, const char *csr_out,
                       char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    X509_REQ *csr = NULL;
    char *uri = NULL, hex[130] = "";
    int rc;

    rc = rekey_key(ctx, id, &uri, err, errlen);
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_load_key(ctx, id, uri, &pkey, err, errlen);
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_make_csr(ctx, id, pkey, &csr, err, errlen);
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_csr_write(csr, csr_out, err, errlen);
    }
    if (rc == KH_EXIT_OK) {
        fprintf(stderr, "keyhold: rekey %s: CSR for the new key written to "
                "%s; install its certificate with keyhold install %s CERT\n",
                id->name, csr_out, id->name);
    }
    if (uri != NULL) {
        kh_uri_key_id(uri, hex, sizeof(hex));
    }
    kh_audit(ctx, "rekey-csr", id->name, hex,
             rc == KH_EXIT_OK ? "ok" : "failed",
             rc == KH_EXIT_OK ? csr_out : err);
    X509_REQ_free(csr);
    EVP_PKEY_free(pkey);
    free(uri);
    return rc;
}

/*
 * Keys a rekey replaced, kept for the grace period (rekey-grace) so that
 * servers that have not reloaded yet keep working:
 *   $STATE/NAME/retired-keys   one line per key: DEADLINE URI
 * Destroyed by the first renew (or rekey) run after the deadline, unless
 * the key is in service again (a rollback).
 */
static int retired_path(KH_CTX *ctx, const char *name, char *buf, size_t len)
{
    return kh_path(buf, len, "%s/%s/retired-keys", ctx->state_dir, name);
}

static void retire_later(KH_CTX *ctx, KH_IDENTITY *id, const char *uri,
                         time_t deadline)
{
    char path[KH_PATH_MAX], e2[256], line[1200];
    char *old = NULL, *nb;
    size_t oldlen = 0, n;

    if (!retired_path(ctx, id->name, path, sizeof(path))) {
        return;
    }
    if (!kh_read_file(path, 256 * 1024, &old, &oldlen, e2, sizeof(e2))) {
        old = NULL;
        oldlen = 0;
    }
    n = (size_t)snprintf(line, sizeof(line), "%lld %s\n", (long long)deadline,
                         uri);
    nb = malloc(oldlen + n + 1);
    if (nb != NULL && n < sizeof(line)) {
        if (oldlen > 0) {
            memcpy(nb, old, oldlen);
        }
        memcpy(nb + oldlen, line, n);
        if (!kh_write_atomic(path, nb, oldlen + n, 0640, e2, sizeof(e2))) {
            kh_warn(ctx, "%s: cannot record the retired key: %s", id->name,
                    e2);
        }
    }
    free(nb);
    free(old);
}

/* Destroys retired keys whose grace period is over (all when |all|). */
static void retire_due(KH_CTX *ctx, KH_IDENTITY *id, int all)
{
    char path[KH_PATH_MAX], e2[256], *buf = NULL, *line, *save = NULL;
    char *in_use = NULL;
    KH_STATUS_REC st;
    size_t len = 0, keeplen = 0;
    char *keep = NULL;
    time_t now = time(NULL);

    if (!retired_path(ctx, id->name, path, sizeof(path))
        || !kh_read_file(path, 256 * 1024, &buf, &len, e2, sizeof(e2))
        || buf == NULL) {
        return;
    }
    keep = calloc(1, len + 1);
    if (keep == NULL) {
        free(buf);
        return;
    }
    kh_identity_key_uri(ctx, id, &in_use);
    kh_status_read(ctx, id->name, &st);
    for (line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        long long when = atoll(line);

        if (sp == NULL) {
            continue;
        }
        sp++;
        if ((in_use != NULL && strcmp(sp, in_use) == 0)
            || strcmp(sp, st.pending_key_uri) == 0) {
            continue;   /* in service again (rollback): not retired */
        }
        if (all || when <= (long long)now) {
            retire_key(ctx, id, sp, 0);
        } else {
            keeplen += (size_t)sprintf(keep + keeplen, "%s\n", line);
        }
    }
    if (keeplen == 0) {
        unlink(path);
    } else {
        kh_write_atomic(path, keep, keeplen, 0640, e2, sizeof(e2));
    }
    free(in_use);
    free(keep);
    free(buf);
}

static void report(KH_CTX *ctx, const KH_IDENTITY *id, const char *op,
                   const char *uri, EVP_PKEY *pub, X509_REQ *csr, X509 *cert,
                   const char *outcome)
{
    KH_REPORT r;
    char hex[130] = "";

    memset(&r, 0, sizeof(r));
    if (uri != NULL) {
        kh_uri_key_id(uri, hex, sizeof(hex));
    }
    r.op = op;
    r.identity = id->name;
    r.backend = kh_id_get(id, "backend") != NULL ? kh_id_get(id, "backend")
                                                 : "pkcs11";
    r.key_id = hex;
    r.key_uri = uri;
    r.pub = pub;
    r.csr = csr;
    r.cert = cert;
    r.outcome = outcome;
    kh_report(ctx, &r);
}

int kh_est_run(KH_CTX *ctx, KH_IDENTITY *id, enum kh_est_mode mode,
               const char *csr_out, char *err, size_t errlen)
{
    static const char *opname[] = { "enroll", "renew", "rekey" };
    const char *op = opname[mode];
    const char *url = kh_id_get(id, "est-url");
    const char *fp = kh_id_get(id, "ca-fingerprint");
    const char *ca_file = kh_id_get(id, "ca");
    const char *user = kh_id_get(id, "est-user");
    const char *pwfile = kh_id_get(id, "est-password-file");
    const char *boot = kh_id_get(id, "est-bootstrap");
    const char *host = kh_id_get(id, "host");
    const char *why = NULL, *v;
    char password[KH_PIN_MAX + 1], e2[KH_ERR_MAX];
    size_t pwlen = 0;
    KH_EST e;
    KH_IDENTITY *bid = NULL;
    X509 *cur = NULL, *curca = NULL, *pinned = NULL, *ca = NULL;
    X509 *cert = NULL, *bcert = NULL;
    STACK_OF(X509) *curchain = NULL, *cacerts = NULL, *chain = NULL;
    STACK_OF(X509) *extra = NULL, *bchain = NULL;
    EVP_PKEY *tls_key = NULL, *pkey = NULL, *pub = NULL;
    X509_REQ *csr = NULL;
    char *uri = NULL, *old_uri = NULL;
    time_t now = time(NULL);
    int rc, reenroll, trust_first = 0, audited = 0, is_est;
    const char *proto = kh_id_get(id, "enrol-protocol");
    kh_enrol_fn transport = NULL;
    KH_ENROL_IO io;
    KH_INSTALL_REQ req;

    memset(&e, 0, sizeof(e));
    memset(&req, 0, sizeof(req));
    memset(&io, 0, sizeof(io));
    password[0] = '\0';
    if (mode == KH_EST_REKEY && csr_out != NULL) {
        /* air-gapped: no EST settings, no network */
        return offline_csr(ctx, id, csr_out, err, errlen);
    }
    if (proto == NULL) {
        proto = "est";
    }
    is_est = strcmp(proto, "est") == 0;
    if (!is_est) {
        /* SCEP, ACME, CMP (enrol.h): they carry the CSR, the rest is ours */
        transport = kh_enrol_protocol(proto);
        if (transport == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: this keyhold "
                             "was built without %s enrolment", id->name,
                             proto);
        }
        url = "https://unused/";
    }
    if (url == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no EST server "
                         "configured (run keyhold enroll %s --est URL ...)",
                         id->name, id->name);
    }
    if (!kh_est_base_url(url, e.base, sizeof(e.base), e2, sizeof(e2))) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: %s", id->name, e2);
    }
    if (kh_clock_suspect(now)) {
        return kh_seterr(err, errlen, KH_EXIT_ATTENTION, "%s: the clock is "
                         "before this build's date (clock-suspect): set the "
                         "time first; nothing was changed", id->name);
    }
    e.who = id->name;
    e.http.server_ca = kh_id_get(id, is_est ? "est-server-ca" : "server-ca");
    if (e.http.server_ca == NULL) {
        e.http.server_ca = kh_id_get(id, is_est ? "server-ca"
                                                : "est-server-ca");
    }
    v = kh_id_get(id, "est-timeout");
    e.http.timeout = v != NULL ? atol(v) : 60;
    e.http.connect_timeout = e.http.timeout < 10 ? e.http.timeout : 10;
    v = kh_id_get(id, "est-poll-max");
    e.poll_max = v != NULL ? atol(v) : 600;

    /* what is installed now (chain.pem: the leaf comes first) */
    kh_state_load_current(ctx, id->name, &cur, &curchain, &curca);
    if (curchain != NULL && sk_X509_num(curchain) > 0 && cur != NULL
        && X509_cmp(sk_X509_value(curchain, 0), cur) == 0) {
        X509_free(sk_X509_shift(curchain));
    }
    if (fp == NULL && ca_file != NULL) {
        pinned = read_pem_cert(ca_file, e2, sizeof(e2));
        if (pinned == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: CA file: %s",
                           id->name, e2);
            goto end;
        }
    } else if (fp == NULL && curca != NULL) {
        pinned = X509_dup(curca);
    }
    if (is_est && boot != NULL
        && (mode == KH_EST_ENROLL || !can_reenroll(id, cur, now, &why))) {
        kh_state_load_current(ctx, boot, &bcert, &bchain, NULL);
        if (bchain != NULL && sk_X509_num(bchain) > 0 && bcert != NULL
            && X509_cmp(sk_X509_value(bchain, 0), bcert) == 0) {
            X509_free(sk_X509_shift(bchain));
        }
    }
    if (fp == NULL && pinned == NULL
        && (!is_est || mode != KH_EST_ENROLL || e.http.server_ca == NULL)) {
        rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no pinned CA: give "
                       "--ca FILE or --ca-fingerprint sha256:HEX (or "
                       "--server-ca for the EST server, whose /cacerts is "
                       "then pinned); keyhold never trusts a CA on first "
                       "use silently", id->name);
        goto end;
    }
    rc = kh_prov_load(ctx, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }

    /* who we are towards the CA */
    reenroll = mode != KH_EST_ENROLL && can_reenroll(id, cur, now, &why);
    if (mode != KH_EST_ENROLL && !reenroll) {
        fprintf(stderr, "keyhold: %s %s: %s: enrolling again with the "
                "bootstrap credentials\n", op, id->name, why);
    }
    if (!is_est) {
        if (reenroll) {
            rc = kh_identity_load_key(ctx, id, NULL, &tls_key, err, errlen);
            if (rc != KH_EXIT_OK) {
                goto end;
            }
        }
        goto key;
    }
    if (reenroll) {
        /* RFC 7030 4.2.2: the current certificate and key authenticate */
        rc = kh_identity_load_key(ctx, id, NULL, &tls_key, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        e.http.client_key = tls_key;
        e.http.client_cert = cur;
        e.http.client_chain = curchain;
    } else {
        if (user == NULL && boot == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no bootstrap "
                           "credentials for a first enrolment (--user with "
                           "--password-file, or --bootstrap IDENTITY)",
                           id->name);
            goto end;
        }
        if (user != NULL) {
            enum kh_pin_rc prc;

            if (pwfile == NULL) {
                rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: --user needs "
                               "--password-file", id->name);
                goto end;
            }
            prc = kh_pin_read_file(pwfile, password, sizeof(password),
                                   &pwlen, e2, sizeof(e2));
            if (prc != KH_PIN_OK) {
                rc = kh_seterr(err, errlen, prc == KH_PIN_ERR_PERM
                                   ? KH_EXIT_PERM : KH_EXIT_REJECTED,
                               "%s: password file: %s", id->name, e2);
                goto end;
            }
            e.http.user = user;
            e.http.password = password;
        }
        if (boot != NULL) {
            /* a factory bootstrap identity: its key is in hardware too */
            rc = kh_identity_load(ctx, boot, &bid, err, errlen);
            if (rc == KH_EXIT_OK && bcert == NULL) {
                rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "bootstrap "
                               "identity '%s' has no certificate", boot);
            }
            if (rc == KH_EXIT_OK) {
                rc = kh_identity_load_key(ctx, bid, NULL, &tls_key, err,
                                          errlen);
            }
            if (rc != KH_EXIT_OK) {
                goto end;
            }
            e.http.client_key = tls_key;
            e.http.client_cert = bcert;
            e.http.client_chain = bchain;
        }
    }

    /* the CA: /cacerts against the pin, never trusted on first use silently */
    rc = kh_est_cacerts(&e, &cacerts, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    if (fp == NULL && pinned == NULL) {
        if (mode != KH_EST_ENROLL || e.http.server_ca == NULL
            || sk_X509_num(cacerts) != 1) {
            rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no pinned CA: "
                           "give --ca FILE or --ca-fingerprint sha256:HEX "
                           "(keyhold never trusts a CA on first use "
                           "silently)", id->name);
            goto end;
        }
        /* RFC 7030 4.1.3: /cacerts over a channel authenticated by the
         * explicit trust anchor --server-ca; pinned from now on */
        trust_first = 1;
        pinned = X509_dup(sk_X509_value(cacerts, 0));
    }
    rc = kh_est_pick_ca(cacerts, fp, pinned, &ca, &chain, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    if (trust_first) {
        char f[80] = "";

        kh_fp_cert(ca, f, sizeof(f));
        fprintf(stderr, "keyhold: %s: trusting the CA from %s/cacerts "
                "(authenticated by --server-ca): %s; pinned as "
                "ca-fingerprint\n", id->name, e.base, f);
        kh_id_set(id, "ca-fingerprint", f);
        if (kh_identity_save(ctx, id, e2, sizeof(e2)) != KH_EXIT_OK) {
            kh_warn(ctx, "%s: pin not saved: %s", id->name, e2);
        }
    }

key:
    /* the key the new certificate is for */
    if (kh_identity_key_uri(ctx, id, &old_uri) != KH_EXIT_OK) {
        old_uri = NULL;
    }
    if (mode == KH_EST_REKEY) {
        rc = rekey_key(ctx, id, &uri, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
    } else {
        rc = kh_identity_next_key_uri(ctx, id, &uri);
        if (rc != KH_EXIT_OK) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: no key (run "
                           "keyhold provision first)", id->name);
            goto end;
        }
    }
    if (uri == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
        goto end;
    }
    rc = kh_identity_load_key(ctx, id, uri, &pkey, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = kh_identity_make_csr(ctx, id, pkey, &csr, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    kh_crash_point("est-csr");

    if (is_est) {
        rc = kh_est_enroll(&e, reenroll, csr, &cert, &extra, err, errlen);
    } else {
        io.ctx = ctx;
        io.id = id;
        io.renewal = reenroll;
        io.csr = csr;
        io.key = pkey;
        io.cur_cert = cur;
        io.cur_chain = curchain;
        io.cur_key = tls_key;
        io.pinned_ca = pinned;
        io.ca_fingerprint = fp;
        io.server_ca = e.http.server_ca;
        rc = transport(&io, err, errlen);
        if (rc == KH_EXIT_OK && (io.cert == NULL || io.ca == NULL)) {
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the %s "
                           "exchange returned no certificate", id->name,
                           proto);
        }
        if (rc == KH_EXIT_OK) {
            cert = io.cert;
            chain = io.chain;
            ca = io.ca;
            io.cert = NULL;
            io.chain = NULL;
            io.ca = NULL;
        }
        kh_enrol_io_clear(&io);
    }
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    kh_crash_point("est-response");

    /* every check before anything changes, then the health check */
    rc = key_public(ctx, id, uri, &pub, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = kh_cert_check(ctx, id, cert, chain, ca, pub, time(NULL), e2,
                       sizeof(e2));
    if (rc != KH_EXIT_OK) {
        rc = kh_seterr(err, errlen, rc, "%s: certificate from the CA "
                       "refused: %s; the identity is unchanged", id->name, e2);
        goto end;
    }
    rc = kh_key_selftest(ctx, pkey, cert, chain, ca, host, e2, sizeof(e2));
    if (rc != KH_EXIT_OK) {
        rc = kh_seterr(err, errlen, rc, "%s: health check of the new "
                       "certificate failed: %s; the identity is unchanged",
                       id->name, e2);
        goto end;
    }
    kh_crash_point("est-checked");
    req.cert = cert;
    req.chain = chain;
    req.ca = ca;
    req.key_uri = uri;
    req.op = op;
    audited = 1;    /* kh_identity_install writes the audit record */
    rc = kh_identity_install(ctx, id, &req, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    kh_crash_point("est-installed");

    /* the servers take the new identity, or everything goes back */
    rc = kh_run_hooks(ctx, id, e2, sizeof(e2));
    if (rc != KH_EXIT_OK) {
        char e3[KH_ERR_MAX];
        int rb = kh_identity_rollback(ctx, id, e3, sizeof(e3));

        if (rb == KH_EXIT_OK) {
            kh_run_hooks(ctx, id, e3, sizeof(e3));
            if (mode == KH_EST_REKEY) {
                /* keep the new key pending for the next try */
                KH_STATUS_REC st;

                kh_status_read(ctx, id->name, &st);
                snprintf(st.pending_key_uri, sizeof(st.pending_key_uri),
                         "%s", uri);
                kh_status_write(ctx, id->name, &st, e3, sizeof(e3));
            }
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: %s; rolled back "
                           "to the previous certificate and key", id->name,
                           e2);
        } else {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: %s; rollback "
                           "impossible: %s", id->name, e2, e3);
        }
        goto end;
    }
    kh_crash_point("est-hooks");
    if (mode == KH_EST_REKEY && old_uri != NULL && strcmp(old_uri, uri) != 0
        && !kh_id_get_bool(id, "rekey-keep-old", 0)) {
        v = kh_id_get(id, "rekey-grace");
        long grace = v != NULL ? atol(v) : KH_REKEY_GRACE_DEFAULT;

        if (grace <= 0) {
            retire_key(ctx, id, old_uri, 0);
        } else {
            /* servers that have not reloaded yet still sign with it */
            retire_later(ctx, id, old_uri, time(NULL) + grace);
            fprintf(stderr, "keyhold: rekey %s: the old key is kept for "
                    "%ld s (rekey-grace), then destroyed by keyhold renew\n",
                    id->name, grace);
        }
    }
    retire_due(ctx, id, 0);
    if (strncmp(uri, "pkcs11:", 7) == 0) {
        /* keys left by a rekey killed right after keygen */
        retire_key(ctx, id, NULL, 1);
    }
    {
        char nab[64] = "";
        BIO *b = BIO_new(BIO_s_mem());

        if (b != NULL && ASN1_TIME_print(b, X509_get0_notAfter(cert)) > 0) {
            int n = BIO_read(b, nab, sizeof(nab) - 1);

            nab[n > 0 ? n : 0] = '\0';
        }
        BIO_free(b);
        printf("%s: %s ok, certificate valid until %s\n", id->name, op, nab);
    }
    rc = KH_EXIT_OK;
end:
    if (!audited) {
        char hex[130] = "";

        if (uri != NULL) {
            kh_uri_key_id(uri, hex, sizeof(hex));
        }
        kh_audit(ctx, op, id->name, hex, rc == KH_EXIT_OK ? "ok" : "failed",
                 rc == KH_EXIT_OK ? NULL : err);
    }
    report(ctx, id, op, uri, pub, csr, cert, rc == KH_EXIT_OK ? "ok" : err);
    OPENSSL_cleanse(password, sizeof(password));
    X509_REQ_free(csr);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(tls_key);
    sk_X509_pop_free(extra, X509_free);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(cacerts, X509_free);
    sk_X509_pop_free(curchain, X509_free);
    sk_X509_pop_free(bchain, X509_free);
    X509_free(cert);
    X509_free(ca);
    X509_free(pinned);
    X509_free(cur);
    X509_free(curca);
    X509_free(bcert);
    kh_identity_free(bid);
    free(uri);
    free(old_uri);
    return rc;
}

void kh_est_print_err(KH_CTX *ctx, const char *op, const char *name,
                      const char *err)
{
    size_t n = strlen(name);

    if (strncmp(err, name, n) == 0 && err[n] == ':' && err[n + 1] == ' ') {
        err += n + 2;
    }
    kh_err(ctx, "%s %s: %s", op, name, err);
}

void kh_est_record_failure(KH_CTX *ctx, const char *name, const char *err)
{
    KH_STATUS_REC st;
    X509 *cur = NULL;

    kh_status_read(ctx, name, &st);
    kh_state_load_current(ctx, name, &cur, NULL, NULL);
    kh_status_record_attempt(ctx, name, 0, err,
                             kh_renew_backoff(time(NULL), st.failures + 1,
                                              cur));
    X509_free(cur);
}

void kh_est_record(KH_CTX *ctx, const char *name, int rc, const char *err)
{
    if (rc == KH_EXIT_OK) {
        kh_status_record_attempt(ctx, name, 1, NULL, 0);
    } else {
        kh_est_record_failure(ctx, name, err);
    }
}

void kh_est_clean_orphans(KH_CTX *ctx, KH_IDENTITY *id)
{
    const char *backend = kh_id_get(id, "backend");

    retire_due(ctx, id, 0);
    if (backend != NULL && strcmp(backend, "tpm2") == 0) {
        return;
    }
    retire_key(ctx, id, NULL, 1);
}
