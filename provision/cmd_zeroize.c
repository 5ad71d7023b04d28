/* SPDX-License-Identifier: MIT */
/*
 * keyhold zeroize NAME | --all: destroys the identity's key and certificate
 * objects in the token, then its state and config. Works on what is left of
 * a half-removed identity (an interrupted reset), and with nothing to do it
 * succeeds, so a reset can simply run again. The audit log stays.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyhold.h"
#include "kh_keyref.h"
#include "kh_pin.h"
#include "kh_uri.h"

static const char usage[] =
    "usage: keyhold zeroize NAME | --all [--yes]\n"
    "  Destroys the identity's key and certificate objects in the token and\n"
    "  its state and config (asks first unless --yes). The audit log is "
    "kept.\n";

static void collect_uris(KH_CTX *ctx, const char *name, const KH_IDENTITY *id,
                         KH_STRLIST *uris)
{
    char idir[KH_PATH_MAX], path[KH_PATH_MAX];
    KH_STATUS_REC st;
    DIR *d;
    struct dirent *e;

    if (id != NULL && kh_id_get(id, "key-uri") != NULL) {
        kh_strlist_add(uris, kh_id_get(id, "key-uri"));
    }
    kh_status_read(ctx, name, &st);
    if (st.pending_key_uri[0] != '\0') {
        kh_strlist_add(uris, st.pending_key_uri);
    }
    kh_state_idir(ctx, name, idir, sizeof(idir));
    d = opendir(idir);
    while (d != NULL && (e = readdir(d)) != NULL) {
        char *buf = NULL;

        if (strncmp(e->d_name, "gen-", 4) != 0) {
            continue;
        }
        kh_path(path, sizeof(path), "%s/%s/key.pem", idir, e->d_name);
        if (!kh_read_file(path, 65536, &buf, NULL, NULL, 0)) {
            continue;
        }
        {
            /* key.pem: the reference's URI through the shared reader */
            BIO *b = BIO_new_mem_buf(buf, -1);
            char *uri = NULL, er[128];

            if (b != NULL && kh_keyref_pem_read(b, &uri, er, sizeof(er))) {
                if (!kh_strlist_has(uris, uri)) {
                    kh_strlist_add(uris, uri);
                }
                OPENSSL_free(uri);
            }
            BIO_free(b);
        }
        free(buf);
    }
    if (d != NULL) {
        closedir(d);
    }
}

static int zeroize_one(KH_CTX *ctx, const char *name)
{
    KH_IDENTITY *id = NULL;
    KH_STRLIST uris = { 0 }, ids = { 0 };
    KH_TOKEN *tok = NULL;
    KH_P11_URI *u = NULL;
    char err[KH_ERR_MAX] = "", e2[KH_ERR_MAX], hex[130];
    char pin[KH_PIN_MAX + 1], idir[KH_PATH_MAX], conf[KH_PATH_MAX];
    size_t pinlen = 0, i;
    const char *label = NULL, *module = NULL;
    int rc = KH_EXIT_OK, lockfd = -1, destroyed = 0, n;

    if (!kh_name_valid(name)) {
        kh_err(ctx, "zeroize: invalid identity name '%s'", name);
        return KH_EXIT_REJECTED;
    }
    kh_state_idir(ctx, name, idir, sizeof(idir));
    kh_path(conf, sizeof(conf), "%s/%s.conf", ctx->conf_dir, name);
    if (access(conf, F_OK) != 0 && access(idir, F_OK) != 0) {
        kh_err(ctx, "zeroize: unknown identity '%s'", name);
        return KH_EXIT_REJECTED;
    }
    rc = kh_lock(ctx, name, &lockfd, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    if (access(conf, F_OK) == 0) {
        rc = kh_identity_load(ctx, name, &id, err, sizeof(err));
        if (rc != KH_EXIT_OK) {
            goto end;
        }
    }
    collect_uris(ctx, name, id, &uris);
    label = id != NULL ? kh_id_get(id, "token") : NULL;
    module = id != NULL ? kh_id_get(id, "module") : NULL;
    for (i = 0; i < uris.n; i++) {
        if (strncmp(uris.v[i], "tpm2:", 5) == 0) {
            if (kh_tpm_key_destroy == NULL) {
                rc = kh_seterr(err, sizeof(err), KH_EXIT_TOKEN,
                               "TPM key %s: no TPM support in this keyhold",
                               uris.v[i]);
                goto end;
            }
            rc = kh_tpm_key_destroy(ctx, id, uris.v[i], err, sizeof(err));
            if (rc != KH_EXIT_OK) {
                goto end;
            }
            destroyed++;
            continue;
        }
        if (kh_uri_key_id(uris.v[i], hex, sizeof(hex))
            && !kh_strlist_has(&ids, hex)) {
            kh_strlist_add(&ids, hex);
        }
        if ((label == NULL || module == NULL) && u == NULL
            && kh_p11_uri_parse(uris.v[i], &u, e2, sizeof(e2))) {
            if (label == NULL) {
                label = u->token;
            }
            if (module == NULL) {
                module = u->module_path;
            }
        }
    }
    if (label != NULL) {
        rc = kh_token_open(ctx, module, label, &tok, err, sizeof(err));
        if (rc == KH_EXIT_OK) {
            rc = kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, err,
                               sizeof(err));
        }
        if (rc == KH_EXIT_OK) {
            rc = kh_token_login(tok, pin, pinlen, err, sizeof(err));
        }
        OPENSSL_cleanse(pin, sizeof(pin));
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        kh_token_list_ids(tok, name, &ids, e2, sizeof(e2));
        for (i = 0; i < ids.n; i++) {
            n = 0;
            rc = kh_token_destroy_id(tok, ids.v[i], &n, err, sizeof(err));
            if (rc != KH_EXIT_OK) {
                goto end;
            }
            destroyed += n;
            kh_audit(ctx, "key-destroy", name, ids.v[i], "ok", "zeroize");
        }
    }
    kh_crash_point("zeroize-keys");
    if (!kh_rm_rf(idir)) {
        rc = kh_seterr(err, sizeof(err), KH_EXIT_PERM, "cannot remove %s",
                       idir);
        goto end;
    }
    if (unlink(conf) != 0 && access(conf, F_OK) == 0) {
        rc = kh_seterr(err, sizeof(err), KH_EXIT_PERM, "cannot remove %s",
                       conf);
        goto end;
    }
    kh_fsync_dir(ctx->state_dir);
    kh_fsync_dir(ctx->conf_dir);
    printf("identity '%s' zeroized (%d token objects destroyed)\n", name,
           destroyed);
end:
    if (rc != KH_EXIT_BUSY) {
        kh_audit(ctx, "zeroize", name, NULL, rc == KH_EXIT_OK ? "ok" : "failed",
                 rc == KH_EXIT_OK ? "" : err);
    }
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "zeroize %s: %s", name, err);
    }
    kh_unlock(lockfd);
    kh_token_close(tok);
    kh_p11_uri_free(u);
    kh_identity_free(id);
    kh_strlist_free(&uris);
    kh_strlist_free(&ids);
    return rc;
}

