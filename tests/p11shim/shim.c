/* SPDX-License-Identifier: MIT */
/*
 * libkhshim.so: a PKCS#11 module that wraps a real one (SoftHSM by default)
 * and injects the faults that real tokens produce and SoftHSM cannot:
 * removed devices, stale sessions, lost logins, PIN counters, missing
 * mechanisms, hung calls. Every call is logged (function, session or slot,
 * mechanism, rv; never a PIN) so that a test can assert what its caller did.
 *
 * Configuration (see docs/reliability.md, "The fault shim"):
 *   KH_SHIM_MODULE   the real module (default SoftHSM)
 *   KH_SHIM_LOG      file to append one line per call to
 *   KH_SHIM_CONTROL  control file, re-read whenever it changes
 *   KH_SHIM_FAULTS   rules as in the control file, separated by ';'
 *
 * Rules, one per line ('#' starts a comment):
 *   fail FN CKR_X [at=N] [times=K] [do=close|logout|finalize|closeall]
 *        FN's Nth call (counted per process since the control file's text
 *        last changed)
 *        and the K-1 after it return CKR_X (no at=: every call). do= also
 *        does that to the real module, so that the fault is not only
 *        reported but real (a closed session stays closed).
 *   block FN [at=N] [times=K] [max=SECONDS]
 *        the call sleeps until the rules no longer block FN (bounded by
 *        max, default 30 s), then proceeds.
 *   removed [CKR_X]
 *        the token is gone: slot calls say CKR_TOKEN_NOT_PRESENT, session
 *        calls CKR_X (default CKR_DEVICE_REMOVED); the real sessions are
 *        closed, so after the line goes away old handles are invalid.
 *   tokenflags [+|-]CKF_X ...
 *        flags added to (or removed from) C_GetTokenInfo; with
 *        CKF_USER_PIN_LOCKED a user C_Login returns CKR_PIN_LOCKED.
 *   hide CKM_X ...
 *        the token does not offer these mechanisms.
 * Counters are per process: a forked child starts with its parent's.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "kh_p11util.h"

#define SH_EXPORT __attribute__((visibility("default")))
#define SH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define SH_MAX_RULES 64
#define SH_MAX_HIDDEN 32
#define SH_NO_SESSION ((CK_SESSION_HANDLE)-1)
#define SH_NO_SLOT ((CK_SLOT_ID)-1)
#define SH_FOREVER ((unsigned long)-1)
#define SH_BLOCK_MAX_DEFAULT 30

enum sh_rule_kind { RULE_FAIL = 1, RULE_BLOCK };
enum sh_action { ACT_NONE = 0, ACT_CLOSE, ACT_LOGOUT, ACT_FINALIZE,
                 ACT_CLOSEALL };

struct sh_rule {
    enum sh_rule_kind kind;
    char fn[40];
    CK_RV rv;
    unsigned long at;       /* first call hit (1-based); 0 = every call */
    unsigned long times;    /* how many calls from |at| */
    unsigned long seen;     /* calls of fn so far */
    enum sh_action action;
    unsigned int max_secs;  /* block only */
};

struct sh_config {
    struct sh_rule rules[SH_MAX_RULES];
    size_t nrules;
    CK_MECHANISM_TYPE hidden[SH_MAX_HIDDEN];
    size_t nhidden;
    CK_FLAGS flags_set;
    CK_FLAGS flags_clear;
    int removed;
    CK_RV removed_rv;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static CK_FUNCTION_LIST_PTR real;
static void *real_dl;
static int logfd = -1;
static char control_path[4096];
static char env_rules[4096];
static struct sh_config cfg;

/* ---- names ---------------------------------------------------------- */

#define N(x) { x, #x }

static const struct {
    unsigned long v;
    const char *name;
} ckm_tab[] = {
    N(CKM_RSA_PKCS_KEY_PAIR_GEN), N(CKM_RSA_PKCS), N(CKM_RSA_X_509),
    N(CKM_RSA_PKCS_OAEP), N(CKM_RSA_PKCS_PSS), N(CKM_SHA1_RSA_PKCS),
    N(CKM_SHA256_RSA_PKCS), N(CKM_SHA384_RSA_PKCS), N(CKM_SHA512_RSA_PKCS),
    N(CKM_SHA1_RSA_PKCS_PSS), N(CKM_SHA256_RSA_PKCS_PSS),
    N(CKM_SHA384_RSA_PKCS_PSS), N(CKM_SHA512_RSA_PKCS_PSS),
    N(CKM_SHA224_RSA_PKCS_PSS), N(CKM_EC_KEY_PAIR_GEN), N(CKM_ECDSA),
    N(CKM_ECDSA_SHA1), N(CKM_ECDSA_SHA256), N(CKM_ECDSA_SHA384),
    N(CKM_ECDSA_SHA512), N(CKM_ECDH1_DERIVE), N(CKM_SHA_1), N(CKM_SHA256),
    N(CKM_SHA384), N(CKM_SHA512), N(CKM_AES_KEY_GEN), N(CKM_AES_CBC),
    N(CKM_AES_KEY_WRAP), N(CKM_GENERIC_SECRET_KEY_GEN),
};

static const struct {
    unsigned long v;
    const char *name;
} ckf_tab[] = {
    N(CKF_RNG), N(CKF_WRITE_PROTECTED), N(CKF_LOGIN_REQUIRED),
    N(CKF_USER_PIN_INITIALIZED), N(CKF_TOKEN_INITIALIZED),
    N(CKF_USER_PIN_COUNT_LOW), N(CKF_USER_PIN_FINAL_TRY),
    N(CKF_USER_PIN_LOCKED), N(CKF_USER_PIN_TO_BE_CHANGED),
    N(CKF_SO_PIN_COUNT_LOW), N(CKF_SO_PIN_FINAL_TRY), N(CKF_SO_PIN_LOCKED),
    N(CKF_SO_PIN_TO_BE_CHANGED),
};
#undef N

#define TAB_LOOKUP(tab, s, out)                                             \
    do {                                                                    \
        size_t i_;                                                          \
        for (i_ = 0; i_ < sizeof(tab) / sizeof(tab[0]); i_++) {             \
            if (strcmp(tab[i_].name, (s)) == 0) {                           \
                *(out) = tab[i_].v;                                         \
                return 1;                                                   \
            }                                                               \
        }                                                                   \
    } while (0)

/* A name from the table or a number (0x.. or decimal). */
static int parse_num(const char *s, unsigned long *out)
{
    char *end;

    errno = 0;
    *out = strtoul(s, &end, 0);
    return errno == 0 && end != s && *end == '\0';
}

static int ckr_parse(const char *s, CK_RV *out)
{
    return kh_ckr_parse(s, out) || parse_num(s, out);
}

static int ckm_parse(const char *s, CK_MECHANISM_TYPE *out)
{
    TAB_LOOKUP(ckm_tab, s, out);
    return parse_num(s, out);
}

static int ckf_parse(const char *s, CK_FLAGS *out)
{
    TAB_LOOKUP(ckf_tab, s, out);
    return parse_num(s, out);
}

/* Names of return codes come from the table the provider uses too. */
static const char *ckr_str(CK_RV rv)
{
    return kh_ckr_name(rv);
}

static const char *ckm_str(CK_MECHANISM_TYPE m, char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < sizeof(ckm_tab) / sizeof(ckm_tab[0]); i++) {
        if (ckm_tab[i].v == m) {
            return ckm_tab[i].name;
        }
    }
    snprintf(buf, len, "CKM_0x%08lx", (unsigned long)m);
    return buf;
}

