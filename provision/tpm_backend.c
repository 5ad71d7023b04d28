/* SPDX-License-Identifier: MIT */
/*
 * The CLI's TPM backend: key creation for `keyhold provision NAME --tpm`
 * (and rekey), destruction for zeroize, and the public key for status,
 * install checks and reports. Signing never happens here: like every key
 * operation it goes through the provider with the key's tpm2: URI.
 *
 * Identity config keys (all optional):
 *   tpm-persistent = 0x81000010   make keys persistent there (else a key
 *                                 file under the state dir)
 *   tpm-auth-file = PATH          the key's auth value (0640 root:keyhold);
 *                                 none: an empty auth, noDA key bound to
 *                                 this TPM by fixedTPM|fixedParent
 *
 * Key URIs written to the identity:
 *   tpm2:file=$STATE/NAME/tpm/key-GEN.tss[;pin-source=file:PATH]
 *   tpm2:handle=0x81...[;pin-source=file:PATH]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyhold.h"
#include "kh_pin.h"
#include "kh_tpm.h"

static int exit_of(enum kh_tpm_rc rc)
{
    switch (rc) {
    case KH_TPM_OK:
        return KH_EXIT_OK;
    case KH_TPM_ERR_AUTH:
    case KH_TPM_ERR_LOCKOUT:
        return KH_EXIT_PIN;
    case KH_TPM_ERR_INPUT:
        return KH_EXIT_REJECTED;
    case KH_TPM_ERR_NOTFOUND:
        return KH_EXIT_BROKEN;
    default:
        return KH_EXIT_TOKEN;
    }
}

static int parse_alg(const char *alg, enum kh_tpm_alg *out)
{
    static const struct {
        const char *name;
        enum kh_tpm_alg alg;
    } tbl[] = {
        { "ec-p256", KH_TPM_ALG_EC_P256 },
        { "ec-p384", KH_TPM_ALG_EC_P384 },
        { "rsa-2048", KH_TPM_ALG_RSA_2048 },
        { "rsa-3072", KH_TPM_ALG_RSA_3072 },
    };
    size_t i;

    for (i = 0; i < sizeof(tbl) / sizeof(tbl[0]); i++) {
        if (alg != NULL && strcmp(alg, tbl[i].name) == 0) {
            *out = tbl[i].alg;
            return 1;
        }
    }
    return 0;
}

static int parse_handle(const char *s, uint32_t *h)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 16);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < KH_TPM_PERSISTENT_MIN
        || v > KH_TPM_PERSISTENT_MAX || v == KH_TPM_SRK_HANDLE) {
        return 0;
    }
    *h = (uint32_t)v;
    return 1;
}

/* The parts of a tpm2: URI this file writes: handle or file. */
static int uri_split(const char *uri, uint32_t *handle, char *file,
                     size_t filelen)
{
    const char *p = uri + 5, *end;
    char v[32];

    *handle = 0;
    file[0] = '\0';
    if (strncmp(uri, "tpm2:", 5) != 0) {
        return 0;
    }
    while (*p != '\0') {
        end = p + strcspn(p, ";?&");
        if (strncmp(p, "handle=", 7) == 0 && (size_t)(end - p - 7) < sizeof(v)) {
            memcpy(v, p + 7, (size_t)(end - p - 7));
            v[end - p - 7] = '\0';
            if (!parse_handle(v, handle)) {
                return 0;
            }
        } else if (strncmp(p, "file=", 5) == 0
                   && (size_t)(end - p - 5) < filelen) {
            memcpy(file, p + 5, (size_t)(end - p - 5));
            file[end - p - 5] = '\0';
        }
        p = *end != '\0' ? end + 1 : end;
    }
    return *handle != 0 || file[0] != '\0';
}

/* uri_split for a key given to the backend: anything else is refused as
 * not a keyhold TPM key URI. Then the TPM connection is configured. */
static int uri_open(const char *uri, uint32_t *handle, char *file,
                    size_t filelen, char *err, size_t errlen)
{
    if (!uri_split(uri, handle, file, filelen)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "not a keyhold TPM "
                         "key URI: %s", uri);
    }
    kh_tpm_configure(NULL);
    return KH_EXIT_OK;
}