int cmd_zeroize(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "all", no_argument, NULL, 'a' },
        { "yes", no_argument, NULL, 'y' },
        { NULL, 0, NULL, 0 }
    };
    KH_STRLIST names = { 0 };
    int all = 0, yes = 0, c, rc = KH_EXIT_OK;
    size_t i;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'a') {
            all = 1;
        } else if (c == 'y') {
            yes = 1;
        } else {
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    rc = kh_manage_args(ctx, "zeroize", "", all, argc, usage);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (all) {
        DIR *d;
        struct dirent *e;

        kh_identity_list(ctx, &names);
        d = opendir(ctx->state_dir);
        while (d != NULL && (e = readdir(d)) != NULL) {
            struct stat sb;
            char p[KH_PATH_MAX];

            kh_path(p, sizeof(p), "%s/%s", ctx->state_dir, e->d_name);
            if (kh_name_valid(e->d_name) && lstat(p, &sb) == 0
                && S_ISDIR(sb.st_mode) && !kh_strlist_has(&names, e->d_name)) {
                kh_strlist_add(&names, e->d_name);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
    } else {
        kh_strlist_add(&names, argv[optind]);
    }
    if (!yes && names.n > 0) {
        char answer[64] = "";

        if (!isatty(STDIN_FILENO)) {
            kh_err(ctx, "zeroize: destroying keys needs confirmation: add "
                   "--yes (no terminal to ask)");
            kh_strlist_free(&names);
            return KH_EXIT_USAGE;
        }
        fprintf(stderr, "Destroy the key, certificates and state of %zu "
                "identit%s (%s%s)? Type 'yes': ", names.n,
                names.n == 1 ? "y" : "ies", names.v[0],
                names.n > 1 ? ", ..." : "");
        if (fgets(answer, sizeof(answer), stdin) == NULL
            || strncmp(answer, "yes", 3) != 0) {
            kh_err(ctx, "zeroize: not confirmed; nothing changed");
            kh_strlist_free(&names);
            return KH_EXIT_USAGE;
        }
    }
    for (i = 0; i < names.n; i++) {
        int r = zeroize_one(ctx, names.v[i]);

        if (r != KH_EXIT_OK && rc == KH_EXIT_OK) {
            rc = r;
        }
    }
    if (all && names.n == 0) {
        printf("no identities to zeroize\n");
    }
    kh_strlist_free(&names);
    return rc;
}