/* ---- configuration -------------------------------------------------- */

static void warn(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    n = snprintf(buf, sizeof(buf), "khshim[%ld]: ", (long)getpid());
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
    va_end(ap);
    if (logfd >= 0) {
        dprintf(logfd, "%s\n", buf);
    }
    fprintf(stderr, "%s\n", buf);
}

static enum sh_action action_parse(const char *s)
{
    if (strcmp(s, "close") == 0) {
        return ACT_CLOSE;
    }
    if (strcmp(s, "logout") == 0) {
        return ACT_LOGOUT;
    }
    if (strcmp(s, "finalize") == 0) {
        return ACT_FINALIZE;
    }
    if (strcmp(s, "closeall") == 0) {
        return ACT_CLOSEALL;
    }
    return (enum sh_action)-1;
}

/* Parses one rule line (modified in place) into |c|. */
static void parse_line(struct sh_config *c, char *line)
{
    char *tok[16];
    size_t n = 0, i;
    char *save = NULL, *p;

    p = strchr(line, '#');
    if (p != NULL) {
        *p = '\0';
    }
    for (p = strtok_r(line, " \t\r\n", &save); p != NULL && n < 16;
         p = strtok_r(NULL, " \t\r\n", &save)) {
        tok[n++] = p;
    }
    if (n == 0) {
        return;
    }
    if (strcmp(tok[0], "fail") == 0 || strcmp(tok[0], "block") == 0) {
        struct sh_rule *r;
        int fail = tok[0][0] == 'f';
        size_t first_opt = fail ? 3 : 2;

        if (n < first_opt || c->nrules >= SH_MAX_RULES) {
            warn("bad or too many rules: '%s'", tok[0]);
            return;
        }
        r = &c->rules[c->nrules];
        memset(r, 0, sizeof(*r));
        r->kind = fail ? RULE_FAIL : RULE_BLOCK;
        snprintf(r->fn, sizeof(r->fn), "%s", tok[1]);
        r->times = SH_FOREVER;
        r->max_secs = SH_BLOCK_MAX_DEFAULT;
        if (fail && !ckr_parse(tok[2], &r->rv)) {
            warn("unknown return value '%s'", tok[2]);
            return;
        }
        for (i = first_opt; i < n; i++) {
            unsigned long v;

            if (strncmp(tok[i], "at=", 3) == 0 && parse_num(tok[i] + 3, &v)
                && v > 0) {
                r->at = v;
                if (r->times == SH_FOREVER) {
                    r->times = 1;
                }
            } else if (strncmp(tok[i], "times=", 6) == 0
                       && parse_num(tok[i] + 6, &v) && v > 0) {
                r->times = v;
            } else if (strcmp(tok[i], "once") == 0) {
                r->times = 1;
            } else if (strncmp(tok[i], "max=", 4) == 0
                       && parse_num(tok[i] + 4, &v) && v > 0 && v < 3600) {
                r->max_secs = (unsigned int)v;
            } else if (strncmp(tok[i], "do=", 3) == 0
                       && (int)action_parse(tok[i] + 3) >= 0) {
                r->action = action_parse(tok[i] + 3);
            } else {
                warn("bad option '%s' in rule for %s", tok[i], r->fn);
                return;
            }
        }
        if (r->at == 0 && r->times != SH_FOREVER) {
            r->at = 1;
        }
        c->nrules++;
    } else if (strcmp(tok[0], "removed") == 0) {
        c->removed = 1;
        c->removed_rv = CKR_DEVICE_REMOVED;
        if (n > 1 && !ckr_parse(tok[1], &c->removed_rv)) {
            warn("unknown return value '%s'", tok[1]);
        }
    } else if (strcmp(tok[0], "tokenflags") == 0) {
        for (i = 1; i < n; i++) {
            CK_FLAGS f;
            char *name = tok[i];
            int clear = 0;

            if (*name == '+' || *name == '-') {
                clear = *name == '-';
                name++;
            }
            if (!ckf_parse(name, &f)) {
                warn("unknown token flag '%s'", name);
                continue;
            }
            if (clear) {
                c->flags_clear |= f;
            } else {
                c->flags_set |= f;
            }
        }
    } else if (strcmp(tok[0], "hide") == 0) {
        for (i = 1; i < n && c->nhidden < SH_MAX_HIDDEN; i++) {
            CK_MECHANISM_TYPE m;

            if (!ckm_parse(tok[i], &m)) {
                warn("unknown mechanism '%s'", tok[i]);
                continue;
            }
            c->hidden[c->nhidden++] = m;
        }
    } else {
        warn("unknown rule '%s'", tok[0]);
    }
}