int kh_tpm_keygen(KH_CTX *ctx, KH_IDENTITY *id, const char *alg,
                  unsigned gen, int allow_decrypt, char **key_uri,
                  char *err, size_t errlen)
{
    KH_TPM_GEN g;
    const char *pers = kh_id_get(id, "tpm-persistent");
    const char *authf = kh_id_get(id, "tpm-auth-file");
    char auth[KH_PIN_MAX + 1];
    size_t authlen = 0;
    char dir[KH_PATH_MAX], path[KH_PATH_MAX], uri[2 * KH_PATH_MAX + 64];
    char e[512];
    unsigned char *der = NULL;
    size_t derlen = 0;
    uint32_t base = 0;
    enum kh_tpm_rc trc;
    int rc = KH_EXIT_TOKEN, i, n;

    *key_uri = NULL;
    memset(&g, 0, sizeof(g));
    if (!parse_alg(alg, &g.alg)) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "TPM keys: --alg must "
                         "be ec-p256, ec-p384, rsa-2048 or rsa-3072");
    }
    g.allow_decrypt = allow_decrypt;
    if (pers != NULL && !parse_handle(pers, &base)) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "tpm-persistent '%s' "
                         "is not a persistent handle (0x81000002-0x81ffffff)",
                         pers);
    }
    if (authf != NULL) {
        enum kh_pin_rc prc = kh_pin_read_file(authf, auth, sizeof(auth),
                                              &authlen, e, sizeof(e));

        if (prc != KH_PIN_OK) {
            rc = kh_seterr(err, errlen, prc == KH_PIN_ERR_PERM ? KH_EXIT_PERM
                           : KH_EXIT_PIN, "TPM key auth: %s", e);
            goto end;
        }
        g.auth = auth;
        g.authlen = authlen;
    }
    kh_tpm_configure(NULL);
    if (base != 0) {
        /*
         * A rekey needs a second handle while the old key still serves:
         * take the configured one when free, else the next free above it.
         */
        for (i = 0; i < 16; i++) {
            int ex = kh_tpm_handle_exists(base + (uint32_t)i, e, sizeof(e));

            if (ex < 0) {
                rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s", e);
                goto end;
            }
            if (ex == 0) {
                g.persistent = base + (uint32_t)i;
                break;
            }
        }
        if (g.persistent == 0) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "no free persistent "
                           "handle in 0x%08x..0x%08x (zeroize old identities "
                           "or pick another tpm-persistent)", base,
                           base + 15);
            goto end;
        }
    }
    trc = kh_tpm_key_create(&g, g.persistent != 0 ? NULL : &der, &derlen,
                            NULL, e, sizeof(e));
    if (trc != KH_TPM_OK) {
        rc = kh_seterr(err, errlen, exit_of(trc), "TPM key creation: %s "
                       "(TCTI %s)", e, kh_tpm_tcti());
        goto end;
    }
    if (g.persistent != 0) {
        n = snprintf(uri, sizeof(uri), "tpm2:handle=0x%08x", g.persistent);
    } else {
        if (!kh_state_idir(ctx, id->name, dir, sizeof(dir))
            || (size_t)snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir),
                                "/tpm") >= sizeof(dir) - strlen(dir)) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "state path too long");
            goto end;
        }
        /*
         * Servers sign as a member of group keyhold: like the token's
         * files, the key file is readable by the group (it is wrapped by
         * the TPM; using it still needs the TPM) and writable by root.
         * The state dir is setgid keyhold, so the group is inherited.
         */
        if (mkdir(dir, 0750) == 0) {
            struct stat st;
            char *slash = strrchr(dir, '/');

            /* 0750 whatever the umask, keeping the parent's setgid. */
            *slash = '\0';
            n = stat(dir, &st);
            *slash = '/';
            chmod(dir, 0750 | (n == 0 ? (st.st_mode & S_ISGID) : 0));
        } else if (errno != EEXIST) {
            rc = kh_seterr(err, errlen, errno == EACCES ? KH_EXIT_PERM
                           : KH_EXIT_TOKEN, "%s: %s", dir, strerror(errno));
            goto end;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/key-%u.tss", dir, gen)
            >= sizeof(path)) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "state path too long");
            goto end;
        }
        /* A file left by an interrupted run of this generation: replace. */
        unlink(path);
        if (!kh_tpm_pem_write(path, der, derlen, 0640, e, sizeof(e))) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "TPM key file: %s", e);
            goto end;
        }
        kh_fsync_dir(dir);
        n = snprintf(uri, sizeof(uri), "tpm2:file=%s", path);
    }
    if (authf != NULL && n > 0 && (size_t)n < sizeof(uri)) {
        n += snprintf(uri + n, sizeof(uri) - (size_t)n,
                      ";pin-source=file:%s", authf);
    }
    if (n <= 0 || (size_t)n >= sizeof(uri)) {
        rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "key URI too long");
        goto end;
    }
    *key_uri = strdup(uri);
    if (*key_uri == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "out of memory");
        goto end;
    }
    kh_dbg(ctx, "TPM key for %s: %s", id->name, uri);
    rc = KH_EXIT_OK;
