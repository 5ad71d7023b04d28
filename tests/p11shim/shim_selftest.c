/* SPDX-License-Identifier: MIT */
/*
 * Self-test of the fault shim (libkhshim.so) against a real SoftHSM token
 * of its own: every kind of rule the reliability tests rely on does what
 * docs/reliability.md says, and the call log never holds the PIN.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "../unit/kh_check.h"

#define PIN "k3yh0ld-Shim-PIN"
#define SOPIN "k3yh0ld-Shim-SO"

static CK_FUNCTION_LIST_PTR f;
static char dir[PATH_MAX];
static char control[PATH_MAX + 32];
static char logpath[PATH_MAX + 32];
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE priv;

#define CHECK_RV(expr, want)                                                \
    do {                                                                    \
        CK_RV rv_ = (expr);                                                 \
        if (rv_ != (CK_RV)(want)) {                                         \
            failures++;                                                     \
            fprintf(stderr, "%s:%d: %s = 0x%lx, want %s\n", __FILE__,       \
                    __LINE__, #expr, (unsigned long)rv_, #want);            \
        }                                                                   \
    } while (0)

/* Writes the control file atomically (tmp + rename). */
static void set_rules(const char *text)
{
    char tmp[PATH_MAX + 64];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s.tmp", control);
    fp = fopen(tmp, "w");
    if (fp == NULL) {
        perror(tmp);
        exit(1);
    }
    fputs(text, fp);
    fclose(fp);
    if (rename(tmp, control) != 0) {
        perror(control);
        exit(1);
    }
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf;
    long n;

    if (fp == NULL) {
        return strdup("");
    }
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (buf != NULL && n > 0 && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        buf[0] = '\0';
    }
    fclose(fp);
    return buf;
}

static int count_lines(const char *needle)
{
    char *log = slurp(logpath), *p;
    int n = 0;

    for (p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    free(log);
    return n;
}

/*
 * Opens a logged-in session and finds the key again: SoftHSM forgets the
 * handles of token objects when a slot's last session closes.
 */
static CK_SESSION_HANDLE open_login(void)
{
    CK_SESSION_HANDLE s = 0;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
    CK_ULONG n = 0;

    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                              NULL, NULL, &s), CKR_OK);
    f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));
    CHECK_RV(f->C_FindObjectsInit(s, t, 1), CKR_OK);
    CHECK_RV(f->C_FindObjects(s, &priv, 1, &n), CKR_OK);
    CHECK(n == 1);
    CHECK_RV(f->C_FindObjectsFinal(s), CKR_OK);
    return s;
}

static CK_RV sign_once(CK_SESSION_HANDLE s)
{
    CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
    unsigned char tbs[32] = { 1, 2, 3 }, sig[128];
    CK_ULONG siglen = sizeof(sig);
    CK_RV rv;

    rv = f->C_SignInit(s, &m, priv);
    if (rv != CKR_OK) {
        return rv;
    }
    return f->C_Sign(s, tbs, sizeof(tbs), sig, &siglen);
}

/* SoftHSM gives an initialised token a new slot id at C_Initialize. */
static void find_slot(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, i;

    CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK
            && memcmp(ti.label, "shim ", 5) == 0) {
            slot = slots[i];
        }
    }
}

static void setup_token(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CK_UTF8CHAR label[32];
    CK_SESSION_HANDLE s;
    CK_BYTE params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
                         0x01, 0x07 };
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BYTE id[] = { 0x4b, 0x48 };
    CK_ATTRIBUTE pubt[] = {
        { CKA_EC_PARAMS, params, sizeof(params) },
        { CKA_TOKEN, &yes, sizeof(yes) },
        { CKA_VERIFY, &yes, sizeof(yes) },
        { CKA_ID, id, sizeof(id) },
    };
    CK_ATTRIBUTE privt[] = {
        { CKA_TOKEN, &yes, sizeof(yes) },
        { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
        { CKA_EXTRACTABLE, &no, sizeof(no) },
        { CKA_SIGN, &yes, sizeof(yes) },
        { CKA_ID, id, sizeof(id) },
    };
    CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    CK_OBJECT_HANDLE pub;

    CHECK_RV(f->C_Initialize(NULL), CKR_OK);
    CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    if (n == 0) {
        fprintf(stderr, "SoftHSM offers no slot\n");
        exit(1);
    }
    slot = slots[0];
    memset(label, ' ', sizeof(label));
    memcpy(label, "shim", 4);
    CHECK_RV(f->C_InitToken(slot, (CK_UTF8CHAR_PTR)SOPIN, strlen(SOPIN),
                            label), CKR_OK);
    find_slot();
    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                              NULL, &s), CKR_OK);
    CHECK_RV(f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SOPIN, strlen(SOPIN)),
             CKR_OK);
    CHECK_RV(f->C_InitPIN(s, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)), CKR_OK);
    CHECK_RV(f->C_Logout(s), CKR_OK);
    CHECK_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)),
             CKR_OK);
    CHECK_RV(f->C_GenerateKeyPair(s, &gen, pubt, 4, privt, 6, &pub, &priv),
             CKR_OK);
    CHECK_RV(f->C_CloseSession(s), CKR_OK);
}