static void parse_text(struct sh_config *c, char *text, const char *seps)
{
    char *save = NULL, *line;

    for (line = strtok_r(text, seps, &save); line != NULL;
         line = strtok_r(NULL, seps, &save)) {
        parse_line(c, line);
    }
}

/*
 * Re-reads the rules when the control file's text changed (compared by
 * content: a rewrite within one clock tick, or into a recycled inode, must
 * not go unnoticed). Called locked.
 */
static void reload_locked(void)
{
    static char last[16384];
    static int last_have = -1;
    struct sh_config c;
    char buf[sizeof(last)], envcopy[sizeof(env_rules)];
    int have = 0, was_removed = cfg.removed;
    ssize_t len = 0;

    if (control_path[0] != '\0') {
        int fd = open(control_path, O_RDONLY | O_CLOEXEC);
        ssize_t r;

        if (fd >= 0) {
            have = 1;
            while (len < (ssize_t)sizeof(buf) - 1
                   && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
                len += r;
            }
            close(fd);
        }
    }
    buf[len] = '\0';
    if (have == last_have && strcmp(buf, last) == 0) {
        return;
    }
    last_have = have;
    memcpy(last, buf, (size_t)len + 1);
    memset(&c, 0, sizeof(c));
    memcpy(envcopy, env_rules, sizeof(envcopy));
    parse_text(&c, envcopy, ";\n");
    parse_text(&c, buf, "\n");
    cfg = c;
    if (cfg.removed && !was_removed && real != NULL) {
        /* The device went away: everything the real module had open for
         * us is gone with it. */
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64, i;

        if (real->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK) {
            for (i = 0; i < n; i++) {
                real->C_CloseAllSessions(slots[i]);
            }
        }
    }
}

