/* SPDX-License-Identifier: MIT */
/*
 * Enrolment transports other than EST (SCEP, ACME, CMP). A protocol only
 * carries a hardware-signed CSR to a CA and a certificate back: the
 * protocol-neutral part (est_run.c) pins the CA, makes the key and the CSR,
 * and after the transport runs every check, the atomic install, the reload
 * hooks and the rollback, exactly as for EST.
 */
#ifndef KH_PROVISION_ENROL_H
#define KH_PROVISION_ENROL_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

struct kh_ctx;
struct kh_identity;

typedef struct kh_enrol_io {
    /* in */
    struct kh_ctx *ctx;
    struct kh_identity *id;      /* settings: scep-*, acme-*, cmp-* keys */
    int renewal;                 /* renew/rekey while cur_cert is valid */
    X509_REQ *csr;               /* signed by |key| in hardware */
    EVP_PKEY *key;               /* the key the new certificate is for */
    X509 *cur_cert;              /* installed certificate, or NULL */
    STACK_OF(X509) *cur_chain;   /* its intermediates, or NULL */
    EVP_PKEY *cur_key;           /* cur_cert's key (differs on rekey) */
    X509 *pinned_ca;             /* the CA the identity trusts, or NULL */
    const char *ca_fingerprint;  /* "sha256:HEX" pin, or NULL */
    const char *server_ca;       /* trust for the server's TLS, or NULL */
    /* out (owned by the caller after a successful return) */
    X509 *cert;                  /* the issued certificate */
    STACK_OF(X509) *chain;       /* intermediates, leaf and root excluded */
    X509 *ca;                    /* the trust anchor the chain must reach:
                                    pinned_ca, or the certificate matching
                                    ca_fingerprint */
} KH_ENROL_IO;

/* Returns a KH_EXIT_* code; on failure err names the problem and the fix. */
typedef int (*kh_enrol_fn)(KH_ENROL_IO *io, char *err, size_t errlen);

/* CMP (cmp.c): ir with MAC or bootstrap signature, kur for renewals. */
int kh_cmp_enrol(KH_ENROL_IO *io, char *err, size_t errlen);

/* ACME (acme.c): account key in hardware, http-01, finalize with the CSR. */
int kh_acme_enrol(KH_ENROL_IO *io, char *err, size_t errlen);

/* SCEP (scep.c): PKCSReq / RenewalReq, CertRep decrypted by the RSA
 * hardware key; the identity needs allow-decrypt. */
int kh_scep_enrol(KH_ENROL_IO *io, char *err, size_t errlen);

/* The transport for "scep", "acme", "cmp"; NULL when not built in. */
kh_enrol_fn kh_enrol_protocol(const char *name);

/* Frees the out-fields of |io| (for error paths). */
void kh_enrol_io_clear(KH_ENROL_IO *io);

#endif
