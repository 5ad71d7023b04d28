/* SPDX-License-Identifier: MIT */
/*
 * PKCS#10 requests signed by the hardware key (through the provider): CN is
 * the identity's host, every host name and address a SAN (host-in = cn:
 * the host only as CN; san: only as SAN, the CN then being the identity's
 * name), key usage and
 * extended key usage fitting the role. Recording and mobile servers also
 * connect out (to the management server, to recording servers) and so ask
 * for clientAuth too.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "keyhold.h"

static int add_ext(STACK_OF(X509_EXTENSION) *exts, int nid, const char *value)
{
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, NULL, nid, value);

    if (ex == NULL) {
        return 0;
    }
    if (!sk_X509_EXTENSION_push(exts, ex)) {
        X509_EXTENSION_free(ex);
        return 0;
    }
    return 1;
}

int kh_identity_make_csr(KH_CTX *ctx, const KH_IDENTITY *id, EVP_PKEY *pkey,
                         X509_REQ **out, char *err, size_t errlen)
{
    const char *host = kh_id_get(id, "host");
    const char *role = kh_id_get(id, "role");
    const char *host_in = NULL;
    X509_REQ *req = NULL;
    X509_NAME *subj = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    KH_STRLIST names = { 0 };
    EVP_MD_CTX *md = NULL;
    char san[4096] = "";
    const char *digest = "SHA256";
    size_t i;
    int rc = KH_EXIT_BROKEN;

    *out = NULL;
    if (host == NULL || *host == '\0') {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "identity '%s' has no host (keyhold set-hosts %s "
                         "--host NAME)", id->name, id->name);
    }
    if (role == NULL) {
        role = "recording";
    }
    if (!kh_identity_names(id, &names)) {
        goto oom;
    }
    host_in = kh_id_get(id, "host-in");
    if (host_in == NULL || kh_host_is_ip(host)) {
        host_in = "both";
    }
    if (!kh_host_in_valid(host_in)) {
        rc = kh_seterr(err, errlen, KH_EXIT_REJECTED,
                       "identity '%s': host-in = %s (both, cn or san)",
                       id->name, host_in);
        goto end;
    }
    for (i = 0; i < names.n; i++) {
        const char *n = names.v[i];
        int isip = strncmp(n, "ip:", 3) == 0;
        size_t l = strlen(san);

        /* host-in = cn: the host name is the subject CN only (some
         * clients are set up against one or the other) */
        if (strcmp(host_in, "cn") == 0 && !isip && strcmp(n + 4, host) == 0) {
            continue;
        }

        snprintf(san + l, sizeof(san) - l, "%s%s:%s", l ? "," : "",
                 isip ? "IP" : "DNS", n + (isip ? 3 : 4));
    }
    if (EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_bits(pkey) > 256) {
        digest = "SHA384";
    }
    req = X509_REQ_new_ex(ctx->libctx, NULL);
    subj = X509_NAME_new();
    exts = sk_X509_EXTENSION_new_null();
    if (req == NULL || subj == NULL || exts == NULL
        || !X509_REQ_set_version(req, 0)
        || !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                       (const unsigned char *)(
                                           strcmp(host_in, "san") == 0
                                               ? id->name : host),
                                       -1, -1, 0)
        || !X509_REQ_set_subject_name(req, subj)) {
        goto oom;
    }
    if (!X509_REQ_set_pubkey(req, pkey)) {
        rc = kh_seterr(err, errlen, KH_EXIT_TOKEN,
                       "cannot read the hardware key's public key");
        goto end;
    }
    if (!add_ext(exts, NID_basic_constraints, "critical,CA:FALSE")
        || !add_ext(exts, NID_key_usage,
                    EVP_PKEY_is_a(pkey, "RSA")
                        ? "critical,digitalSignature,keyEncipherment"
                        : "critical,digitalSignature")
        || !add_ext(exts, NID_ext_key_usage,
                    strcmp(role, "management") == 0
                        ? "serverAuth" : "serverAuth,clientAuth")
        || (*san && !add_ext(exts, NID_subject_alt_name, san))
        || !X509_REQ_add_extensions(req, exts)) {
        rc = kh_seterr(err, errlen, KH_EXIT_REJECTED,
                       "cannot build the CSR extensions (host names: %s)",
                       san);
        goto end;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL
        || EVP_DigestSignInit_ex(md, NULL, digest, ctx->libctx, NULL, pkey,
                                 NULL) != 1
        || X509_REQ_sign_ctx(req, md) <= 0) {
        rc = kh_prov_map_errors("signing the CSR with the hardware key",
                                err, errlen);
        goto end;
    }
    *out = req;
    req = NULL;
    rc = KH_EXIT_OK;
    goto end;
oom:
    rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
end:
    EVP_MD_CTX_free(md);
    X509_REQ_free(req);
    X509_NAME_free(subj);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    kh_strlist_free(&names);
    return rc;
}

int kh_csr_write(X509_REQ *req, const char *path, char *err, size_t errlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    int rc = KH_EXIT_BROKEN;

    if (b == NULL || !PEM_write_bio_X509_REQ(b, req)) {
        BIO_free(b);
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "cannot encode the CSR");
    }
    len = BIO_get_mem_data(b, &data);
    if (path == NULL || strcmp(path, "-") == 0) {
        rc = fwrite(data, 1, (size_t)len, stdout) == (size_t)len
                 ? KH_EXIT_OK : KH_EXIT_BROKEN;
        fflush(stdout);
    } else if (kh_write_atomic(path, data, (size_t)len, 0644, err, errlen)) {
        rc = KH_EXIT_OK;
    } else {
        rc = KH_EXIT_PERM;
    }
    BIO_free(b);
    return rc;
}