static void init_once(void)
{
    const char *s;

    s = getenv("KH_SHIM_LOG");
    if (s != NULL && *s != '\0') {
        logfd = open(s, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    s = getenv("KH_SHIM_CONTROL");
    if (s != NULL) {
        snprintf(control_path, sizeof(control_path), "%s", s);
    }
    s = getenv("KH_SHIM_FAULTS");
    if (s != NULL) {
        snprintf(env_rules, sizeof(env_rules), "%s", s);
    }
    s = getenv("KH_SHIM_MODULE");
    if (s == NULL || *s == '\0') {
        s = SH_DEFAULT_MODULE;
    }
    real_dl = dlopen(s, RTLD_NOW | RTLD_LOCAL);
    if (real_dl == NULL) {
        warn("cannot load the real module %s: %s", s, dlerror());
    } else {
        CK_C_GetFunctionList getfl;

        getfl = (CK_C_GetFunctionList)dlsym(real_dl, "C_GetFunctionList");
        if (getfl == NULL || getfl(&real) != CKR_OK) {
            warn("%s is not a PKCS#11 module", s);
            real = NULL;
        }
    }
    pthread_mutex_lock(&lock);
    reload_locked();
    pthread_mutex_unlock(&lock);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void atfork_release(void)
{
    pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void shim_load(void)
{
    pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

/* ---- the call gate -------------------------------------------------- */

struct sh_call {
    const char *fn;
    CK_SESSION_HANDLE session;
    CK_SLOT_ID slot;
    CK_MECHANISM_TYPE mech;
    int has_mech;
    int injected;
    char extra[192];
};

static void log_call(const struct sh_call *c, CK_RV rv, const char *what)
{
    char line[512], mb[32];
    int n;

    if (logfd < 0) {
        return;
    }
    n = snprintf(line, sizeof(line), "pid=%ld fn=%s", (long)getpid(), c->fn);
    if (c->session != SH_NO_SESSION) {
        n += snprintf(line + n, sizeof(line) - n, " session=%lu",
                      (unsigned long)c->session);
    }
    if (c->slot != SH_NO_SLOT) {
        n += snprintf(line + n, sizeof(line) - n, " slot=%lu",
                      (unsigned long)c->slot);
    }
    if (c->has_mech) {
        n += snprintf(line + n, sizeof(line) - n, " mech=%s",
                      ckm_str(c->mech, mb, sizeof(mb)));
    }
    if (c->extra[0] != '\0') {
        n += snprintf(line + n, sizeof(line) - n, " %s", c->extra);
    }
    if (what != NULL) {
        n += snprintf(line + n, sizeof(line) - n, " %s", what);
    } else {
        n += snprintf(line + n, sizeof(line) - n, " rv=%s%s",
                      ckr_str(rv),
                      c->injected ? " injected" : "");
    }
    if (n >= (int)sizeof(line) - 1) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    /* One write per line: O_APPEND keeps lines whole across processes. */
    if (write(logfd, line, n) < 0) {
        /* nothing to do: the log is best effort */
    }
}

static int mech_hidden_locked(CK_MECHANISM_TYPE m)
{
    size_t i;

    for (i = 0; i < cfg.nhidden; i++) {
        if (cfg.hidden[i] == m) {
            return 1;
        }
    }
    return 0;
}

static int blocks_fn_locked(const char *fn)
{
    size_t i;

    for (i = 0; i < cfg.nrules; i++) {
        if (cfg.rules[i].kind == RULE_BLOCK
            && strcmp(cfg.rules[i].fn, fn) == 0) {
            return 1;
        }
    }
    return 0;
}

static void block_call(struct sh_call *c, unsigned int max_secs)
{
    struct timespec start, now, nap = { 0, 20 * 1000 * 1000 };

    log_call(c, CKR_OK, "blocked");
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int still;

        nanosleep(&nap, NULL);
        pthread_mutex_lock(&lock);
        reload_locked();
        still = blocks_fn_locked(c->fn);
        pthread_mutex_unlock(&lock);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!still || now.tv_sec - start.tv_sec >= (time_t)max_secs) {
            break;
        }
    }
    log_call(c, CKR_OK, "released");
}

static void do_action(enum sh_action a, CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;

    switch (a) {
    case ACT_CLOSE:
        if (s != SH_NO_SESSION) {
            real->C_CloseSession(s);
        }
        break;
    case ACT_LOGOUT:
        if (s != SH_NO_SESSION) {
            real->C_Logout(s);
        }
        break;
    case ACT_CLOSEALL:
        if (s != SH_NO_SESSION && real->C_GetSessionInfo(s, &info) == CKR_OK) {
            real->C_CloseAllSessions(info.slotID);
        }
        break;
    case ACT_FINALIZE:
        real->C_Finalize(NULL);
        break;
    default:
        break;
    }
}

/*
 * Decides a call's fate before it reaches the real module. Returns 1 when
 * the call must not be forwarded (*rv holds the answer), 0 to forward.
 */
static int gate(struct sh_call *c, CK_RV *rv)
{
    size_t i;
    int slot_call = c->session == SH_NO_SESSION;
    unsigned int block_secs = 0;
    enum sh_action act = ACT_NONE;
    int hit = 0;

    pthread_once(&once, init_once);
    if (real == NULL) {
        *rv = CKR_GENERAL_ERROR;
        return 1;
    }
    pthread_mutex_lock(&lock);
    reload_locked();
    for (i = 0; i < cfg.nrules; i++) {
        struct sh_rule *r = &cfg.rules[i];
        int fires;

        if (strcmp(r->fn, c->fn) != 0) {
            continue;
        }
        r->seen++;
        fires = r->at == 0
                || (r->seen >= r->at && r->seen - r->at < r->times);
        if (!fires || hit) {
            continue;
        }
        if (r->kind == RULE_BLOCK) {
            if (block_secs == 0) {
                block_secs = r->max_secs;
            }
            continue;
        }
        *rv = r->rv;
        act = r->action;
        hit = 1;
    }
    if (!hit && cfg.removed && c->slot != SH_NO_SLOT && slot_call) {
        *rv = CKR_TOKEN_NOT_PRESENT;
        hit = 1;
    } else if (!hit && cfg.removed && !slot_call) {
        *rv = cfg.removed_rv;
        hit = 1;
    }
    if (!hit && c->has_mech && mech_hidden_locked(c->mech)) {
        *rv = CKR_MECHANISM_INVALID;
        hit = 1;
    }
    pthread_mutex_unlock(&lock);
    if (hit) {
        c->injected = 1;
        if (act != ACT_NONE) {
            do_action(act, c->session);
        }
        return 1;
    }
    if (block_secs > 0) {
        block_call(c, block_secs);
    }
    return 0;
}

static CK_RV done(struct sh_call *c, CK_RV rv)
{
    log_call(c, rv, NULL);
    return rv;
}

#define SESSION_CALL(name, s) \
    struct sh_call c = { name, (s), SH_NO_SLOT, 0, 0, 0, "" }
#define SLOT_CALL(name, slot) \
    struct sh_call c = { name, SH_NO_SESSION, (slot), 0, 0, 0, "" }
#define MECH_CALL(name, s, m)                                               \
    struct sh_call c = { name, (s), SH_NO_SLOT, (m) != NULL ? (m)->mechanism \
                         : 0, (m) != NULL, 0, "" }

/*
 * A real token ends an operation when its final call fails. Injected
 * failures are not seen by the real module, so finish its operation here
 * (into a scratch buffer) to keep the two in step.
 */
static void finish_sign(CK_SESSION_HANDLE s)
{
    unsigned char buf[8192];
    CK_ULONG n = sizeof(buf);

    real->C_SignFinal(s, buf, &n);
}

static void finish_decrypt(CK_SESSION_HANDLE s)
{
    unsigned char buf[8192];
    CK_ULONG n = sizeof(buf);

    real->C_DecryptFinal(s, buf, &n);
}

static void finish_encrypt(CK_SESSION_HANDLE s)
{
    unsigned char buf[8192];
    CK_ULONG n = sizeof(buf);

    real->C_EncryptFinal(s, buf, &n);
}

static void finish_digest(CK_SESSION_HANDLE s)
{
    unsigned char buf[512];
    CK_ULONG n = sizeof(buf);

    real->C_DigestFinal(s, buf, &n);
}

static void finish_verify(CK_SESSION_HANDLE s)
{
    unsigned char sig[1] = { 0 };

    real->C_VerifyFinal(s, sig, 0);
}

/* ---- general purpose ------------------------------------------------- */

static CK_RV sh_Initialize(CK_VOID_PTR args)
{
    SLOT_CALL("C_Initialize", SH_NO_SLOT);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_Initialize(args));
}

static CK_RV sh_Finalize(CK_VOID_PTR reserved)
{
    SLOT_CALL("C_Finalize", SH_NO_SLOT);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_Finalize(reserved));
}

static CK_RV sh_GetInfo(CK_INFO_PTR info)
{
    SLOT_CALL("C_GetInfo", SH_NO_SLOT);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetInfo(info));
}

