/* SPDX-License-Identifier: MIT */
/*
 * kh-forksign: the forking-server pattern. The parent loads the key (and,
 * unless -c is given, signs once so that sessions exist), then forks
 * children; every child and the parent sign and verify afterwards, at the
 * same time. With SoftHSM's library.reset_on_fork = true a child that
 * reuses the parent's PKCS#11 state fails, as on real hardware.
 *
 *   kh-forksign -k URI [-c] [-f children] [-n sigs] [-g] [-L first|last]
 *               [-P provider-dir]
 *   -c  cold: fork before the first signature
 *   -g  each child forks a grandchild that signs too
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "kh_testutil.h"

static int sign_verify(EVP_PKEY *key, EVP_PKEY *pub, const char *who, int n)
{
    unsigned char msg[80], sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    int ok = 0;

    snprintf((char *)msg, sizeof(msg), "%s pid %d signature %d", who,
             (int)getpid(), n);
    if (m == NULL || v == NULL
        || EVP_DigestSignInit_ex(m, NULL, "sha256", NULL, NULL, key,
                                 NULL) != 1
        || EVP_DigestSign(m, sig, &siglen, msg, sizeof(msg)) != 1) {
        kh_test_err("%s (pid %d): signature %d failed", who, (int)getpid(), n);
        goto end;
    }
    if (EVP_DigestVerifyInit_ex(v, NULL, "sha256", kh_test_verify_libctx(),
                                NULL, pub, NULL) != 1
        || EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) != 1) {
        kh_test_err("%s (pid %d): signature %d does not verify", who,
                    (int)getpid(), n);
        goto end;
    }
    ok = 1;
end:
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(v);
    return ok;
}

static int sign_many(EVP_PKEY *key, EVP_PKEY *pub, const char *who, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (!sign_verify(key, pub, who, i)) {
            return 0;
        }
    }
    return 1;
}

/* Waits for |pid|; 1 when it exited 0. Reports signals by name. */
static int reap(pid_t pid, const char *who)
{
    int st = 0;

    if (waitpid(pid, &st, 0) != pid) {
        perror("waitpid");
        return 0;
    }
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "%s %d killed by signal %d\n", who, (int)pid,
                WTERMSIG(st));
        return 0;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int child_main(EVP_PKEY *key, EVP_PKEY *pub, int n, int grand)
{
    pid_t g = -1;
    int ok = 1;

    if (grand) {
        fflush(NULL);
        g = fork();
        if (g == 0) {
            _exit(sign_many(key, pub, "grandchild", n) ? 0 : 1);
        }
        if (g < 0) {
            perror("fork");
            ok = 0;
        }
    }
    ok &= sign_many(key, pub, "child", n);
    if (g > 0) {
        ok &= reap(g, "grandchild");
    }
    return ok;
}

int main(int argc, char **argv)
{
    const char *uri = NULL, *order = NULL, *path = NULL;
    EVP_PKEY *key = NULL, *pub = NULL;
    pid_t pids[64];
    int cold = 0, grand = 0, children = 2, n = 20, c, i, forked = 0;
    int ok = 0;

    while ((c = getopt(argc, argv, "k:cf:n:gL:P:")) != -1) {
        switch (c) {
        case 'k': uri = optarg; break;
        case 'c': cold = 1; break;
        case 'f': children = atoi(optarg); break;
        case 'n': n = atoi(optarg); break;
        case 'g': grand = 1; break;
        case 'L': order = optarg; break;
        case 'P': path = optarg; break;
        default:
            fprintf(stderr, "usage: kh-forksign -k URI [-c] [-f N] [-n M] "
                    "[-g] [-L first|last] [-P dir]\n");
            return 2;
        }
    }
    if (uri == NULL || children < 1 || children > 64 || n < 1) {
        fprintf(stderr, "kh-forksign: need -k URI and 1..64 children\n");
        return 2;
    }
    if (!kh_test_load_providers(order, path)
        || (key = kh_test_load_key(uri)) == NULL
        || (pub = kh_test_public_copy(key, NULL)) == NULL) {
        goto end;
    }
    if (!cold && !sign_verify(key, pub, "parent (before fork)", 0)) {
        goto end;
    }
    fflush(NULL);
    for (i = 0; i < children; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            _exit(child_main(key, pub, n, grand) ? 0 : 1);
        }
        if (pids[i] < 0) {
            perror("fork");
            break;
        }
        forked++;
    }
    ok = forked == children;
    ok &= sign_many(key, pub, "parent", n);
    for (i = 0; i < forked; i++) {
        ok &= reap(pids[i], "child");
    }
    /* The parent's state must survive its children's exits. */
    ok &= sign_many(key, pub, "parent (after children)", 3);
    printf("%s fork, %d children%s x %d signatures: %s\n",
           cold ? "cold" : "warm", children, grand ? " (+grandchildren)" : "",
           n, ok ? "all verified" : "FAILED");
end:
    kh_test_pub_free(pub);
    EVP_PKEY_free(key);
    return ok ? 0 : 1;
}
