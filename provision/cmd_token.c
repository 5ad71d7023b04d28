/* SPDX-License-Identifier: MIT */
/*
 * keyhold token init | set-pin: SoftHSM tokens for development, the demo
 * and factory lines that use SoftHSM. Each token made is recorded in
 * $KEYHOLD_STATE_DIR/tokens.jsonl so a factory reset knows which tokens
 * are keyhold's own.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyhold.h"
#include "kh_pin.h"

static const char usage_init[] =
    "usage: keyhold token init --label LABEL --pin-file F --so-pin-file F "
    "[--module PATH]\n"
    "  Initialises a new SoftHSM token on a free slot with the SO PIN and "
    "user PIN\n  read from the files (0640 root:keyhold or stricter).\n";
static const char usage_setpin[] =
    "usage: keyhold token set-pin --label LABEL --pin-file OLD "
    "--new-pin-file NEW [--module PATH]\n"
    "  Changes the token's user PIN (per-appliance PINs). Update the "
    "identities'\n  pin-file afterwards (or write the new PIN into it).\n";

static void record_token(KH_CTX *ctx, const char *label, const char *serial,
                         const char *module, const char *pin_file,
                         const char *so_pin_file)
{
    char path[KH_PATH_MAX], line[4096];
    char jl[100], js[60], jm[KH_PATH_MAX], jp[KH_PATH_MAX], jsp[KH_PATH_MAX];
    int fd, n;

    if (mkdir(ctx->state_dir, 0750) != 0 && errno != EEXIST) {
        return;
    }
    kh_path(path, sizeof(path), "%s/tokens.jsonl", ctx->state_dir);
    kh_json_str(jl, sizeof(jl), label);
    kh_json_str(js, sizeof(js), serial);
    kh_json_str(jm, sizeof(jm), module);
    kh_json_str(jp, sizeof(jp), pin_file);
    kh_json_str(jsp, sizeof(jsp), so_pin_file);
    n = snprintf(line, sizeof(line),
                 "{\"label\":%s,\"serial\":%s,\"module\":%s,\"pin_file\":%s,"
                 "\"so_pin_file\":%s,\"time\":%lld}\n",
                 jl, js, jm, jp, jsp, (long long)time(NULL));
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 || n <= 0 || (size_t)n >= sizeof(line)) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    flock(fd, LOCK_EX);
    if (write(fd, line, (size_t)n) != n) {
        /* the token exists regardless; the record is best effort */
    }
    fsync(fd);
    close(fd);
}

static char *abs_path(const char *p)
{
    char *r = realpath(p, NULL);

    return r != NULL ? r : strdup(p);
}

/* The options both subcommands take: the token's label, the PIN file, a
 * second PIN file (init: the SO PIN, set-pin: the new user PIN) and the
 * module. The label and the second file are required, the PIN file only
 * when NEED_PIN. Returns 1 to go on, or 0 when the command is done: --help
 * printed USAGE (*rc KH_EXIT_OK), or a usage error (*rc KH_EXIT_USAGE). */
struct token_args {
    const char *label, *pinf, *pin2f, *module;
};

static int token_args(int argc, char **argv, const struct option *opts,
                      const char *usage, int need_pin, struct token_args *a,
                      int *rc)
{
    int c;

    *rc = KH_EXIT_USAGE;
    if (kh_want_help(argc, argv, usage)) {
        *rc = KH_EXIT_OK;
        return 0;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l': a->label = optarg; break;
        case 'p': a->pinf = optarg; break;
        case 'f': a->pin2f = optarg; break;
        case 'm': a->module = optarg; break;
        default:
            fputs(usage, stderr);
            return 0;
        }
    }
    if (a->label == NULL || a->pin2f == NULL || (need_pin && a->pinf == NULL)
        || optind != argc) {
        fputs(usage, stderr);
        return 0;
    }
    return 1;
}