static CK_RV sh_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

/* ---- slots and tokens ------------------------------------------------ */

static CK_RV sh_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list,
                            CK_ULONG_PTR count)
{
    SLOT_CALL("C_GetSlotList", SH_NO_SLOT);
    CK_RV rv;
    int removed;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    pthread_mutex_lock(&lock);
    removed = cfg.removed;
    pthread_mutex_unlock(&lock);
    if (removed && present) {
        /* No token is present while the device is away. */
        *count = 0;
        c.injected = 1;
        return done(&c, CKR_OK);
    }
    return done(&c, real->C_GetSlotList(present, list, count));
}

static CK_RV sh_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    SLOT_CALL("C_GetSlotInfo", slot);
    CK_RV rv;
    int removed;

    /* A slot stays (the reader is there); only its token may be gone. */
    c.slot = SH_NO_SLOT;
    if (gate(&c, &rv)) {
        c.slot = slot;
        return done(&c, rv);
    }
    c.slot = slot;
    rv = real->C_GetSlotInfo(slot, info);
    pthread_mutex_lock(&lock);
    removed = cfg.removed;
    pthread_mutex_unlock(&lock);
    if (rv == CKR_OK && removed) {
        info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
        c.injected = 1;
    }
    return done(&c, rv);
}

static CK_RV sh_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    SLOT_CALL("C_GetTokenInfo", slot);
    CK_RV rv;
    CK_FLAGS set, clear;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    rv = real->C_GetTokenInfo(slot, info);
    pthread_mutex_lock(&lock);
    set = cfg.flags_set;
    clear = cfg.flags_clear;
    pthread_mutex_unlock(&lock);
    if (rv == CKR_OK && (set | clear) != 0) {
        info->flags = (info->flags | set) & ~clear;
        snprintf(c.extra, sizeof(c.extra), "flags=0x%lx",
                 (unsigned long)info->flags);
        c.injected = 1;
    }
    return done(&c, rv);
}

static CK_RV sh_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot,
                                 CK_VOID_PTR reserved)
{
    SLOT_CALL("C_WaitForSlotEvent", SH_NO_SLOT);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_WaitForSlotEvent(flags, slot, reserved));
}

static CK_RV sh_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                                 CK_ULONG_PTR count)
{
    SLOT_CALL("C_GetMechanismList", slot);
    CK_MECHANISM_TYPE all[512];
    CK_ULONG n = 512, i, kept = 0;
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    if (count == NULL) {
        return done(&c, CKR_ARGUMENTS_BAD);
    }
    rv = real->C_GetMechanismList(slot, all, &n);
    if (rv != CKR_OK) {
        return done(&c, rv);
    }
    pthread_mutex_lock(&lock);
    for (i = 0; i < n; i++) {
        if (mech_hidden_locked(all[i])) {
            c.injected = 1;
            continue;
        }
        all[kept++] = all[i];
    }
    pthread_mutex_unlock(&lock);
    if (list == NULL) {
        *count = kept;
        return done(&c, CKR_OK);
    }
    if (*count < kept) {
        *count = kept;
        return done(&c, CKR_BUFFER_TOO_SMALL);
    }
    memcpy(list, all, kept * sizeof(all[0]));
    *count = kept;
    return done(&c, CKR_OK);
}

static CK_RV sh_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                 CK_MECHANISM_INFO_PTR info)
{
    SLOT_CALL("C_GetMechanismInfo", slot);
    CK_RV rv;

    c.mech = type;
    c.has_mech = 1;
    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetMechanismInfo(slot, type, info));
}

static CK_RV sh_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len,
                          CK_UTF8CHAR_PTR label)
{
    SLOT_CALL("C_InitToken", slot);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_InitToken(slot, pin, len, label));
}

static CK_RV sh_InitPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    SESSION_CALL("C_InitPIN", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_InitPIN(s, pin, len));
}

static CK_RV sh_SetPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR oldpin,
                       CK_ULONG oldlen, CK_UTF8CHAR_PTR newpin,
                       CK_ULONG newlen)
{
    SESSION_CALL("C_SetPIN", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SetPIN(s, oldpin, oldlen, newpin, newlen));
}

/* ---- sessions --------------------------------------------------------- */

static CK_RV sh_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app,
                            CK_NOTIFY notify, CK_SESSION_HANDLE_PTR s)
{
    SLOT_CALL("C_OpenSession", slot);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    rv = real->C_OpenSession(slot, flags, app, notify, s);
    if (rv == CKR_OK) {
        snprintf(c.extra, sizeof(c.extra), "new=%lu", (unsigned long)*s);
    }
    return done(&c, rv);
}

static CK_RV sh_CloseSession(CK_SESSION_HANDLE s)
{
    SESSION_CALL("C_CloseSession", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_CloseSession(s));
}

static CK_RV sh_CloseAllSessions(CK_SLOT_ID slot)
{
    SLOT_CALL("C_CloseAllSessions", slot);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_CloseAllSessions(slot));
}

static CK_RV sh_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
    SESSION_CALL("C_GetSessionInfo", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetSessionInfo(s, info));
}

static CK_RV sh_GetOperationState(CK_SESSION_HANDLE s, CK_BYTE_PTR st,
                                  CK_ULONG_PTR len)
{
    SESSION_CALL("C_GetOperationState", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetOperationState(s, st, len));
}

