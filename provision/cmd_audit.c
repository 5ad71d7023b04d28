/* SPDX-License-Identifier: MIT */
/* keyhold audit verify | record: checks the hash chain of the audit log;
 * lets appliance hooks (factory reset, firmware update) add their own
 * records to the same chain. */
#include <getopt.h>
#include <string.h>

#include "keyhold.h"

static const char usage[] =
    "usage: keyhold audit verify\n"
    "       keyhold audit record --op OP --outcome ok|failed [--identity NAME]"
    " [--detail TEXT]\n"
    "  verify: exit 0 when every record follows its predecessor unchanged,\n"
    "  else 2 naming the first bad record.\n";

int cmd_audit(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "op", required_argument, NULL, 'o' },
        { "outcome", required_argument, NULL, 'r' },
        { "identity", required_argument, NULL, 'i' },
        { "detail", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 }
    };
    char err[KH_ERR_MAX] = "";
    long n = 0;
    int bad, c;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    if (argc == 2 && strcmp(argv[1], "verify") == 0) {
        bad = kh_audit_verify(ctx, &n, err, sizeof(err));
        if (bad < 0) {
            kh_err(ctx, "audit verify: %s", err);
            return KH_EXIT_PERM;
        }
        if (bad > 0) {
            kh_err(ctx, "audit verify: %s/audit.log: %s", ctx->state_dir, err);
            return KH_EXIT_REJECTED;
        }
        printf("audit log intact: %ld records\n", n);
        return KH_EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "record") == 0) {
        const char *op = NULL, *outcome = NULL, *ident = NULL, *detail = NULL;

        optind = 1;
        while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
            switch (c) {
            case 'o': op = optarg; break;
            case 'r': outcome = optarg; break;
            case 'i': ident = optarg; break;
            case 'd': detail = optarg; break;
            default:
                fputs(usage, stderr);
                return KH_EXIT_USAGE;
            }
        }
        if (op == NULL || outcome == NULL || optind != argc - 1) {
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
        if (!kh_audit(ctx, op, ident, NULL, outcome, detail)) {
            kh_err(ctx, "audit record: cannot append to %s/audit.log",
                   ctx->state_dir);
            return KH_EXIT_PERM;
        }
        return KH_EXIT_OK;
    }
    fputs(usage, stderr);
    return KH_EXIT_USAGE;
}
