/* SPDX-License-Identifier: MIT */
/*
 * kh-forkmid (scenario 9): forks at the awkward moments.
 *
 *   kh-forkmid -m update -k URI -P DIR
 *       fork between EVP_DigestSignUpdate and EVP_DigestSignFinal; the
 *       parent must finish with a valid signature; the child's Final must
 *       either fail cleanly (error, exit 2) or produce a valid signature
 *       (exit 0) -- never a crash, a hang or a bad signature.
 *   kh-forkmid -m pincb -k URI-WITHOUT-PIN -K URI-WITH-PIN -p PINFILE -P DIR
 *       fork inside the PIN callback; the child loads the key again (with
 *       its own PIN source) and signs while the parent waits in the
 *       callback: no deadlock in either; then the parent signs.
 * A child that hangs is ended by alarm() and reported.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "../helpers/kh_testutil.h"

static const char *pin_file;
static const char *child_uri;
static int child_status = -1;

static int verify(EVP_PKEY *pub, const unsigned char *sig, size_t siglen,
                  const char *msg)
{
    EVP_MD_CTX *v = EVP_MD_CTX_new();
    int ok;

    ok = v != NULL
         && EVP_DigestVerifyInit_ex(v, NULL, "SHA256", kh_test_verify_libctx(),
                                    NULL, pub, NULL) == 1
         && EVP_DigestVerify(v, sig, siglen, (const unsigned char *)msg,
                             strlen(msg)) == 1;
    EVP_MD_CTX_free(v);
    return ok;
}

static int sign_verify(EVP_PKEY *key, EVP_PKEY *pub, const char *msg)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    int ok;

    ok = m != NULL
         && EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, key,
                                  NULL) == 1
         && EVP_DigestSign(m, sig, &siglen, (const unsigned char *)msg,
                           strlen(msg)) == 1
         && verify(pub, sig, siglen, msg);
    EVP_MD_CTX_free(m);
    return ok;
}

/* Exit status of a child, or -1 after a signal (reported). */
static int reap(pid_t pid, const char *who)
{
    int st = 0;

    if (waitpid(pid, &st, 0) != pid) {
        perror("waitpid");
        return -1;
    }
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "%s: killed by signal %d%s\n", who, WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (hung)" : "");
        return -1;
    }
    return WEXITSTATUS(st);
}

static int mode_update(const char *uri)
{
    const char *part1 = "first half, ", *part2 = "second half";
    const char *whole = "first half, second half";
    EVP_PKEY *key, *pub;
    EVP_MD_CTX *m;
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    pid_t pid;
    int st, ok;

    key = kh_test_load_key(uri);
    pub = key != NULL ? kh_test_public_copy(key, NULL) : NULL;
    if (pub == NULL || !sign_verify(key, pub, "warm-up")) {
        kh_test_err("cannot load or use the key");
        return 1;
    }
    m = EVP_MD_CTX_new();
    if (m == NULL
        || EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, key,
                                 NULL) != 1
        || EVP_DigestSignUpdate(m, part1, strlen(part1)) != 1) {
        kh_test_err("DigestSignInit/Update failed");
        return 1;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm(30);
        if (EVP_DigestSignUpdate(m, part2, strlen(part2)) != 1
            || EVP_DigestSignFinal(m, sig, &siglen) != 1) {
            kh_test_err("child: DigestSignFinal failed (cleanly)");
            _exit(2);
        }
        if (!verify(pub, sig, siglen, whole)) {
            fprintf(stderr, "child: signature does NOT verify\n");
            _exit(3);
        }
        printf("child: signed after the fork, signature verifies\n");
        fflush(NULL);
        _exit(0);
    }
    ok = EVP_DigestSignUpdate(m, part2, strlen(part2)) == 1
         && EVP_DigestSignFinal(m, sig, &siglen) == 1
         && verify(pub, sig, siglen, whole);
    if (!ok) {
        kh_test_err("parent: signature across the fork failed");
    }
    ok = ok && sign_verify(key, pub, "parent after the fork");
    st = reap(pid, "child");
    printf("parent: %s; child exit %d\n", ok ? "ok" : "FAILED", st);
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(key);
    kh_test_pub_free(pub);
    return ok && (st == 0 || st == 2) ? 0 : 1;
}

/* PEM-style passphrase callback: forks a child that uses the provider. */
static int pin_cb(char *buf, int size, int rwflag, void *u)
{
    FILE *fp;
    pid_t pid;
    int n;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        EVP_PKEY *key, *pub;
        int ok;

        alarm(30);
        key = kh_test_load_key(child_uri);
        pub = key != NULL ? kh_test_public_copy(key, NULL) : NULL;
        ok = pub != NULL && sign_verify(key, pub, "child in the PIN callback");
        printf("child in PIN callback: %s\n", ok ? "signed" : "failed");
        fflush(NULL);
        _exit(ok ? 0 : 2);
    }
    if (pid > 0) {
        child_status = reap(pid, "child in the PIN callback");
    }
    fp = fopen(pin_file, "r");
    if (fp == NULL) {
        return -1;
    }
    n = (int)fread(buf, 1, (size_t)size - 1, fp);
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    buf[n] = '\0';
    return n;
}

static int mode_pincb(const char *uri)
{
    UI_METHOD *ui = UI_UTIL_wrap_read_pem_callback(pin_cb, 0);
    OSSL_STORE_CTX *store;
    EVP_PKEY *key = NULL, *pub = NULL;
    int ok;

    store = OSSL_STORE_open_ex(uri, NULL, NULL, ui, NULL, NULL, NULL, NULL);
    key = kh_test_store_pkey(store);
    pub = key != NULL ? kh_test_public_copy(key, NULL) : NULL;
    ok = pub != NULL && sign_verify(key, pub, "parent after the callback");
    if (!ok) {
        kh_test_err("parent: loading or signing with the prompted PIN failed");
    }
    printf("parent: %s; PIN callback child exit %d\n", ok ? "ok" : "FAILED",
           child_status);
    EVP_PKEY_free(key);
    kh_test_pub_free(pub);
    UI_destroy_method(ui);
    /* The callback must have run (the URI has no PIN), and its child must
     * have finished on its own. */
    return ok && child_status == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *mode = NULL, *uri = NULL, *dir = NULL;
    int c;

    while ((c = getopt(argc, argv, "m:k:K:p:P:")) != -1) {
        switch (c) {
        case 'm': mode = optarg; break;
        case 'k': uri = optarg; break;
        case 'K': child_uri = optarg; break;
        case 'p': pin_file = optarg; break;
        case 'P': dir = optarg; break;
        default:
            fprintf(stderr, "usage: kh-forkmid -m update|pincb -k URI "
                    "[-K URI -p PINFILE] -P DIR\n");
            return 2;
        }
    }
    if (mode == NULL || uri == NULL || dir == NULL) {
        fprintf(stderr, "kh-forkmid: need -m, -k and -P\n");
        return 2;
    }
    if (!kh_test_load_providers("last", dir)) {
        return 1;
    }
    if (strcmp(mode, "update") == 0) {
        return mode_update(uri);
    }
    if (strcmp(mode, "pincb") == 0 && child_uri != NULL && pin_file != NULL) {
        return mode_pincb(uri);
    }
    fprintf(stderr, "kh-forkmid: unknown mode or missing -K/-p\n");
    return 2;
}