static CK_RV sh_SetOperationState(CK_SESSION_HANDLE s, CK_BYTE_PTR st,
                                  CK_ULONG len, CK_OBJECT_HANDLE ek,
                                  CK_OBJECT_HANDLE ak)
{
    SESSION_CALL("C_SetOperationState", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SetOperationState(s, st, len, ek, ak));
}

static CK_RV sh_Login(CK_SESSION_HANDLE s, CK_USER_TYPE user,
                      CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    SESSION_CALL("C_Login", s);
    CK_RV rv;
    int locked;

    /* The user type is logged; the PIN never is, not even its length. */
    snprintf(c.extra, sizeof(c.extra), "user=%s",
             user == CKU_SO ? "CKU_SO"
             : user == CKU_USER ? "CKU_USER" : "CKU_CONTEXT_SPECIFIC");
    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    pthread_mutex_lock(&lock);
    locked = (cfg.flags_set & CKF_USER_PIN_LOCKED) != 0;
    pthread_mutex_unlock(&lock);
    if (locked && user == CKU_USER) {
        c.injected = 1;
        return done(&c, CKR_PIN_LOCKED);
    }
    return done(&c, real->C_Login(s, user, pin, len));
}

static CK_RV sh_Logout(CK_SESSION_HANDLE s)
{
    SESSION_CALL("C_Logout", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_Logout(s));
}

/* ---- objects ---------------------------------------------------------- */

static CK_RV sh_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t,
                             CK_ULONG n, CK_OBJECT_HANDLE_PTR o)
{
    SESSION_CALL("C_CreateObject", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_CreateObject(s, t, n, o));
}

static CK_RV sh_CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                           CK_ATTRIBUTE_PTR t, CK_ULONG n,
                           CK_OBJECT_HANDLE_PTR no)
{
    SESSION_CALL("C_CopyObject", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_CopyObject(s, o, t, n, no));
}

static CK_RV sh_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    SESSION_CALL("C_DestroyObject", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DestroyObject(s, o));
}

static CK_RV sh_GetObjectSize(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                              CK_ULONG_PTR size)
{
    SESSION_CALL("C_GetObjectSize", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetObjectSize(s, o, size));
}

static CK_RV sh_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                                  CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    SESSION_CALL("C_GetAttributeValue", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetAttributeValue(s, o, t, n));
}

static CK_RV sh_SetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                                  CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    SESSION_CALL("C_SetAttributeValue", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SetAttributeValue(s, o, t, n));
}

static CK_RV sh_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t,
                                CK_ULONG n)
{
    SESSION_CALL("C_FindObjectsInit", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_FindObjectsInit(s, t, n));
}

static CK_RV sh_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o,
                            CK_ULONG max, CK_ULONG_PTR n)
{
    SESSION_CALL("C_FindObjects", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    rv = real->C_FindObjects(s, o, max, n);
    if (rv == CKR_OK) {
        snprintf(c.extra, sizeof(c.extra), "found=%lu", (unsigned long)*n);
    }
    return done(&c, rv);
}

static CK_RV sh_FindObjectsFinal(CK_SESSION_HANDLE s)
{
    SESSION_CALL("C_FindObjectsFinal", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_FindObjectsFinal(s));
}

/* ---- encryption and decryption --------------------------------------- */

static CK_RV sh_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                            CK_OBJECT_HANDLE k)
{
    MECH_CALL("C_EncryptInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_EncryptInit(s, m, k));
}

static CK_RV sh_Encrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen,
                        CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_Encrypt", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_encrypt(s);
        return done(&c, rv);
    }
    return done(&c, real->C_Encrypt(s, in, inlen, out, outlen));
}

static CK_RV sh_EncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                              CK_ULONG inlen, CK_BYTE_PTR out,
                              CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_EncryptUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_encrypt(s);
        return done(&c, rv);
    }
    return done(&c, real->C_EncryptUpdate(s, in, inlen, out, outlen));
}

static CK_RV sh_EncryptFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                             CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_EncryptFinal", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_encrypt(s);
        return done(&c, rv);
    }
    return done(&c, real->C_EncryptFinal(s, out, outlen));
}

static CK_RV sh_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                            CK_OBJECT_HANDLE k)
{
    MECH_CALL("C_DecryptInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DecryptInit(s, m, k));
}

static CK_RV sh_Decrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen,
                        CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_Decrypt", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        unsigned char buf[8192];
        CK_ULONG n = sizeof(buf);

        real->C_Decrypt(s, in, inlen, buf, &n);
        return done(&c, rv);
    }
    return done(&c, real->C_Decrypt(s, in, inlen, out, outlen));
}

static CK_RV sh_DecryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                              CK_ULONG inlen, CK_BYTE_PTR out,
                              CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_DecryptUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_decrypt(s);
        return done(&c, rv);
    }
    return done(&c, real->C_DecryptUpdate(s, in, inlen, out, outlen));
}

static CK_RV sh_DecryptFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                             CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_DecryptFinal", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_decrypt(s);
        return done(&c, rv);
    }
    return done(&c, real->C_DecryptFinal(s, out, outlen));
}

/* ---- digests ---------------------------------------------------------- */

static CK_RV sh_DigestInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m)
{
    MECH_CALL("C_DigestInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DigestInit(s, m));
}

static CK_RV sh_Digest(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen,
                       CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_Digest", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_digest(s);
        return done(&c, rv);
    }
    return done(&c, real->C_Digest(s, in, inlen, out, outlen));
}

static CK_RV sh_DigestUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                             CK_ULONG inlen)
{
    SESSION_CALL("C_DigestUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_digest(s);
        return done(&c, rv);
    }
    return done(&c, real->C_DigestUpdate(s, in, inlen));
}