end:
    OPENSSL_cleanse(auth, sizeof(auth));
    OPENSSL_free(der);
    kh_tpm_release();
    return rc;
}

int kh_tpm_key_destroy(KH_CTX *ctx, const KH_IDENTITY *id,
                       const char *key_uri, char *err, size_t errlen)
{
    uint32_t handle;
    char file[KH_PATH_MAX], e[512];
    enum kh_tpm_rc trc;
    int rc;

    rc = uri_open(key_uri, &handle, file, sizeof(file), err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (handle != 0) {
        trc = kh_tpm_evict(handle, e, sizeof(e));
        kh_tpm_release();
        /* Already gone (an interrupted zeroize): nothing left to do. */
        if (trc != KH_TPM_OK && trc != KH_TPM_ERR_NOTFOUND) {
            return kh_seterr(err, errlen, exit_of(trc), "evicting 0x%08x: %s",
                             handle, e);
        }
        kh_dbg(ctx, "evicted persistent TPM key 0x%08x", handle);
        return KH_EXIT_OK;
    }
    /*
     * The key file is the key's only copy outside the TPM; wrapped by the
     * TPM's storage key it is useless elsewhere, and without it the key
     * cannot be loaded again.
     */
    if (unlink(file) != 0 && errno != ENOENT) {
        return kh_seterr(err, errlen, errno == EACCES ? KH_EXIT_PERM
                         : KH_EXIT_TOKEN, "removing %s: %s", file,
                         strerror(errno));
    }
    kh_dbg(ctx, "removed TPM key file %s", file);
    return KH_EXIT_OK;
}

int kh_tpm_get_pubkey(KH_CTX *ctx, const KH_IDENTITY *id, const char *key_uri,
                      EVP_PKEY **pub, char *err, size_t errlen)
{
    uint32_t handle;
    char file[KH_PATH_MAX], e[512];
    KH_TPM_KEY *k = NULL;
    enum kh_tpm_rc trc;
    int rc;

    *pub = NULL;
    rc = uri_open(key_uri, &handle, file, sizeof(file), err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (handle != 0) {
        trc = kh_tpm_key_from_handle(handle, &k, e, sizeof(e));
    } else {
        trc = kh_tpm_key_from_file(file, &k, e, sizeof(e));
        /* A file alone proves nothing: the TPM must still load it. */
        if (trc == KH_TPM_OK) {
            trc = kh_tpm_key_check(k, e, sizeof(e));
        }
    }
    if (trc == KH_TPM_OK) {
        *pub = kh_tpm_key_public(k, ctx->libctx, NULL, e, sizeof(e));
        if (*pub == NULL) {
            trc = KH_TPM_ERR;
        }
    }
    kh_tpm_key_free(k);
    kh_tpm_release();
    if (trc != KH_TPM_OK) {
        return kh_seterr(err, errlen, exit_of(trc), "TPM key: %s", e);
    }
    return KH_EXIT_OK;
}
