/* SPDX-License-Identifier: MIT */
/*
 * keyhold: the command table, global flags and the run's context. Each
 * subcommand lives in its own cmd_*.c file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/provider.h>

#include "keyhold.h"

struct kh_cmd {
    const char *name;
    kh_cmd_fn fn;
    const char *summary;
};

static const struct kh_cmd commands[] = {
    { "token", cmd_token, "init a SoftHSM token, set its user PIN" },
    { "provision", cmd_provision, "generate a key in hardware + CSR" },
    { "csr", cmd_csr, "a new CSR for an identity's existing key" },
    { "install", cmd_install, "check and install a certificate atomically" },
    { "status", cmd_status, "identities and their states (--json, ...)" },
    { "doctor", cmd_doctor, "check backends, provider, PINs, state, clock" },
    { "set-hosts", cmd_set_hosts, "change an identity's host names" },
    { "verify", cmd_verify, "prove an identity works (sign, verify, TLS)" },
    { "zeroize", cmd_zeroize, "destroy an identity's key, certs and state" },
    { "audit", cmd_audit, "verify the audit log, record hook events" },
    { "enroll", cmd_enroll, "enrol over EST (first certificate)" },
    { "renew", cmd_renew, "renew due identities (EST)" },
    { "rekey", cmd_rekey, "new key + certificate for an identity" },
    { NULL, NULL, NULL }
};

static void usage(FILE *f)
{
    int i;

    fprintf(f,
            "usage: keyhold [--conf-dir DIR] [--state-dir DIR] [--debug] "
            "COMMAND [ARGS]\n"
            "       keyhold --version | --help | COMMAND --help\n\n"
            "Hardware-backed server identities: keys generated in a PKCS#11 "
            "token or TPM,\ncertificates checked and installed atomically.\n\n"
            "Commands:\n");
    for (i = 0; commands[i].name != NULL; i++) {
        if (commands[i].fn != NULL) {
            fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
        }
    }
    fprintf(f,
            "\nEnvironment: KEYHOLD_CONF_DIR (default /etc/keyhold), "
            "KEYHOLD_STATE_DIR\n(default /var/lib/keyhold), KEYHOLD_PIN_FILE, "
            "CREDENTIALS_DIRECTORY, KEYHOLD_DEBUG.\n"
            "Exit codes: 0 ok, 1 usage, 2 input rejected, 3 token/TPM error, "
            "4 network/CA\nerror, 5 needs attention, 6 PIN/auth incorrect or "
            "no PIN source, 7 permission\ndenied, 8 broken, 75 busy.\n"
            "See keyhold(1) and docs/provisioning.md.\n");
}

static int set_dir(char *dst, size_t len, const char *v)
{
    if (v == NULL || *v == '\0' || strlen(v) >= len) {
        return 0;
    }
    snprintf(dst, len, "%s", v);
    return 1;
}

int main(int argc, char **argv)
{
    KH_CTX ctx;
    const char *env;
    int i, rc;

    memset(&ctx, 0, sizeof(ctx));
    env = getenv("KEYHOLD_CONF_DIR");
    if (!set_dir(ctx.conf_dir, sizeof(ctx.conf_dir), env)) {
        set_dir(ctx.conf_dir, sizeof(ctx.conf_dir), "/etc/keyhold");
    }
    env = getenv("KEYHOLD_STATE_DIR");
    if (!set_dir(ctx.state_dir, sizeof(ctx.state_dir), env)) {
        set_dir(ctx.state_dir, sizeof(ctx.state_dir), "/var/lib/keyhold");
    }
    env = getenv("KEYHOLD_DEBUG");
    ctx.debug = env != NULL && *env != '\0' && strcmp(env, "0") != 0;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("keyhold %s\n", KH_VERSION);
            return KH_EXIT_OK;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return KH_EXIT_OK;
        } else if (strcmp(a, "--debug") == 0) {
            ctx.debug = 1;
        } else if ((strcmp(a, "--conf-dir") == 0
                    || strcmp(a, "--state-dir") == 0) && i + 1 < argc) {
            char *dst = a[2] == 'c' ? ctx.conf_dir : ctx.state_dir;
            size_t len = a[2] == 'c' ? sizeof(ctx.conf_dir)
                                     : sizeof(ctx.state_dir);

            if (!set_dir(dst, len, argv[++i])) {
                fprintf(stderr, "keyhold: %s: bad directory\n", a);
                return KH_EXIT_USAGE;
            }
        } else if (strncmp(a, "--conf-dir=", 11) == 0) {
            if (!set_dir(ctx.conf_dir, sizeof(ctx.conf_dir), a + 11)) {
                return KH_EXIT_USAGE;
            }
        } else if (strncmp(a, "--state-dir=", 12) == 0) {
            if (!set_dir(ctx.state_dir, sizeof(ctx.state_dir), a + 12)) {
                return KH_EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "keyhold: unknown option '%s' (keyhold --help)\n",
                    a);
            return KH_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return KH_EXIT_USAGE;
    }
    if (ctx.debug) {
        setenv("KEYHOLD_DEBUG", "1", 0);
    }
    {
        int c;

        for (c = 0; commands[c].name != NULL; c++) {
            if (strcmp(commands[c].name, argv[i]) == 0) {
                break;
            }
        }
        if (commands[c].name == NULL || commands[c].fn == NULL) {
            fprintf(stderr, "keyhold: unknown command '%s' (keyhold --help)\n",
                    argv[i]);
            return KH_EXIT_USAGE;
        }
        ctx.cmd = commands[c].name;
        rc = commands[c].fn(&ctx, argc - i, argv + i);
    }
    fflush(stdout);
    /* keys and contexts are freed by now: unload before libcrypto's own
     * exit-time cleanup, so the provider's teardown runs in order */
    if (ctx.prov_keyhold != NULL) {
        OSSL_PROVIDER_unload(ctx.prov_keyhold);
    }
    if (ctx.prov_default != NULL) {
        OSSL_PROVIDER_unload(ctx.prov_default);
    }
    return rc;
}