static CK_RV sh_DigestKey(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    SESSION_CALL("C_DigestKey", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_digest(s);
        return done(&c, rv);
    }
    return done(&c, real->C_DigestKey(s, k));
}

static CK_RV sh_DigestFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                            CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_DigestFinal", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_digest(s);
        return done(&c, rv);
    }
    return done(&c, real->C_DigestFinal(s, out, outlen));
}

/* ---- signatures -------------------------------------------------------- */

static CK_RV sh_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                         CK_OBJECT_HANDLE k)
{
    MECH_CALL("C_SignInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SignInit(s, m, k));
}

static CK_RV sh_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen,
                     CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
    SESSION_CALL("C_Sign", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        unsigned char buf[8192];
        CK_ULONG n = sizeof(buf);

        real->C_Sign(s, in, inlen, buf, &n);
        return done(&c, rv);
    }
    return done(&c, real->C_Sign(s, in, inlen, sig, siglen));
}

static CK_RV sh_SignUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen)
{
    SESSION_CALL("C_SignUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_sign(s);
        return done(&c, rv);
    }
    return done(&c, real->C_SignUpdate(s, in, inlen));
}

static CK_RV sh_SignFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR sig,
                          CK_ULONG_PTR siglen)
{
    SESSION_CALL("C_SignFinal", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_sign(s);
        return done(&c, rv);
    }
    return done(&c, real->C_SignFinal(s, sig, siglen));
}

static CK_RV sh_SignRecoverInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                CK_OBJECT_HANDLE k)
{
    MECH_CALL("C_SignRecoverInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SignRecoverInit(s, m, k));
}

static CK_RV sh_SignRecover(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                            CK_ULONG inlen, CK_BYTE_PTR sig,
                            CK_ULONG_PTR siglen)
{
    SESSION_CALL("C_SignRecover", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SignRecover(s, in, inlen, sig, siglen));
}

static CK_RV sh_VerifyInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                           CK_OBJECT_HANDLE k)
{
    MECH_CALL("C_VerifyInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_VerifyInit(s, m, k));
}

static CK_RV sh_Verify(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen,
                       CK_BYTE_PTR sig, CK_ULONG siglen)
{
    SESSION_CALL("C_Verify", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        real->C_Verify(s, in, inlen, sig, siglen);
        return done(&c, rv);
    }
    return done(&c, real->C_Verify(s, in, inlen, sig, siglen));
}

static CK_RV sh_VerifyUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                             CK_ULONG inlen)
{
    SESSION_CALL("C_VerifyUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_verify(s);
        return done(&c, rv);
    }
    return done(&c, real->C_VerifyUpdate(s, in, inlen));
}

static CK_RV sh_VerifyFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR sig,
                            CK_ULONG siglen)
{
    SESSION_CALL("C_VerifyFinal", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        finish_verify(s);
        return done(&c, rv);
    }
    return done(&c, real->C_VerifyFinal(s, sig, siglen));
}

static CK_RV sh_VerifyRecoverInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                  CK_OBJECT_HANDLE k)
{
    MECH_CALL("C_VerifyRecoverInit", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_VerifyRecoverInit(s, m, k));
}

static CK_RV sh_VerifyRecover(CK_SESSION_HANDLE s, CK_BYTE_PTR sig,
                              CK_ULONG siglen, CK_BYTE_PTR out,
                              CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_VerifyRecover", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_VerifyRecover(s, sig, siglen, out, outlen));
}

/* ---- dual-function ---------------------------------------------------- */

static CK_RV sh_DigestEncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                    CK_ULONG inlen, CK_BYTE_PTR out,
                                    CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_DigestEncryptUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DigestEncryptUpdate(s, in, inlen, out, outlen));
}

static CK_RV sh_DecryptDigestUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                    CK_ULONG inlen, CK_BYTE_PTR out,
                                    CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_DecryptDigestUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DecryptDigestUpdate(s, in, inlen, out, outlen));
}

static CK_RV sh_SignEncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                  CK_ULONG inlen, CK_BYTE_PTR out,
                                  CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_SignEncryptUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SignEncryptUpdate(s, in, inlen, out, outlen));
}

static CK_RV sh_DecryptVerifyUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                    CK_ULONG inlen, CK_BYTE_PTR out,
                                    CK_ULONG_PTR outlen)
{
    SESSION_CALL("C_DecryptVerifyUpdate", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DecryptVerifyUpdate(s, in, inlen, out, outlen));
}

/* ---- keys --------------------------------------------------------------- */

static CK_RV sh_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                            CK_ATTRIBUTE_PTR t, CK_ULONG n,
                            CK_OBJECT_HANDLE_PTR k)
{
    MECH_CALL("C_GenerateKey", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GenerateKey(s, m, t, n, k));
}

/*
 * The boolean attributes of a template as "TOKEN,SENSITIVE,!EXTRACTABLE":
 * enough to prove what a key was created with, and never a value that
 * could be secret.
 */
