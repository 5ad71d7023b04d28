/* SPDX-License-Identifier: MIT */
/*
 * keyhold doctor: what a technician runs first. Each finding is one line,
 * "ok" or "problem" with the fix: the provider and openssl.cnf, every
 * identity's token (reachable, PIN counter flags, RSA-PSS, free space),
 * PIN file and state permissions, the clock.
 */
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "keyhold.h"
#include "kh_p11util.h"
#include "kh_pin.h"
#include "kh_tpm.h"

static const char usage[] =
    "usage: keyhold doctor\n"
    "  Checks the provider, openssl.cnf, each identity's token or TPM, PIN\n"
    "  files, state permissions and the clock; prints each finding with its\n"
    "  fix. Exit 0 when all is well, 5 when something needs attention.\n";

static int problems;

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ok(const char *fmt, ...)
{
    va_list ap;

    fputs("ok       ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

static void bad(const char *fmt, ...)
{
    va_list ap;

    problems++;
    fputs("PROBLEM  ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

static void check_openssl_cnf(void)
{
    const char *cnf = getenv("OPENSSL_CONF");
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();
    char path[KH_PATH_MAX];

    if (cnf == NULL) {
        snprintf(path, sizeof(path), "%s/openssl.cnf",
                 X509_get_default_cert_area());
        cnf = path;
    }
    if (lc == NULL) {
        return;
    }
    ERR_set_mark();
    if (!OSSL_LIB_CTX_load_config(lc, cnf)) {
        bad("openssl.cnf %s does not load (check its syntax)", cnf);
    } else if (OSSL_PROVIDER_available(lc, "keyhold")) {
        ok("openssl.cnf %s activates the keyhold provider", cnf);
    } else {
        printf("info     openssl.cnf %s does not activate keyhold: servers "
               "need it there (or their own config) to use key references\n",
               cnf);
    }
    ERR_pop_to_mark();
    OSSL_LIB_CTX_free(lc);
}

static void check_perm(const char *what, const char *path, int pin)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        bad("%s %s: %s", what, path, strerror(errno));
        return;
    }
    if (pin) {
        if ((st.st_mode & S_IRWXO) || (st.st_mode & S_IWGRP)) {
            bad("%s %s has mode %04o: run 'chmod 0640 %s; chown root:keyhold "
                "%s'", what, path, (unsigned)(st.st_mode & 07777), path, path);
        } else {
            struct group *g = getgrnam("keyhold");

            ok("%s %s mode %04o", what, path, (unsigned)(st.st_mode & 07777));
            if (g != NULL && st.st_gid != g->gr_gid) {
                printf("info     %s %s is not in group keyhold: servers "
                       "running in that group cannot read it ('chgrp "
                       "keyhold %s')\n", what, path, path);
            }
        }
    } else if (st.st_mode & S_IWOTH) {
        bad("%s %s is world-writable: run 'chmod o-w %s'", what, path, path);
    } else {
        ok("%s %s mode %04o", what, path, (unsigned)(st.st_mode & 07777));
    }
}

/*
 * A TPM identity: the TPM answers through its TCTI, its dictionary-attack
 * state, and the identity's key loads (file parsed, persistent handle
 * present with the same key).
 */
static void check_tpm(KH_CTX *ctx, const KH_IDENTITY *id, const char *name)
{
    char err[KH_ERR_MAX], *uri = NULL;
    uint32_t counter = 0, max = 0;
    int lockout = 0;
    EVP_PKEY *pub = NULL;

    kh_tpm_configure(NULL);
    if (kh_tpm_da_info(&counter, &max, &lockout, err, sizeof(err))
        != KH_TPM_OK) {
        bad("identity %s: %s", name, err);
        goto end;
    }
    ok("identity %s: TPM reachable (TCTI %s)", name, kh_tpm_tcti());
    if (lockout) {
        bad("identity %s: the TPM is in dictionary-attack LOCKOUT: keys with "
            "an auth value fail until the lockout interval passes (or clear "
            "it with the lockout auth: tpm2_dictionarylockout -c)", name);
    } else if (counter > 0) {
        printf("warning  identity %s: TPM lockout counter %u of %u: wrong "
               "auth values were tried (check tpm-auth-file)\n", name,
               counter, max);
    } else {
        ok("identity %s: TPM lockout counter 0 of %u", name, max);
    }
    if (kh_identity_key_uri(ctx, id, &uri) != KH_EXIT_OK || uri == NULL) {
        bad("identity %s: no key URI recorded (provision again)", name);
    } else if (kh_tpm_get_pubkey(ctx, id, uri, &pub, err, sizeof(err))
               != KH_EXIT_OK) {
        bad("identity %s: %s", name, err);
    } else {
        ok("identity %s: TPM key %s present", name, uri);
    }
end:
    free(uri);
    EVP_PKEY_free(pub);
    kh_tpm_release();
}

static void check_identity(KH_CTX *ctx, const char *name)
{
    KH_IDENTITY *id = NULL;
    KH_TOKEN *tok = NULL;
    KH_TOKEN_INFO ti;
    char err[KH_ERR_MAX];
    const char *pinf, *backend, *alg;

    if (kh_identity_load(ctx, name, &id, err, sizeof(err)) != KH_EXIT_OK) {
        bad("identity %s: %s", name, err);
        return;
    }
    backend = kh_id_get(id, "backend");
    alg = kh_id_get(id, "alg");
    if (backend != NULL && strcmp(backend, "tpm2") == 0) {
        if (kh_tpm_get_pubkey == NULL) {
            bad("identity %s: TPM backend, but this keyhold has no TPM "
                "support (install the TPM-enabled build)", name);
        } else {
            check_tpm(ctx, id, name);
        }
    } else if (kh_token_open_identity(ctx, id, &tok, err, sizeof(err))
               != KH_EXIT_OK) {
        bad("identity %s: %s", name, err);
    } else if (kh_token_get_info(tok, &ti, err, sizeof(err)) == KH_EXIT_OK) {
        ok("identity %s: token '%s' (%s %s, serial %s) reachable", name,
           ti.label, ti.manufacturer, ti.model, ti.serial);
        if (ti.flags & CKF_USER_PIN_LOCKED) {
            bad("identity %s: token '%s' user PIN is LOCKED: reset it with "
                "the SO PIN", name, ti.label);
        } else if (ti.flags & CKF_USER_PIN_FINAL_TRY) {
            bad("identity %s: token '%s' is on its FINAL PIN try: fix the PIN "
                "file before anything logs in", name, ti.label);
        } else if (ti.flags & CKF_USER_PIN_COUNT_LOW) {
            bad("identity %s: token '%s' has had wrong PINs: check the PIN "
                "file", name, ti.label);
        } else {
            ok("identity %s: PIN counter clean", name);
        }
        if (!(ti.flags & CKF_USER_PIN_INITIALIZED)) {
            bad("identity %s: token '%s' has no user PIN: keyhold token "
                "set-pin", name, ti.label);
        }
        if (!ti.has_rsa_pss) {
            if (alg != NULL && strncmp(alg, "rsa", 3) == 0) {
                bad("identity %s: token lacks RSA-PSS: TLS 1.3 is impossible "
                    "with this RSA key (use ec-p256)", name);
            } else {
                printf("info     identity %s: token lacks RSA-PSS (EC keys "
                       "are unaffected)\n", name);
            }
        } else {
            ok("identity %s: token offers RSA-PSS%s", name,
               ti.has_ecdsa ? " and ECDSA" : "");
        }
        if (ti.free_public != (unsigned long)CK_UNAVAILABLE_INFORMATION
            && ti.free_public != (unsigned long)CK_EFFECTIVELY_INFINITE) {
            printf("info     identity %s: token free memory %lu public, %lu "
                   "private\n", name, ti.free_public, ti.free_private);
        }
    }
    pinf = kh_id_get(id, "pin-file");
    if (backend != NULL && strcmp(backend, "tpm2") == 0) {
        /* TPM keys need no PIN; an auth value file is checked like one. */
        if (kh_id_get(id, "tpm-auth-file") != NULL) {
            check_perm("TPM key auth file", kh_id_get(id, "tpm-auth-file"),
                       1);
        }
    } else if (pinf != NULL) {
        check_perm("PIN file", pinf, 1);
    } else if (getenv("KEYHOLD_PIN_FILE") != NULL) {
        check_perm("PIN file", getenv("KEYHOLD_PIN_FILE"), 1);
    } else if (getenv("CREDENTIALS_DIRECTORY") == NULL) {
        bad("identity %s: no PIN source: set pin-file= in %s/%s.conf", name,
            ctx->conf_dir, name);
    }
    kh_token_close(tok);
    kh_identity_free(id);
}

/* SoftHSM's token directory: readable by group keyhold, writable by root
 * only, so the service accounts can sign but not create or delete keys. */
static void check_token_dir(void)
{
    const char *conf = getenv("SOFTHSM2_CONF");
    char *buf = NULL, *p, dir[KH_PATH_MAX] = "";
    struct stat st;

    if (conf == NULL) {
        conf = "/etc/softhsm/softhsm2.conf";
    }
    if (!kh_read_file(conf, 65536, &buf, NULL, NULL, 0)) {
        return;
    }
    for (p = strtok(buf, "\n"); p != NULL; p = strtok(NULL, "\n")) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (strncmp(p, "directories.tokendir", 20) == 0
            && (p = strchr(p, '=')) != NULL) {
            p++;
            while (*p == ' ' || *p == '\t') {
                p++;
            }
            snprintf(dir, sizeof(dir), "%s", p);
            break;
        }
    }
    free(buf);
    if (dir[0] == '\0' || stat(dir, &st) != 0) {
        return;
    }
    if (st.st_mode & (S_IWOTH | S_IWGRP)) {
        bad("SoftHSM token dir %s is writable by %s (mode %04o): run "
            "'chmod -R go-w %s' (root writes, group keyhold reads)", dir,
            (st.st_mode & S_IWOTH) ? "everyone" : "its group",
            (unsigned)(st.st_mode & 07777), dir);
    } else {
        ok("SoftHSM token dir %s mode %04o (writable by its owner only)", dir,
           (unsigned)(st.st_mode & 07777));
    }
}

int cmd_doctor(KH_CTX *ctx, int argc, char **argv)
{
    KH_STRLIST names = { 0 };
    char err[KH_ERR_MAX];
    time_t now = time(NULL);
    size_t i;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    if (argc != 1) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    problems = 0;
    printf("keyhold %s doctor\n", KH_VERSION);
    if (kh_prov_load(ctx, err, sizeof(err)) == KH_EXIT_OK) {
        ok("keyhold provider loads");
    } else {
        bad("%s", err);
    }
    check_openssl_cnf();
    if (kh_clock_suspect(now)) {
        bad("clock: system time is before keyhold's build date: set the time "
            "(NTP, RTC battery); until then nothing renews or expires");
    } else {
        ok("clock: after the build date");
    }
    check_token_dir();
    check_perm("config dir", ctx->conf_dir, 0);
    if (access(ctx->state_dir, F_OK) == 0) {
        check_perm("state dir", ctx->state_dir, 0);
    } else {
        printf("info     state dir %s does not exist yet\n", ctx->state_dir);
    }
    if (!kh_identity_list(ctx, &names)) {
        bad("cannot read %s", ctx->conf_dir);
    } else if (names.n == 0) {
        printf("info     no identities (keyhold provision NAME ...)\n");
    }
    for (i = 0; i < names.n; i++) {
        check_identity(ctx, names.v[i]);
    }
    kh_strlist_free(&names);
    printf("%d problem%s found\n", problems, problems == 1 ? "" : "s");
    return problems ? KH_EXIT_ATTENTION : KH_EXIT_OK;
}
