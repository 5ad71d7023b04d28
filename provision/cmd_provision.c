/* SPDX-License-Identifier: MIT */
/*
 * keyhold provision NAME: a key generated inside the token (or the TPM),
 * the identity's config, and a CSR signed by that key. Provisioning an
 * existing identity again needs --force, and then the old key keeps
 * serving until a certificate for the new one is installed.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyhold.h"
#include "kh_pin.h"
#include "kh_uri.h"
#include "kh_tpm.h"

static const char usage[] =
    "usage: keyhold provision NAME --token URI|LABEL --alg ALG --host HOST\n"
    "         [--san dns:X,ip:Y,...] [--host-in both|cn|san]\n"
    "         [--role recording|management|mobile]\n"
    "         [--allow-decrypt] [--csr-out FILE] [--pin-file FILE]\n"
    "         [--ca FILE]\n"
    "         [--module PATH] [--force]\n"
    "       keyhold provision NAME --tpm [--persistent 0x81...] "
    "[--tpm-auth-file F] ...\n"
    "  ALG: ec-p256 (default), ec-p384, rsa-2048, rsa-3072.\n"
    "  Generates the key inside the token (sensitive, never extractable,\n"
    "  sign-only unless --allow-decrypt), writes the identity's config and a\n"
    "  CSR signed by the hardware key ($KEYHOLD_STATE_DIR/NAME/request.csr\n"
    "  and --csr-out). --force replaces an existing identity's key; the old\n"
    "  key keeps serving until a certificate for the new one is installed.\n"
    "  --host-in: the host as subject CN and DNS SAN (both, default), as CN\n"
    "  only (cn), or as DNS SAN only with the identity's name as CN (san).\n";

int cmd_provision(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "token", required_argument, NULL, 't' },
        { "alg", required_argument, NULL, 'a' },
        { "host", required_argument, NULL, 'H' },
        { "san", required_argument, NULL, 's' },
        { "host-in", required_argument, NULL, 'I' },
        { "role", required_argument, NULL, 'r' },
        { "allow-decrypt", no_argument, NULL, 'd' },
        { "csr-out", required_argument, NULL, 'o' },
        { "pin-file", required_argument, NULL, 'p' },
        { "ca", required_argument, NULL, 'c' },
        { "module", required_argument, NULL, 'm' },
        { "tpm", no_argument, NULL, 'T' },
        { "force", no_argument, NULL, 'f' },
        { "persistent", required_argument, NULL, 'P' },
        { "tpm-auth-file", required_argument, NULL, 'A' },
        { NULL, 0, NULL, 0 }
    };
    const char *token = NULL, *alg = "ec-p256", *host = NULL, *role = NULL;
    const char *csr_out = NULL, *pin_file = NULL, *ca = NULL, *module = NULL;
    const char *name, *persistent = NULL, *tpm_auth = NULL, *host_in = NULL;
    int allow_decrypt = 0, force = 0, tpm = 0;
    KH_STRLIST sans = { 0 };
    KH_IDENTITY *id = NULL;
    KH_TOKEN *tok = NULL;
    KH_TOKEN_INFO ti;
    KH_P11_URI *u = NULL;
    EVP_PKEY *pkey = NULL, *pub = NULL;
    X509_REQ *req = NULL;
    KH_STATUS_REC st;
    char err[KH_ERR_MAX], e2[KH_ERR_MAX];
    char pin[KH_PIN_MAX + 1];
    size_t pinlen = 0, i;
    char id_hex[KH_KEYID_HEX] = "", old_id[130] = "";
    char path[KH_PATH_MAX];
    char *key_uri = NULL, *label = NULL;
    unsigned gen;
    int c, rc, lockfd = -1, existed, pending = 0;

    memset(&ti, 0, sizeof(ti));
    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': token = optarg; break;
        case 'a': alg = optarg; break;
        case 'H': host = optarg; break;
        case 's':
            if (!kh_sans_parse(optarg, &sans, err, sizeof(err))) {
                kh_err(ctx, "provision: --san: %s", err);
                kh_strlist_free(&sans);
                return KH_EXIT_USAGE;
            }
            break;
        case 'r': role = optarg; break;
        case 'I': host_in = optarg; break;
        case 'd': allow_decrypt = 1; break;
        case 'o': csr_out = optarg; break;
        case 'p': pin_file = optarg; break;
        case 'c': ca = optarg; break;
        case 'm': module = optarg; break;
        case 'T': tpm = 1; break;
        case 'f': force = 1; break;
        case 'P': persistent = optarg; tpm = 1; break;
        case 'A': tpm_auth = optarg; tpm = 1; break;
        default:
            fputs(usage, stderr);
            kh_strlist_free(&sans);
            return KH_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fputs(usage, stderr);
        kh_strlist_free(&sans);
        return KH_EXIT_USAGE;
    }
    name = argv[optind];
    if (!kh_name_valid(name)) {
        kh_err(ctx, "provision: invalid identity name '%s' (letters, digits, "
               "'.', '_', '-'; no '/' or '..')", name);
        kh_strlist_free(&sans);
        return KH_EXIT_REJECTED;
    }
    if ((token == NULL && !tpm) || host == NULL) {
        kh_err(ctx, "provision %s: --token and --host are required "
               "(keyhold provision --help)", name);
        kh_strlist_free(&sans);
        return KH_EXIT_USAGE;
    }
    if (strcmp(alg, "ec-p256") != 0 && strcmp(alg, "ec-p384") != 0
        && strcmp(alg, "rsa-2048") != 0 && strcmp(alg, "rsa-3072") != 0) {
        kh_err(ctx, "provision %s: unknown --alg '%s' (ec-p256, ec-p384, "
               "rsa-2048, rsa-3072)", name, alg);
        kh_strlist_free(&sans);
        return KH_EXIT_USAGE;
    }
    if (host_in != NULL && !kh_host_in_valid(host_in)) {
        kh_err(ctx, "provision %s: --host-in '%s' (both, cn or san)", name,
               host_in);
        kh_strlist_free(&sans);
        return KH_EXIT_USAGE;
    }
    if (role != NULL && strcmp(role, "recording") != 0
        && strcmp(role, "management") != 0 && strcmp(role, "mobile") != 0) {
        kh_err(ctx, "provision %s: unknown --role '%s' (recording, management, "
               "mobile)", name, role);
        kh_strlist_free(&sans);
        return KH_EXIT_USAGE;
    }
    {
        KH_STRLIST tmp = { 0 };

        if (!kh_sans_parse(host, &tmp, err, sizeof(err)) || tmp.n != 1) {
            kh_err(ctx, "provision %s: --host '%s': %s", name, host,
                   tmp.n != 1 ? "one host name or address" : err);
            kh_strlist_free(&tmp);
            kh_strlist_free(&sans);
            return KH_EXIT_USAGE;
        }
        kh_strlist_free(&tmp);
    }
    if (tpm && kh_tpm_keygen == NULL) {
        kh_err(ctx, "provision %s: this keyhold was built without TPM support",
               name);
        kh_strlist_free(&sans);
        return KH_EXIT_TOKEN;
    }
    existed = kh_identity_exists(ctx, name);
    if (existed && !force) {
        kh_err(ctx, "provision %s: identity exists already; nothing changed "
               "(use --force for a new key: the old one keeps serving until "
               "the new certificate is installed)", name);
        kh_strlist_free(&sans);
        return KH_EXIT_REJECTED;
    }
    rc = kh_require_manage(ctx, "provision", err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "provision %s: %s", name, err);
        kh_strlist_free(&sans);
        return rc;
    }
    rc = kh_lock(ctx, name, &lockfd, err, sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_state_prepare(ctx, name, err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        goto fail;
    }

    /* the identity's config */
    if (existed) {
        rc = kh_identity_load(ctx, name, &id, err, sizeof(err));
        if (rc != KH_EXIT_OK) {
            goto fail;
        }
    } else if ((id = kh_identity_new(name)) == NULL) {
        rc = kh_seterr(err, sizeof(err), KH_EXIT_BROKEN, "out of memory");
        goto fail;
    }
    if (token != NULL && kh_is_p11_uri(token)) {
        if (!kh_p11_uri_parse(token, &u, e2, sizeof(e2)) || u->token == NULL) {
            rc = kh_seterr(err, sizeof(err), KH_EXIT_REJECTED,
                           "--token '%s': %s", token,
                           u == NULL ? e2 : "the URI names no token=");
            goto fail;
        }
        label = strdup(u->token);
        if (module == NULL) {
            module = u->module_path;
        }
    } else if (token != NULL) {
        label = strdup(token);
    }
    kh_id_set(id, "backend", tpm ? "tpm2" : "pkcs11");
    if (label != NULL) {
        kh_id_set(id, "token", label);
    }
    if (module != NULL) {
        kh_id_set(id, "module", module);
    }
    kh_id_set(id, "alg", alg);
    kh_id_set(id, "role", role != NULL ? role : (kh_id_get(id, "role")
                                                      ? kh_id_get(id, "role")
                                                      : "recording"));
    kh_id_set(id, "allow-decrypt", allow_decrypt ? "yes" : "no");
    kh_id_set(id, "host", host);
    if (host_in != NULL) {
        kh_id_set(id, "host-in", host_in);
    }
    kh_id_set(id, "san", NULL);
    for (i = 0; i < sans.n; i++) {
        kh_id_add(id, "san", sans.v[i]);
    }
    if (pin_file != NULL) {
        char *ap = realpath(pin_file, NULL);

        kh_id_set(id, "pin-file", ap != NULL ? ap : pin_file);
        free(ap);
    }
    if (ca != NULL) {
        X509 *x = NULL;
        char *ap;

        rc = kh_certs_read(ca, &x, NULL, err, sizeof(err));
        X509_free(x);
        if (rc != KH_EXIT_OK) {
            goto fail;
        }
        ap = realpath(ca, NULL);
        kh_id_set(id, "ca", ap != NULL ? ap : ca);
        free(ap);
    }

    /* the key */
    if (!kh_uri_key_id(kh_id_get(id, "key-uri"), old_id, sizeof(old_id))) {
        old_id[0] = '\0';
    }
    gen = kh_state_max_gen(ctx, name) + 1;
    if (tpm) {
        if (persistent != NULL) {
            kh_id_set(id, "tpm-persistent", persistent);
        }
        if (tpm_auth != NULL) {
            char *ap = realpath(tpm_auth, NULL);

            kh_id_set(id, "tpm-auth-file", ap != NULL ? ap : tpm_auth);
            free(ap);
        }
        rc = kh_tpm_keygen(ctx, id, alg, gen, allow_decrypt, &key_uri, err,
                           sizeof(err));
        if (rc != KH_EXIT_OK) {
            goto fail;
        }
    } else {
        rc = kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, err,
                           sizeof(err));
        if (rc == KH_EXIT_OK) {
            rc = kh_token_open(ctx, module, label, &tok, err, sizeof(err));
        }
        if (rc == KH_EXIT_OK) {
            rc = kh_token_login(tok, pin, pinlen, err, sizeof(err));
        }
        if (rc == KH_EXIT_OK) {
            kh_token_get_info(tok, &ti, e2, sizeof(e2));
            if (strncmp(alg, "rsa", 3) == 0 && !ti.has_rsa_pss) {
                kh_warn(ctx, "token '%s' has no RSA-PSS: this RSA identity "
                        "cannot do TLS 1.3 (prefer --alg ec-p256)", label);
            }
            /* keys an interrupted earlier run left behind */
            kh_identity_clean_orphans(ctx, id, tok, e2, sizeof(e2));
            rc = kh_token_keygen(tok, alg, name, gen, allow_decrypt, id_hex,
                                 err, sizeof(err));
        }
        if (rc != KH_EXIT_OK) {
            goto fail;
        }
        kh_id_set(id, "key-id", id_hex);
        key_uri = kh_token_key_uri(module, label, id_hex);
        if (key_uri == NULL) {
            rc = kh_seterr(err, sizeof(err), KH_EXIT_BROKEN, "out of memory");
            goto fail;
        }
    }
    /* with a certificate in service, the new key waits for its own */
    if (kh_state_current_gen(ctx, name) > 0) {
        pending = 1;
        kh_status_read(ctx, name, &st);
        snprintf(st.pending_key_uri, sizeof(st.pending_key_uri), "%s", key_uri);
        rc = kh_status_write(ctx, name, &st, err, sizeof(err));
        if (rc != KH_EXIT_OK) {
            goto fail;
        }
    } else {
        kh_id_set(id, "key-uri", key_uri);
    }
    if (!pending || kh_id_get(id, "key-uri") == NULL) {
        kh_id_set(id, "key-uri", key_uri);
    }
    kh_crash_point("config");
    rc = kh_identity_save(ctx, id, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto fail;
    }
    /* an identity that never had a certificate loses its old key now: it
     * never served and nothing refers to it any more */
    if (!pending && tok != NULL && old_id[0] != '\0'
        && strcmp(old_id, id_hex) != 0
        && kh_token_destroy_id(tok, old_id, NULL, e2, sizeof(e2))
               == KH_EXIT_OK) {
        kh_audit(ctx, "key-destroy", name, old_id, "ok",
                 "replaced before it had a certificate");
    }

    /* the CSR, signed through the provider */
    rc = kh_key_load(ctx, key_uri, tpm ? NULL : pin, tpm ? 0 : pinlen, &pkey,
                     err, sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_make_csr(ctx, id, pkey, &req, err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        goto fail;
    }
    kh_crash_point("csr");
    kh_path(path, sizeof(path), "%s/%s/request.csr", ctx->state_dir, name);
    rc = kh_csr_write(req, path, err, sizeof(err));
    if (rc == KH_EXIT_OK && csr_out != NULL) {
        rc = kh_csr_write(req, csr_out, err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        goto fail;
    }
    pub = X509_REQ_get_pubkey(req);
    {
        KH_REPORT r = { 0 };
        char ek_id[80];

        r.op = "provision";
        r.identity = name;
        r.backend = tpm ? "tpm2" : "pkcs11";
        r.key_id = id_hex;
        r.key_uri = key_uri;
        r.pub = pub;
        r.csr = req;
        r.token_serial = ti.serial;
        if (tpm) {
            /* The TPM's identity in the record: its endorsement key. */
            if (kh_tpm_ek_id(ek_id, sizeof(ek_id), e2, sizeof(e2))
                == KH_TPM_OK) {
                r.token_serial = ek_id;
            } else {
                r.token_serial = NULL;
                kh_dbg(ctx, "no TPM EK identity for the report: %s", e2);
            }
            kh_tpm_release();
        }
        r.outcome = "ok";
        kh_report(ctx, &r);
    }
    kh_audit(ctx, "provision", name, id_hex, "ok",
             pending ? "new key pending its certificate" : alg);
    printf("identity '%s': key %s generated in %s%s%s%s\n"
           "CSR: %s%s%s\n", name, id_hex[0] ? id_hex : key_uri,
           tpm ? "the TPM" : "token '", tpm ? "" : label, tpm ? "" : "'",
           pending ? " (pending: the old key serves until its certificate "
                     "is installed)" : "",
           path, csr_out ? " and " : "", csr_out ? csr_out : "");
    rc = KH_EXIT_OK;
    goto end;
fail:
    kh_err(ctx, "provision %s: %s", name, err);
    if (rc != KH_EXIT_BUSY) {
        kh_audit(ctx, "provision", name, id_hex, "failed", err);
    }
end:
    OPENSSL_cleanse(pin, sizeof(pin));
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
    kh_token_close(tok);
    kh_identity_free(id);
    kh_p11_uri_free(u);
    kh_strlist_free(&sans);
    free(key_uri);
    free(label);
    kh_unlock(lockfd);
    return rc;
}