static void describe_bools(char *out, size_t outlen, const char *prefix,
                           CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    static const struct {
        CK_ATTRIBUTE_TYPE type;
        const char *name;
    } names[] = {
        { CKA_TOKEN, "TOKEN" }, { CKA_PRIVATE, "PRIVATE" },
        { CKA_SENSITIVE, "SENSITIVE" }, { CKA_EXTRACTABLE, "EXTRACTABLE" },
        { CKA_SIGN, "SIGN" }, { CKA_DECRYPT, "DECRYPT" },
        { CKA_DERIVE, "DERIVE" }, { CKA_UNWRAP, "UNWRAP" },
        { CKA_WRAP, "WRAP" }, { CKA_ENCRYPT, "ENCRYPT" },
        { CKA_VERIFY, "VERIFY" }, { CKA_MODIFIABLE, "MODIFIABLE" },
    };
    size_t used = strlen(out), i, j;
    int first = 1;

    used += snprintf(out + used, outlen - used, "%s%s=", used ? " " : "",
                     prefix);
    for (i = 0; t != NULL && i < n && used < outlen; i++) {
        for (j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
            if (t[i].type == names[j].type && t[i].pValue != NULL
                && t[i].ulValueLen == sizeof(CK_BBOOL)) {
                used += snprintf(out + used, outlen - used, "%s%s%s",
                                 first ? "" : ",",
                                 *(CK_BBOOL *)t[i].pValue ? "" : "!",
                                 names[j].name);
                first = 0;
            }
        }
    }
    if (used >= outlen) {
        out[outlen - 1] = '\0';
    }
}

static CK_RV sh_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                CK_ATTRIBUTE_PTR pubt, CK_ULONG pubn,
                                CK_ATTRIBUTE_PTR privt, CK_ULONG privn,
                                CK_OBJECT_HANDLE_PTR pub,
                                CK_OBJECT_HANDLE_PTR priv)
{
    MECH_CALL("C_GenerateKeyPair", s, m);
    CK_RV rv;

    describe_bools(c.extra, sizeof(c.extra), "pub", pubt, pubn);
    describe_bools(c.extra, sizeof(c.extra), "priv", privt, privn);
    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GenerateKeyPair(s, m, pubt, pubn, privt, privn,
                                            pub, priv));
}

static CK_RV sh_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                        CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE k,
                        CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    MECH_CALL("C_WrapKey", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_WrapKey(s, m, wk, k, out, outlen));
}

static CK_RV sh_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                          CK_OBJECT_HANDLE uk, CK_BYTE_PTR in, CK_ULONG inlen,
                          CK_ATTRIBUTE_PTR t, CK_ULONG n,
                          CK_OBJECT_HANDLE_PTR k)
{
    MECH_CALL("C_UnwrapKey", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_UnwrapKey(s, m, uk, in, inlen, t, n, k));
}

static CK_RV sh_DeriveKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                          CK_OBJECT_HANDLE bk, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                          CK_OBJECT_HANDLE_PTR k)
{
    MECH_CALL("C_DeriveKey", s, m);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_DeriveKey(s, m, bk, t, n, k));
}

/* ---- random and legacy ----------------------------------------------- */

static CK_RV sh_SeedRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG n)
{
    SESSION_CALL("C_SeedRandom", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_SeedRandom(s, seed, n));
}

static CK_RV sh_GenerateRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                               CK_ULONG n)
{
    SESSION_CALL("C_GenerateRandom", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GenerateRandom(s, out, n));
}

static CK_RV sh_GetFunctionStatus(CK_SESSION_HANDLE s)
{
    SESSION_CALL("C_GetFunctionStatus", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_GetFunctionStatus(s));
}

static CK_RV sh_CancelFunction(CK_SESSION_HANDLE s)
{
    SESSION_CALL("C_CancelFunction", s);
    CK_RV rv;

    if (gate(&c, &rv)) {
        return done(&c, rv);
    }
    return done(&c, real->C_CancelFunction(s));
}

/* ---- the function list --------------------------------------------------- */

static CK_FUNCTION_LIST shim_list = {
    { 2, 40 },
    sh_Initialize, sh_Finalize, sh_GetInfo, sh_GetFunctionList,
    sh_GetSlotList, sh_GetSlotInfo, sh_GetTokenInfo, sh_GetMechanismList,
    sh_GetMechanismInfo, sh_InitToken, sh_InitPIN, sh_SetPIN,
    sh_OpenSession, sh_CloseSession, sh_CloseAllSessions, sh_GetSessionInfo,
    sh_GetOperationState, sh_SetOperationState, sh_Login, sh_Logout,
    sh_CreateObject, sh_CopyObject, sh_DestroyObject, sh_GetObjectSize,
    sh_GetAttributeValue, sh_SetAttributeValue, sh_FindObjectsInit,
    sh_FindObjects, sh_FindObjectsFinal, sh_EncryptInit, sh_Encrypt,
    sh_EncryptUpdate, sh_EncryptFinal, sh_DecryptInit, sh_Decrypt,
    sh_DecryptUpdate, sh_DecryptFinal, sh_DigestInit, sh_Digest,
    sh_DigestUpdate, sh_DigestKey, sh_DigestFinal, sh_SignInit, sh_Sign,
    sh_SignUpdate, sh_SignFinal, sh_SignRecoverInit, sh_SignRecover,
    sh_VerifyInit, sh_Verify, sh_VerifyUpdate, sh_VerifyFinal,
    sh_VerifyRecoverInit, sh_VerifyRecover, sh_DigestEncryptUpdate,
    sh_DecryptDigestUpdate, sh_SignEncryptUpdate, sh_DecryptVerifyUpdate,
    sh_GenerateKey, sh_GenerateKeyPair, sh_WrapKey, sh_UnwrapKey,
    sh_DeriveKey, sh_SeedRandom, sh_GenerateRandom, sh_GetFunctionStatus,
    sh_CancelFunction, sh_WaitForSlotEvent,
};

static CK_RV sh_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    pthread_once(&once, init_once);
    if (list == NULL) {
        return CKR_ARGUMENTS_BAD;
    }
    if (real == NULL) {
        return CKR_GENERAL_ERROR;
    }
    *list = &shim_list;
    return CKR_OK;
}

SH_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    return sh_GetFunctionList(list);
}