static int token_init(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "label", required_argument, NULL, 'l' },
        { "pin-file", required_argument, NULL, 'p' },
        { "so-pin-file", required_argument, NULL, 'f' },
        { "module", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 }
    };
    struct token_args a = { NULL, NULL, NULL, NULL };
    char pin[KH_PIN_MAX + 1], so[KH_PIN_MAX + 1], serial[17] = "";
    size_t pinlen = 0, solen = 0;
    char err[KH_ERR_MAX];
    char *ap = NULL, *asp = NULL;
    int rc;

    if (!token_args(argc, argv, opts, usage_init, 1, &a, &rc)) {
        return rc;
    }
    rc = kh_pin_from_file(a.pinf, pin, sizeof(pin), &pinlen, err,
                          sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_pin_from_file(a.pin2f, so, sizeof(so), &solen, err,
                              sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_token_init(ctx, a.module, a.label, so, solen, pin, pinlen,
                           serial, err, sizeof(err));
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    OPENSSL_cleanse(so, sizeof(so));
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "token init %s: %s", a.label, err);
        kh_audit(ctx, "token-init", NULL, NULL, "failed", a.label);
        return rc;
    }
    ap = abs_path(a.pinf);
    asp = abs_path(a.pin2f);
    record_token(ctx, a.label, serial,
                 a.module != NULL ? a.module
                                  : "/usr/lib/softhsm/libsofthsm2.so",
                 ap, asp);
    kh_audit(ctx, "token-init", NULL, NULL, "ok", a.label);
    printf("token '%s' initialised (serial %s)\n", a.label, serial);
    free(ap);
    free(asp);
    return KH_EXIT_OK;
}

static int token_set_pin(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "label", required_argument, NULL, 'l' },
        { "token", required_argument, NULL, 'l' },
        { "pin-file", required_argument, NULL, 'p' },
        { "new-pin-file", required_argument, NULL, 'f' },
        { "module", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 }
    };
    struct token_args a = { NULL, NULL, NULL, NULL };
    char pin[KH_PIN_MAX + 1], npin[KH_PIN_MAX + 1];
    size_t pinlen = 0, npinlen = 0;
    char err[KH_ERR_MAX];
    KH_TOKEN *t = NULL;
    int rc;

    if (!token_args(argc, argv, opts, usage_setpin, 0, &a, &rc)) {
        return rc;
    }
    if (a.pinf != NULL) {
        rc = kh_pin_from_file(a.pinf, pin, sizeof(pin), &pinlen, err,
                              sizeof(err));
    } else {
        rc = kh_pin_obtain(ctx, NULL, pin, sizeof(pin), &pinlen, err,
                           sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_pin_from_file(a.pin2f, npin, sizeof(npin), &npinlen, err,
                              sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_token_open(ctx, a.module, a.label, &t, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_token_set_pin(t, pin, pinlen, npin, npinlen, err, sizeof(err));
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    OPENSSL_cleanse(npin, sizeof(npin));
    kh_token_close(t);
    kh_audit(ctx, "token-set-pin", NULL, NULL,
             rc == KH_EXIT_OK ? "ok" : "failed", a.label);
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "token set-pin %s: %s", a.label, err);
        return rc;
    }
    printf("token '%s': user PIN changed\n", a.label);
    return KH_EXIT_OK;
}

int cmd_token(KH_CTX *ctx, int argc, char **argv)
{
    static const char usage[] =
        "usage: keyhold token init|set-pin ... (keyhold token init --help)\n";
    char err[KH_ERR_MAX];
    int rc;

    if (argc >= 2 && (strcmp(argv[1], "init") == 0
                      || strcmp(argv[1], "set-pin") == 0)
        && !kh_want_help(argc - 1, argv + 1, "")
        && (rc = kh_require_manage(ctx, "token", err, sizeof(err)))
               != KH_EXIT_OK) {
        kh_err(ctx, "%s", err);
        return rc;
    }

    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        return token_init(ctx, argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "set-pin") == 0) {
        return token_set_pin(ctx, argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0
                      || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        fputs(usage_init, stdout);
        fputs(usage_setpin, stdout);
        return KH_EXIT_OK;
    }
    fputs(usage, stderr);
    return KH_EXIT_USAGE;
}