/* fail ... at=N: only the Nth call fails, and the real operation is ended
 * so that the next C_SignInit works. */
static void test_nth_call(void)
{
    CK_SESSION_HANDLE s = open_login();

    set_rules("fail C_Sign CKR_DEVICE_REMOVED at=2\n");
    CHECK_RV(sign_once(s), CKR_OK);
    CHECK_RV(sign_once(s), CKR_DEVICE_REMOVED);
    CHECK_RV(sign_once(s), CKR_OK);
    CHECK_RV(sign_once(s), CKR_OK);
    CHECK(count_lines("fn=C_Sign session=") >= 4);
    CHECK(count_lines("rv=CKR_DEVICE_REMOVED injected") == 1);

    set_rules("fail C_Sign CKR_DEVICE_ERROR at=1 times=2\n");
    CHECK_RV(sign_once(s), CKR_DEVICE_ERROR);
    CHECK_RV(sign_once(s), CKR_DEVICE_ERROR);
    CHECK_RV(sign_once(s), CKR_OK);

    set_rules("fail C_SignInit CKR_FUNCTION_FAILED\n");
    CHECK_RV(sign_once(s), CKR_FUNCTION_FAILED);
    CHECK_RV(sign_once(s), CKR_FUNCTION_FAILED);
    set_rules("");
    CHECK_RV(sign_once(s), CKR_OK);
    f->C_CloseSession(s);
}

/* do=close / do=logout / do=finalize make the fault real. */
static void test_actions(void)
{
    CK_SESSION_HANDLE s = open_login(), s2;
    CK_SESSION_INFO si;

    set_rules("fail C_SignInit CKR_SESSION_HANDLE_INVALID at=1 do=close\n");
    CHECK_RV(sign_once(s), CKR_SESSION_HANDLE_INVALID);
    CHECK_RV(sign_once(s), CKR_SESSION_HANDLE_INVALID); /* real now */
    s = open_login();
    CHECK_RV(sign_once(s), CKR_OK);

    set_rules("fail C_Sign CKR_USER_NOT_LOGGED_IN at=1 do=logout\n");
    CHECK_RV(sign_once(s), CKR_USER_NOT_LOGGED_IN);
    CHECK_RV(f->C_GetSessionInfo(s, &si), CKR_OK);
    CHECK(si.state == CKS_RW_PUBLIC_SESSION);
    /* SoftHSM forgets private object handles at logout: start over. */
    f->C_CloseSession(s);
    s = open_login();
    CHECK_RV(sign_once(s), CKR_OK);

    set_rules("fail C_Sign CKR_CRYPTOKI_NOT_INITIALIZED at=1 do=finalize\n");
    CHECK_RV(sign_once(s), CKR_CRYPTOKI_NOT_INITIALIZED);
    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2),
             CKR_CRYPTOKI_NOT_INITIALIZED);
    CHECK_RV(f->C_Initialize(NULL), CKR_OK);
    find_slot();
    s = open_login();
    CHECK_RV(sign_once(s), CKR_OK);
    set_rules("");
    f->C_CloseSession(s);
}

