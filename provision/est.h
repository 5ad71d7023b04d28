/* SPDX-License-Identifier: MIT */
/*
 * EST (RFC 7030) client: /cacerts checked against the pinned CA,
 * /simpleenroll and /simplereenroll with the hardware-signed CSR, 202 +
 * Retry-After polling within a bound; and the renewal policy shared by
 * enroll, renew, rekey and status.
 */
#ifndef KH_PROVISION_EST_H
#define KH_PROVISION_EST_H

#include <stddef.h>
#include <time.h>
#include <openssl/x509.h>

#include "http.h"

#define KH_EST_MAX_BODY (256 * 1024)  /* a certs-only reply is a few KiB */
#define KH_EST_MAX_CERTS 16
#define KH_REKEY_GRACE_DEFAULT 3600   /* seconds the replaced key is kept */

/*
 * Parses an EST certs-only reply: base64 (or DER) of a CMS/PKCS#7
 * SignedData with certificates and no signers. Bounded (KH_EST_MAX_BODY,
 * KH_EST_MAX_CERTS), no side effects (fuzzed). |content_type| may be NULL;
 * when given it must be application/pkcs7-mime (HTML error pages served
 * with 200 are refused by name). 1 ok with *out (>= 1 cert), 0 with err.
 */
int kh_est_parse_certs(const unsigned char *body, size_t len,
                       const char *content_type, STACK_OF(X509) **out,
                       char *err, size_t errlen);

/* "https://host[:port][/.well-known/est[/LABEL]]" -> the EST base URL
 * (".../.well-known/est[/LABEL]", no trailing slash). 1 ok, 0 with err. */
int kh_est_base_url(const char *in, char *out, size_t outlen, char *err,
                    size_t errlen);

typedef struct kh_est {
    char base[1024];          /* from kh_est_base_url */
    KH_HTTP_OPTS http;
    long poll_max;            /* seconds spent waiting on 202 at most */
    const char *who;          /* identity name, for messages */
} KH_EST;

/* GET /cacerts. Exit code; *certs as the server sent them. */
int kh_est_cacerts(KH_EST *e, STACK_OF(X509) **certs, char *err,
                   size_t errlen);
/*
 * POST /simpleenroll (reenroll 0) or /simplereenroll (1) with |csr|;
 * follows 202 + Retry-After within poll_max. *cert is the issued
 * certificate, *extra any other certificates in the reply.
 * Exit code: KH_EXIT_NETWORK (unreachable, 5xx, timeout, still pending),
 * KH_EXIT_REJECTED (4xx, unparsable reply) with the server's reason.
 */
int kh_est_enroll(KH_EST *e, int reenroll, X509_REQ *csr, X509 **cert,
                  STACK_OF(X509) **extra, char *err, size_t errlen);

/*
 * Picks the trust anchor from /cacerts against the pin: a SHA-256
 * fingerprint ("sha256:HEX", colons allowed) or a CA certificate. The
 * anchor must be among the certificates the server sent; the others are
 * returned as intermediates (those that are not self-signed).
 */
int kh_est_pick_ca(STACK_OF(X509) *cacerts, const char *fingerprint,
                   X509 *pinned, X509 **ca, STACK_OF(X509) **chain,
                   char *err, size_t errlen);

/* Renewal policy (config keys renew-after-percent, renew-before-days):
 * the time the certificate becomes due, already moved earlier by the
 * identity's stable spread. */
time_t kh_renew_due_time(const char *name, X509 *cert, int after_percent,
                         long before_days);
/* Next attempt after |failures| consecutive failures: exponential from 5
 * minutes, capped at 1 day and at a tenth of the time left, with jitter. */
time_t kh_renew_backoff(time_t now, long long failures, X509 *cert);

/* ------------------------------------------------------------------ */
/* One enrolment for one identity (est_run.c); the caller holds its lock. */
struct kh_ctx;
struct kh_identity;
enum kh_est_mode {
    KH_EST_ENROLL = 0,   /* simpleenroll with bootstrap credentials */
    KH_EST_RENEW,        /* simplereenroll, same key (bootstrap if expired) */
    KH_EST_REKEY         /* simplereenroll with a new key in hardware */
};
/* |csr_out|: rekey's offline step: write the new key's CSR and stop. */
int kh_est_run(struct kh_ctx *ctx, struct kh_identity *id,
               enum kh_est_mode mode, const char *csr_out, char *err,
               size_t errlen);
/* Prints "keyhold: OP NAME: ERR" (without repeating NAME). */
void kh_est_print_err(struct kh_ctx *ctx, const char *op, const char *name,
                      const char *err);
/* Destroys keys a rekey retired whose grace period is over, and keys of
 * the identity that nothing references (left by a run killed right after
 * keygen); the caller holds the identity's lock. */
void kh_est_clean_orphans(struct kh_ctx *ctx, struct kh_identity *id);
/* Records a failed attempt with its backoff (status.json). */
void kh_est_record_failure(struct kh_ctx *ctx, const char *name,
                           const char *err);
/* Records the outcome of an enrolment run ending with RC: a success, or
 * a failure (ERR) with its backoff. */
void kh_est_record(struct kh_ctx *ctx, const char *name, int rc,
                   const char *err);

#endif