static void test_token_flags(void)
{
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE s;

    set_rules("tokenflags CKF_USER_PIN_FINAL_TRY CKF_USER_PIN_COUNT_LOW\n");
    CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
    CHECK((ti.flags & CKF_USER_PIN_FINAL_TRY) != 0);
    CHECK((ti.flags & CKF_USER_PIN_COUNT_LOW) != 0);
    CHECK((ti.flags & CKF_TOKEN_INITIALIZED) != 0);

    set_rules("tokenflags CKF_USER_PIN_LOCKED -CKF_USER_PIN_INITIALIZED\n");
    CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
    CHECK((ti.flags & CKF_USER_PIN_LOCKED) != 0);
    CHECK((ti.flags & CKF_USER_PIN_INITIALIZED) == 0);
    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s),
             CKR_OK);
    CHECK_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)),
             CKR_PIN_LOCKED);
    set_rules("");
    CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
    CHECK((ti.flags & CKF_USER_PIN_LOCKED) == 0);
    f->C_CloseSession(s);
}

static int has_mech(CK_MECHANISM_TYPE want)
{
    CK_MECHANISM_TYPE list[512];
    CK_ULONG n = 0, i;

    CHECK_RV(f->C_GetMechanismList(slot, NULL, &n), CKR_OK);
    CHECK(n > 0 && n <= 512);
    CHECK_RV(f->C_GetMechanismList(slot, list, &n), CKR_OK);
    for (i = 0; i < n; i++) {
        if (list[i] == want) {
            return 1;
        }
    }
    return 0;
}

static void test_hide(void)
{
    CK_MECHANISM_INFO mi;
    CK_SESSION_HANDLE s = open_login();
    CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };

    CHECK(has_mech(CKM_RSA_PKCS_PSS));
    set_rules("hide CKM_RSA_PKCS_PSS CKM_SHA256_RSA_PKCS_PSS\n"
              "hide CKM_ECDSA\n");
    CHECK(!has_mech(CKM_RSA_PKCS_PSS));
    CHECK(!has_mech(CKM_SHA256_RSA_PKCS_PSS));
    CHECK(has_mech(CKM_RSA_PKCS));
    CHECK_RV(f->C_GetMechanismInfo(slot, CKM_RSA_PKCS_PSS, &mi),
             CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_MECHANISM_INVALID);
    set_rules("");
    CHECK(has_mech(CKM_RSA_PKCS_PSS));
    CHECK_RV(sign_once(s), CKR_OK);
    f->C_CloseSession(s);
}

static void test_removed(void)
{
    CK_SESSION_HANDLE s = open_login(), s2;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;

    CHECK_RV(sign_once(s), CKR_OK);
    set_rules("removed\n");
    CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    CHECK(n == 0);
    n = 16;
    CHECK_RV(f->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
    CHECK(n > 0);
    CHECK_RV(f->C_GetSlotInfo(slot, &si), CKR_OK);
    CHECK((si.flags & CKF_TOKEN_PRESENT) == 0);
    CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_TOKEN_NOT_PRESENT);
    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2),
             CKR_TOKEN_NOT_PRESENT);
    CHECK_RV(sign_once(s), CKR_DEVICE_REMOVED);

    set_rules("removed CKR_TOKEN_NOT_PRESENT\n");
    CHECK_RV(sign_once(s), CKR_TOKEN_NOT_PRESENT);

    /* Back: the old session went with the device; a new one works. */
    set_rules("");
    CHECK_RV(f->C_GetSlotInfo(slot, &si), CKR_OK);
    CHECK((si.flags & CKF_TOKEN_PRESENT) != 0);
    CHECK_RV(sign_once(s), CKR_SESSION_HANDLE_INVALID);
    s = open_login();
    CHECK_RV(sign_once(s), CKR_OK);
    f->C_CloseSession(s);
}

struct blocker {
    CK_SESSION_HANDLE s;
    CK_RV rv;
};

static void *blocked_signer(void *arg)
{
    struct blocker *b = arg;

    b->rv = sign_once(b->s);
    return NULL;
}

/* block: one call hangs until released; other sessions keep signing. */
static void test_block(void)
{
    struct blocker b = { 0, CKR_GENERAL_ERROR };
    CK_SESSION_HANDLE other;
    pthread_t th;
    int i, seen = 0;

    b.s = open_login();
    other = open_login();
    set_rules("block C_Sign at=1 max=60\n");
    if (pthread_create(&th, NULL, blocked_signer, &b) != 0) {
        failures++;
        return;
    }
    for (i = 0; i < 1000 && !seen; i++) {
        seen = count_lines("fn=C_Sign") > 0 && count_lines(" blocked") > 0;
        usleep(10 * 1000);
    }
    CHECK(seen);
    CHECK(count_lines(" released") == 0);
    CHECK_RV(sign_once(other), CKR_OK);
    CHECK_RV(sign_once(other), CKR_OK);
    CHECK(count_lines(" released") == 0);
    set_rules("");
    pthread_join(th, NULL);
    CHECK_RV(b.rv, CKR_OK);
    CHECK(count_lines(" released") == 1);
    f->C_CloseSession(b.s);
    f->C_CloseSession(other);
}

/* Rules from KH_SHIM_FAULTS hold whatever the control file says. */
static void test_env_rules(void)
{
    set_rules("hide CKM_RSA_PKCS\n");
    CHECK(!has_mech(CKM_RSA_PKCS));
    CHECK(!has_mech(CKM_ECDSA_SHA1));
    set_rules("");
    CHECK(has_mech(CKM_RSA_PKCS));
    CHECK(!has_mech(CKM_ECDSA_SHA1));
}

static void test_log(void)
{
    char *log = slurp(logpath);

    CHECK(strstr(log, PIN) == NULL);
    CHECK(strstr(log, SOPIN) == NULL);
    CHECK(strstr(log, "fn=C_Login session=") != NULL);
    CHECK(strstr(log, "user=CKU_SO rv=CKR_OK") != NULL);
    CHECK(strstr(log, "fn=C_SignInit session=") != NULL);
    CHECK(strstr(log, "mech=CKM_ECDSA") != NULL);
    CHECK(strstr(log, "priv=TOKEN,PRIVATE,SENSITIVE,!EXTRACTABLE,SIGN")
          != NULL);
    free(log);
}

static void cleanup(void)
{
    char cmd[PATH_MAX + 16];

    if (dir[0] != '\0' && getenv("KH_KEEP") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", dir);
        }
    }
}

int main(void)
{
    char exe[PATH_MAX], shim[PATH_MAX + 32], conf[PATH_MAX + 32], *p;
    const char *tmp = getenv("TMPDIR");
    CK_C_GetFunctionList getfl;
    ssize_t n;
    void *dl;
    FILE *fp;

    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        perror("readlink");
        return 1;
    }
    exe[n] = '\0';
    p = strrchr(exe, '/');
    *p = '\0';  /* .../tests/unit */
    p = strrchr(exe, '/');
    *p = '\0';  /* .../tests */
    snprintf(shim, sizeof(shim), "%s/libkhshim.so", exe);

    snprintf(dir, sizeof(dir), "%s/kh-shim.XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    snprintf(conf, sizeof(conf), "%s/tokens", dir);
    mkdir(conf, 0700);
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
    fp = fopen(conf, "w");
    if (fp == NULL) {
        perror(conf);
        return 1;
    }
    fprintf(fp, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n", dir);
    fclose(fp);
    snprintf(control, sizeof(control), "%s/control", dir);
    snprintf(logpath, sizeof(logpath), "%s/calls.log", dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    setenv("KH_SHIM_CONTROL", control, 1);
    setenv("KH_SHIM_LOG", logpath, 1);
    setenv("KH_SHIM_FAULTS", "hide CKM_ECDSA_SHA1", 1);
    unsetenv("KH_SHIM_MODULE");

    dl = dlopen(shim, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (getfl == NULL || getfl(&f) != CKR_OK) {
        fprintf(stderr, "%s: no function list\n", shim);
        return 1;
    }
    CHECK(dlsym(dl, "C_Initialize") == NULL); /* only the list is exported */

    setup_token();
    test_nth_call();
    test_actions();
    test_token_flags();
    test_hide();
    test_removed();
    test_block();
    test_env_rules();
    test_log();
    f->C_Finalize(NULL);
    if (failures > 0) {
        fprintf(stderr, "p11shim_selftest: %d failures (log: %s)\n", failures,
                logpath);
        setenv("KH_KEEP", "1", 1);
        return 1;
    }
    printf("p11shim_selftest: ok\n");
    return 0;
}
