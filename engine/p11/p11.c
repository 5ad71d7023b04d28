/* SPDX-License-Identifier: MIT */
/*
 * PKCS#11 modules, tokens, the per-token session pool, login, fork and
 * recovery.
 *
 * Locks are short: the registry lock guards the module list, a module lock
 * guards C_Initialize and its token list, a token lock guards the idle
 * session pool and the login. No lock is held across C_Sign/C_Decrypt, and
 * none across a passphrase callback (a callback may prompt, or fork).
 *
 * With SoftHSM, the calls that read its token files (C_Initialize, slot and
 * token enumeration, object look-ups) or rewrite them (C_Login) also run in
 * a section of the token-file lock shared with every other keyhold process
 * (kh_p11lock.h). That lock is always the innermost: a section covers one
 * call (or a retry of it) and takes no other lock.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "internal.h"
#include "kh_p11util.h"

unsigned int kh_p11_fork_gen = 1;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static KH_P11_MODULE *reg_modules;
static int reg_provs;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static unsigned int cur_gen(void)
{
    return __atomic_load_n(&kh_p11_fork_gen, __ATOMIC_ACQUIRE);
}

/*
 * In the child of a fork only the forking thread exists: locks another
 * thread held stay locked forever, so they are re-created here. The
 * generation bump makes the next use initialise the module again, as
 * PKCS#11 requires of a child process.
 */
static void atfork_child(void)
{
    KH_P11_MODULE *m;
    KH_P11_TOKEN *t;

    pthread_mutex_init(&reg_lock, NULL);
    for (m = reg_modules; m != NULL; m = m->next) {
        pthread_mutex_init(&m->lock, NULL);
        for (t = m->tokens; t != NULL; t = t->next) {
            pthread_mutex_init(&t->lock, NULL);
        }
    }
    __atomic_add_fetch(&kh_p11_fork_gen, 1, __ATOMIC_ACQ_REL);
}

static void atfork_register(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

void kh_p11_hex(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    size_t i;

    if (outlen == 0) {
        return;
    }
    out[0] = '\0';
    for (i = 0; i < len && 2 * i + 2 < outlen; i++) {
        snprintf(out + 2 * i, 3, "%02x", in[i]);
    }
}

void kh_p11_token_describe(const KH_P11_TOKEN *tok, char *buf, size_t len)
{
    snprintf(buf, len, "token '%s' (serial %s, %s %s, slot %lu)", tok->label,
             tok->serial, tok->manufacturer, tok->model,
             (unsigned long)tok->slot);
}

static void token_free(KH_P11_TOKEN *t)
{
    if (t->pin != NULL) {
        OPENSSL_secure_clear_free(t->pin, KH_PIN_MAX + 1);
    }
    OPENSSL_free(t->pool);
    pthread_mutex_destroy(&t->lock);
    OPENSSL_free(t);
}

static void module_free(KH_P11_MODULE *m)
{
    KH_P11_TOKEN *t, *n;

    for (t = m->tokens; t != NULL; t = n) {
        n = t->next;
        token_free(t);
    }
    /*
     * The module stays initialised and mapped. Provider teardown usually
     * runs inside OPENSSL_cleanup() at exit, and modules that use OpenSSL
     * themselves (SoftHSM) crash when C_Finalize runs then; another user
     * of the module in this process may also still need it. A provider
     * loaded again finds it initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED)
     * and still logged in.
     */
    OPENSSL_free(m->softhsm_conf);
    OPENSSL_free(m->lockdir);
    OPENSSL_free(m->path);
    pthread_mutex_destroy(&m->lock);
    OPENSSL_free(m);
}

KH_P11_MODULE *kh_p11_module_get(KH_PROV_CTX *prov, const char *path)
{
    KH_P11_MODULE *m;
    char err[512];
    const char *conf;

    if (path == NULL || *path == '\0') {
        path = KH_DEFAULT_P11_MODULE;
    }
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&reg_lock);
    for (m = reg_modules; m != NULL; m = m->next) {
        if (strcmp(m->path, path) == 0) {
            goto done;
        }
    }
    m = OPENSSL_zalloc(sizeof(*m));
    if (m == NULL) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        goto done;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->path = OPENSSL_strdup(path);
    if (m->path == NULL
        || !kh_p11_module_open(path, &m->dlh, &m->fl, err, sizeof(err))) {
        KH_raise(prov, KH_R_MODULE, "%s",
                 m->path == NULL ? "out of memory" : err);
        module_free(m);
        m = NULL;
        goto done;
    }
    /*
     * SoftHSM reads SOFTHSM2_CONF at each C_Initialize; a server whose
     * workers drop the environment would lose it in the child. Keep the
     * value seen now and put it back for the child's C_Initialize.
     */
    conf = getenv("SOFTHSM2_CONF");
    if (conf != NULL) {
        m->softhsm_conf = OPENSSL_strdup(conf);
    }
    /*
     * SoftHSM's token files are read and rewritten by every process using
     * them; keyhold's processes take turns on its token directory
     * (kh_p11lock.h). Found with the configuration seen now, as above.
     */
    if (kh_p11lock_is_softhsm(path)) {
        char dir[PATH_MAX];

        if (kh_p11lock_tokendir(dir, sizeof(dir))) {
            m->lockdir = OPENSSL_strdup(dir);
        }
        KH_debug("module %s: token-file lock on %s", path,
                 m->lockdir != NULL ? m->lockdir : "(none: no tokendir)");
    }
    m->next = reg_modules;
    reg_modules = m;
    KH_debug("module %s loaded", path);
done:
    pthread_mutex_unlock(&reg_lock);
    return m;
}

void kh_p11_init_prov(KH_PROV_CTX *prov)
{
    pthread_mutex_lock(&reg_lock);
    reg_provs++;
    pthread_mutex_unlock(&reg_lock);
}

void kh_p11_teardown(KH_PROV_CTX *prov)
{
    KH_P11_MODULE *m, *n;

    pthread_mutex_lock(&reg_lock);
    if (reg_provs > 0) {
        reg_provs--;
    }
    if (reg_provs > 0) {
        pthread_mutex_unlock(&reg_lock);
        return;
    }
    m = reg_modules;
    reg_modules = NULL;
    pthread_mutex_unlock(&reg_lock);
    for (; m != NULL; m = n) {
        n = m->next;
        module_free(m);
    }
}

void kh_p11_files_enter(KH_P11_MODULE *mod, KH_P11LOCK *lk, int exclusive)
{
    const char *dir = __atomic_load_n(&mod->lockdir, __ATOMIC_ACQUIRE);

    if (!kh_p11lock_enter(lk, dir, exclusive)) {
        /* Bounded wait: going on unserialised beats blocking a server;
         * SoftHSM's answers are then retried as before. */
        KH_debug("token-file lock on %s not taken in %d ms: going on "
                 "without it", dir, KH_P11LOCK_WAIT_MS);
    }
}

/*
 * With mod->lock held, after the first C_Initialize: SoftHSM's module under
 * a file name that does not say so is known by its library manufacturer;
 * the token-file lock applies from now on.
 */
static void lockdir_by_info(KH_P11_MODULE *mod)
{
    CK_INFO info;
    char manuf[33], dir[PATH_MAX], *d;

    mod->lock_checked = 1;
    if (mod->lockdir != NULL || mod->fl->C_GetInfo(&info) != CKR_OK) {
        return;
    }
    kh_p11_str(manuf, sizeof(manuf), info.manufacturerID,
               sizeof(info.manufacturerID));
    if (strncmp(manuf, "SoftHSM", 7) != 0
        || !kh_p11lock_tokendir(dir, sizeof(dir))) {
        return;
    }
    d = OPENSSL_strdup(dir);
    __atomic_store_n(&mod->lockdir, d, __ATOMIC_RELEASE);
    KH_debug("module %s is SoftHSM's: token-file lock on %s", mod->path,
             d != NULL ? d : "(out of memory)");
}

void kh_p11_files_leave(KH_P11LOCK *lk)
{
    kh_p11lock_leave(lk);
}

int kh_p11_module_ready(KH_PROV_CTX *prov, KH_P11_MODULE *mod)
{
    KH_P11LOCK lk;
    CK_C_INITIALIZE_ARGS args;
    unsigned int gen = cur_gen();
    CK_RV rv;
    int ok = 0;

    if (__atomic_load_n(&mod->gen, __ATOMIC_ACQUIRE) == gen) {
        return 1;
    }
    pthread_mutex_lock(&mod->lock);
    if (mod->gen == gen) {
        ok = 1;
        goto end;
    }
    if (mod->softhsm_conf != NULL && getenv("SOFTHSM2_CONF") == NULL) {
        setenv("SOFTHSM2_CONF", mod->softhsm_conf, 0);
    }
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    /* Modules built on OpenSSL (SoftHSM) leave their own errors behind
     * (a missing "rdrand" engine...); they are not the caller's. */
    ERR_set_mark();
    /* SoftHSM reads every token file here. */
    kh_p11_files_enter(mod, &lk, 0);
    rv = mod->fl->C_Initialize(&args);
    kh_p11_files_leave(&lk);
    ERR_pop_to_mark();
    if (rv == CKR_OK) {
        mod->we_initialized = 1;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        KH_raise(prov, KH_R_MODULE, "PKCS#11 module '%s': C_Initialize: %s",
                 mod->path, kh_ckr_name(rv));
        goto end;
    }
    __atomic_store_n(&mod->opened, 0, __ATOMIC_RELAXED);
    if (!mod->lock_checked) {
        lockdir_by_info(mod);
    }
    KH_debug("module %s initialised (generation %u, %s)", mod->path, gen,
             rv == CKR_OK ? "CKR_OK" : "already initialised");
    __atomic_store_n(&mod->gen, gen, __ATOMIC_RELEASE);
    ok = 1;
end:
    pthread_mutex_unlock(&mod->lock);
    return ok;
}

/*
 * SoftHSM reads its token files at C_Initialize; a token whose file another
 * process was rewriting at that moment (it does at every login) stays
 * missing for this module instance. While this process has opened no
 * session of the module and uses none of its tokens, initialising it again
 * is harmless: returns 1 when that was done.
 */
int kh_p11_module_rescan(KH_PROV_CTX *prov, KH_P11_MODULE *mod)
{
    int again = 0;

    pthread_mutex_lock(&mod->lock);
    if (mod->we_initialized && mod->tokens == NULL
        && __atomic_load_n(&mod->opened, __ATOMIC_ACQUIRE) == 0) {
        ERR_set_mark();
        (void)mod->fl->C_Finalize(NULL);
        ERR_pop_to_mark();
        mod->we_initialized = 0;
        __atomic_store_n(&mod->gen, 0, __ATOMIC_RELEASE);
        again = 1;
    }
    pthread_mutex_unlock(&mod->lock);
    return again && kh_p11_module_ready(prov, mod);
}

static int str_match(const char *want, const char *have)
{
    return want == NULL || strcmp(want, have) == 0;
}

/* With tok->lock held: forget a previous generation's sessions. */
static void token_sync_gen(KH_P11_TOKEN *tok)
{
    unsigned int gen = cur_gen();

    if (tok->gen == gen) {
        return;
    }
    /* The parent's session handles mean nothing here; not closed, as
     * closing them could close the parent's in some modules. */
    tok->npool = 0;
    tok->login_session = CK_INVALID_HANDLE;
    tok->logged_in = 0;
    tok->gen = gen;
}

static KH_P11_TOKEN *token_get(KH_PROV_CTX *prov, KH_P11_MODULE *mod,
                               CK_SLOT_ID slot, const CK_TOKEN_INFO *ti)
{
    KH_P11_TOKEN *t;
    char label[33], manuf[33], model[17], serial[17];

    kh_p11_str(label, sizeof(label), ti->label, sizeof(ti->label));
    kh_p11_str(manuf, sizeof(manuf), ti->manufacturerID,
               sizeof(ti->manufacturerID));
    kh_p11_str(model, sizeof(model), ti->model, sizeof(ti->model));
    kh_p11_str(serial, sizeof(serial), ti->serialNumber,
               sizeof(ti->serialNumber));
    pthread_mutex_lock(&mod->lock);
    for (t = mod->tokens; t != NULL; t = t->next) {
        if (strcmp(t->label, label) == 0 && strcmp(t->serial, serial) == 0
            && strcmp(t->manufacturer, manuf) == 0
            && strcmp(t->model, model) == 0) {
            break;
        }
    }
    if (t == NULL) {
        t = OPENSSL_zalloc(sizeof(*t));
        if (t == NULL) {
            KH_raise(prov, KH_R_MALLOC, "out of memory");
            goto end;
        }
        pthread_mutex_init(&t->lock, NULL);
        t->mod = mod;
        memcpy(t->label, label, sizeof(label));
        memcpy(t->manufacturer, manuf, sizeof(manuf));
        memcpy(t->model, model, sizeof(model));
        memcpy(t->serial, serial, sizeof(serial));
        t->login_session = CK_INVALID_HANDLE;
        t->gen = cur_gen();
        t->slot = slot;
        t->present = 1;
        t->flags = ti->flags;
        t->next = mod->tokens;
        mod->tokens = t;
        goto end;
    }
    pthread_mutex_lock(&t->lock);
    if (t->slot != slot || !t->present) {
        /* The token came back, maybe in another slot. */
        t->slot = slot;
        t->present = 1;
        t->npool = 0;
        t->login_session = CK_INVALID_HANDLE;
        t->logged_in = 0;
    }
    t->flags = ti->flags;
    pthread_mutex_unlock(&t->lock);
end:
    pthread_mutex_unlock(&mod->lock);
    return t;
}

int kh_p11_tokens_match(KH_PROV_CTX *prov, KH_P11_MODULE *mod,
                        const KH_P11_URI *u, KH_P11_TOKEN **found,
                        size_t maxfound, size_t *nfound)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG nslots = 0, i;
    CK_INFO info;
    KH_P11LOCK lk;
    CK_RV rv;
    int ok = 0, have_info = 0;
    size_t n = 0;

    *nfound = 0;
    if (!kh_p11_module_ready(prov, mod)) {
        return 0;
    }
    if (u->library_description != NULL || u->library_manufacturer != NULL
        || u->library_version != NULL) {
        char desc[33], manuf[33], ver[16];

        rv = mod->fl->C_GetInfo(&info);
        if (rv != CKR_OK) {
            KH_raise(prov, KH_R_MODULE, "C_GetInfo: %s", kh_ckr_name(rv));
            return 0;
        }
        have_info = 1;
        kh_p11_str(desc, sizeof(desc), info.libraryDescription,
                   sizeof(info.libraryDescription));
        kh_p11_str(manuf, sizeof(manuf), info.manufacturerID,
                   sizeof(info.manufacturerID));
        snprintf(ver, sizeof(ver), "%u.%u", info.libraryVersion.major,
                 info.libraryVersion.minor);
        if (!str_match(u->library_description, desc)
            || !str_match(u->library_manufacturer, manuf)
            || (u->library_version != NULL
                && strcmp(u->library_version, ver) != 0
                && !(strchr(u->library_version, '.') == NULL
                     && (unsigned)atoi(u->library_version)
                        == info.libraryVersion.major))) {
            return 1; /* no token of this library matches */
        }
    }
    (void)have_info;
    /* Sections call by call: token_get below takes the module lock. */
    kh_p11_files_enter(mod, &lk, 0);
    rv = mod->fl->C_GetSlotList(CK_TRUE, NULL, &nslots);
    kh_p11_files_leave(&lk);
    if (rv != CKR_OK) {
        KH_raise(prov, KH_R_MODULE, "C_GetSlotList: %s", kh_ckr_name(rv));
        return 0;
    }
    if (nslots == 0) {
        return 1;
    }
    slots = OPENSSL_malloc(sizeof(*slots) * nslots);
    if (slots == NULL) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        return 0;
    }
    kh_p11_files_enter(mod, &lk, 0);
    rv = mod->fl->C_GetSlotList(CK_TRUE, slots, &nslots);
    kh_p11_files_leave(&lk);
    if (rv != CKR_OK) {
        KH_raise(prov, KH_R_MODULE, "C_GetSlotList: %s", kh_ckr_name(rv));
        goto end;
    }
    for (i = 0; i < nslots; i++) {
        CK_TOKEN_INFO ti;
        char label[33], manuf[33], model[17], serial[17];
        KH_P11_TOKEN *t;

        if (u->slot_id >= 0 && (CK_SLOT_ID)u->slot_id != slots[i]) {
            continue;
        }
        if (u->slot_description != NULL || u->slot_manufacturer != NULL) {
            CK_SLOT_INFO si;
            char sdesc[65], smanuf[33];

            if (mod->fl->C_GetSlotInfo(slots[i], &si) != CKR_OK) {
                continue;
            }
            kh_p11_str(sdesc, sizeof(sdesc), si.slotDescription,
                       sizeof(si.slotDescription));
            kh_p11_str(smanuf, sizeof(smanuf), si.manufacturerID,
                       sizeof(si.manufacturerID));
            if (!str_match(u->slot_description, sdesc)
                || !str_match(u->slot_manufacturer, smanuf)) {
                continue;
            }
        }
        kh_p11_files_enter(mod, &lk, 0);
        rv = mod->fl->C_GetTokenInfo(slots[i], &ti);
        kh_p11_files_leave(&lk);
        if (rv != CKR_OK) {
            continue; /* removed meanwhile, or not initialised */
        }
        if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
            continue;
        }
        kh_p11_str(label, sizeof(label), ti.label, sizeof(ti.label));
        kh_p11_str(manuf, sizeof(manuf), ti.manufacturerID,
                   sizeof(ti.manufacturerID));
        kh_p11_str(model, sizeof(model), ti.model, sizeof(ti.model));
        kh_p11_str(serial, sizeof(serial), ti.serialNumber,
                   sizeof(ti.serialNumber));
        if (!str_match(u->token, label) || !str_match(u->manufacturer, manuf)
            || !str_match(u->model, model) || !str_match(u->serial, serial)) {
            continue;
        }
        t = token_get(prov, mod, slots[i], &ti);
        if (t == NULL) {
            goto end;
        }
        if (n < maxfound) {
            found[n] = t;
        }
        n++;
    }
    *nfound = n;
    ok = 1;
end:
    OPENSSL_free(slots);
    return ok;
}

/*
 * Finds the token again after it went away: same label, serial,
 * manufacturer and model, any slot (slot ids can change on re-plug).
 */
static int token_rediscover(KH_PROV_CTX *prov, KH_P11_TOKEN *tok)
{
    KH_P11_URI u;
    KH_P11_TOKEN *found[2];
    size_t n = 0;

    memset(&u, 0, sizeof(u));
    u.slot_id = -1;
    u.token = tok->label;
    u.serial = tok->serial;
    u.manufacturer = tok->manufacturer;
    u.model = tok->model;
    if (!kh_p11_tokens_match(prov, tok->mod, &u, found, 2, &n)) {
        return 0;
    }
    return n == 1 && found[0] == tok;
}

/* Opens a session (no lock held). */
static CK_RV open_session(KH_P11_TOKEN *tok, CK_SLOT_ID slot,
                          CK_SESSION_HANDLE *sess)
{
    CK_RV rv = tok->mod->fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL,
                                           NULL, sess);

    if (rv != CKR_OK) {
        tok->last_open_rv = rv;
    }
    return rv;
}

/*
 * Answers that, right after C_Initialize, mean "the module has not read
 * the token properly yet" rather than a real state: SoftHSM reads its token
 * files then, and a sibling process rewriting them (a worker logging in)
 * makes the slot, or the token's PIN, look missing. None spends a PIN try.
 */
static int is_lost_token(CK_RV rv)
{
    return rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_PRESENT
           || rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_RECOGNIZED
           || rv == CKR_USER_PIN_NOT_INITIALIZED;
}

/*
 * A module initialised moments ago (first use in a forked child) may not
 * see a token that another process is writing at the same time (SoftHSM
 * reads its token files at C_Initialize). While no session has been handed
 * since that C_Initialize, initialising again is harmless: do it and look
 * for the token again by its attributes. Returns 1 found, 0 not yet, -1
 * not allowed (sessions in use) or failed.
 */
static int module_fresh_reinit(KH_PROV_CTX *prov, KH_P11_TOKEN *tok)
{
    KH_P11_MODULE *mod = tok->mod;
    CK_C_INITIALIZE_ARGS args;
    KH_P11LOCK lk;
    CK_RV rv;
    int ok = 0;

    pthread_mutex_lock(&mod->lock);
    if (__atomic_load_n(&mod->opened, __ATOMIC_RELAXED) != 0) {
        pthread_mutex_unlock(&mod->lock);
        return -1;
    }
    ERR_set_mark();
    mod->fl->C_Finalize(NULL);
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    kh_p11_files_enter(mod, &lk, 0);
    rv = mod->fl->C_Initialize(&args);
    kh_p11_files_leave(&lk);
    ERR_pop_to_mark();
    ok = rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED;
    pthread_mutex_unlock(&mod->lock);
    KH_debug("module %s initialised again to find %s: %s", mod->path,
             tok->label, kh_ckr_name(rv));
    if (!ok) {
        return -1;
    }
    pthread_mutex_lock(&tok->lock);
    tok->npool = 0;
    tok->login_session = CK_INVALID_HANDLE;
    tok->logged_in = 0;
    tok->present = 0;
    pthread_mutex_unlock(&tok->lock);
    return token_rediscover(prov, tok);
}

/* Salted hash of a PIN, kept to recognise a PIN the token refused. */
static int pin_hash(KH_PROV_CTX *prov, KH_P11_TOKEN *tok, const char *pin,
                    size_t pinlen, unsigned char out[32])
{
    EVP_MD *md = kh_md_get(prov, NID_sha256);
    unsigned int len = 0;
    int ok;

    ok = md != NULL;
    if (ok) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();

        ok = c != NULL && EVP_DigestInit_ex2(c, md, NULL)
             && EVP_DigestUpdate(c, tok->pin_salt, sizeof(tok->pin_salt))
             && EVP_DigestUpdate(c, pin, pinlen)
             && EVP_DigestFinal_ex(c, out, &len) && len == 32;
        EVP_MD_CTX_free(c);
    }
    EVP_MD_free(md);
    return ok;
}

/*
 * With tok->lock held: log in with |pin|. Checks the PIN counters first
 * and never spends the last try. One C_Login, never a loop.
 */
static int login_locked(KH_PROV_CTX *prov, KH_P11_TOKEN *tok, const char *pin,
                        size_t pinlen)
{
    CK_FUNCTION_LIST_PTR fl = tok->mod->fl;
    CK_TOKEN_INFO ti;
    CK_SESSION_INFO si;
    unsigned char h[32];
    char desc[160];
    KH_P11LOCK lk;
    CK_RV rv;
    int i;

    kh_p11_token_describe(tok, desc, sizeof(desc));
    if (tok->login_session != CK_INVALID_HANDLE
        && fl->C_GetSessionInfo(tok->login_session, &si) != CKR_OK) {
        tok->login_session = CK_INVALID_HANDLE; /* stale */
    }
    if (tok->login_session == CK_INVALID_HANDLE) {
        rv = open_session(tok, tok->slot, &tok->login_session);
        if (rv != CKR_OK) {
            tok->login_session = CK_INVALID_HANDLE;
            KH_raise(prov, KH_R_SESSION, "%s: C_OpenSession: %s", desc,
                     kh_ckr_name(rv));
            return 0;
        }
    }
    /* Logged in already (by another user of the module in this process)? */
    if (fl->C_GetSessionInfo(tok->login_session, &si) == CKR_OK
        && (si.state == CKS_RO_USER_FUNCTIONS
            || si.state == CKS_RW_USER_FUNCTIONS)) {
        tok->logged_in = 1;
        return 1;
    }
    /* SoftHSM answers CKR_GENERAL_ERROR while another process rewrites the
     * token file (sibling workers logging in at once): a few short waits. */
    for (i = 0;; i++) {
        kh_p11_files_enter(tok->mod, &lk, 0);
        rv = fl->C_GetTokenInfo(tok->slot, &ti);
        kh_p11_files_leave(&lk);
        if (rv != CKR_GENERAL_ERROR || i >= 5) {
            break;
        }
        usleep(10000 * (i + 1));
    }
    if (rv != CKR_OK) {
        KH_raise(prov, KH_R_MODULE, "%s: C_GetTokenInfo: %s", desc,
                 kh_ckr_name(rv));
        return 0;
    }
    if (ti.flags & CKF_USER_PIN_LOCKED) {
        KH_raise(prov, KH_R_PIN_LOCKED,
                 "%s: user PIN is locked (CKR_PIN_LOCKED); unblock it with "
                 "the SO PIN", desc);
        return 0;
    }
    if (ti.flags & CKF_USER_PIN_FINAL_TRY) {
        KH_raise(prov, KH_R_PIN_FINAL_TRY,
                 "%s: only one PIN try left (CKF_USER_PIN_FINAL_TRY); not "
                 "logging in automatically, so a wrong PIN cannot lock the "
                 "token (log in once by hand with the right PIN)", desc);
        return 0;
    }
    if (pin == NULL) {
        KH_raise(prov, KH_R_NO_PIN,
                 "%s: login needed and no PIN source (use pin-source= in the "
                 "URI or the provider config)", desc);
        return 0;
    }
    if (tok->has_bad_pin && pin_hash(prov, tok, pin, pinlen, h)
        && CRYPTO_memcmp(h, tok->bad_pin, sizeof(h)) == 0) {
        /* The token refused this very PIN before: never spend a try on
         * it again (a server retrying each handshake would lock it). */
        KH_raise(prov, KH_R_LOGIN,
                 "%s: this PIN was already refused (CKR_PIN_INCORRECT); not "
                 "trying it again (fix the PIN source)", desc);
        OPENSSL_cleanse(h, sizeof(h));
        return 0;
    }
    /* CKR_GENERAL_ERROR and CKR_USER_PIN_NOT_INITIALIZED are also what
     * SoftHSM answers when it meets a token file another process is
     * rewriting (it rewrites it at every login); neither spends a PIN try.
     * A few short waits, then give up (a token really without a user PIN
     * costs 60 ms more to report). */
    for (i = 0;; i++) {
        ERR_set_mark();
        /* SoftHSM rewrites token.object at every login (PIN counters). */
        kh_p11_files_enter(tok->mod, &lk, 1);
        rv = fl->C_Login(tok->login_session, CKU_USER, (CK_UTF8CHAR_PTR)pin,
                         (CK_ULONG)pinlen);
        kh_p11_files_leave(&lk);
        ERR_pop_to_mark();
        if ((rv != CKR_GENERAL_ERROR && rv != CKR_USER_PIN_NOT_INITIALIZED)
            || i >= 3) {
            break;
        }
        usleep(10000 * (i + 1));
    }
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        tok->last_open_rv = rv;
    }
    if (rv == CKR_PIN_INCORRECT) {
        if (!tok->has_bad_pin) {
            RAND_bytes_ex(prov->libctx, tok->pin_salt, sizeof(tok->pin_salt),
                          0);
        }
        tok->has_bad_pin = pin_hash(prov, tok, pin, pinlen, tok->bad_pin);
    } else if (rv == CKR_OK) {
        tok->has_bad_pin = 0;
    }
    OPENSSL_cleanse(h, sizeof(h));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        const char *hint = kh_ckr_hint(rv);

        KH_raise(prov, KH_R_LOGIN, "%s: C_Login: %s%s%s%s", desc,
                 kh_ckr_name(rv), hint != NULL ? " (" : "",
                 hint != NULL ? hint : "", hint != NULL ? ")" : "");
        return 0;
    }
    tok->logged_in = 1;
    KH_debug("%s: logged in", desc);
    return 1;
}

int kh_p11_token_needs_login(KH_P11_TOKEN *tok)
{
    int need;

    pthread_mutex_lock(&tok->lock);
    token_sync_gen(tok);
    need = (tok->flags & CKF_LOGIN_REQUIRED) && !tok->logged_in;
    pthread_mutex_unlock(&tok->lock);
    return need;
}

/* Reads a PIN from the next source in order; 1 got one, 0 none, -1 error. */
static int pin_from_sources(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                            const KH_P11_URI *u,
                            OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                            char *pin, size_t pinsize, size_t *pinlen)
{
    char err[256];
    enum kh_pin_rc rc;

    if (u != NULL && u->pin_value != NULL) {
        size_t l = strlen(u->pin_value);

        if (l == 0 || l >= pinsize) {
            KH_raise(prov, KH_R_BAD_URI, "pin-value has a bad length");
            return -1;
        }
        memcpy(pin, u->pin_value, l + 1);
        *pinlen = l;
        return 1;
    }
    if (u != NULL && u->pin_source != NULL) {
        rc = kh_pin_read_file(u->pin_source, pin, pinsize, pinlen, err,
                              sizeof(err));
        if (rc != KH_PIN_OK) {
            KH_raise(prov, KH_R_NO_PIN, "URI pin-source: %s", err);
            return -1;
        }
        return 1;
    }
    if (prov->cfg_pin != NULL) {
        if (prov->cfg_pinlen >= pinsize) {
            return -1;
        }
        memcpy(pin, prov->cfg_pin, prov->cfg_pinlen + 1);
        *pinlen = prov->cfg_pinlen;
        return 1;
    }
    if (prov->pin_source != NULL) {
        rc = kh_pin_read_file(prov->pin_source, pin, pinsize, pinlen, err,
                              sizeof(err));
        if (rc != KH_PIN_OK) {
            KH_raise(prov, KH_R_NO_PIN, "provider pin-source: %s", err);
            return -1;
        }
        return 1;
    }
    if (pw_cb != NULL) {
        OSSL_PARAM params[2];
        char info[128];

        snprintf(info, sizeof(info), "PIN for token '%s'", tok->label);
        params[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_PASSPHRASE_PARAM_INFO, info, 0);
        params[1] = OSSL_PARAM_construct_end();
        *pinlen = 0;
        if (!pw_cb(pin, pinsize - 1, pinlen, params, pw_cbarg)) {
            KH_raise(prov, KH_R_NO_PIN, "no PIN given for token '%s'",
                     tok->label);
            return -1;
        }
        if (*pinlen == 0 || *pinlen >= pinsize) {
            KH_raise(prov, KH_R_NO_PIN, "empty PIN for token '%s'",
                     tok->label);
            return -1;
        }
        pin[*pinlen] = '\0';
        return 1;
    }
    return 0;
}

int kh_p11_token_login(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                       const KH_P11_URI *u, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                       void *pw_cbarg)
{
    char pin[KH_PIN_MAX + 1];
    size_t pinlen = 0;
    int ok = 0, got;

    if (!kh_p11_module_ready(prov, tok->mod)) {
        return 0;
    }
    pthread_mutex_lock(&tok->lock);
    token_sync_gen(tok);
    if (tok->logged_in || !(tok->flags & CKF_LOGIN_REQUIRED)) {
        pthread_mutex_unlock(&tok->lock);
        return 1;
    }
    if (tok->pin != NULL) {
        /* A PIN that worked before (this token, this process). */
        ok = login_locked(prov, tok, tok->pin, tok->pinlen);
        pthread_mutex_unlock(&tok->lock);
        return ok;
    }
    pthread_mutex_unlock(&tok->lock);

    /* No lock across PIN sources: the callback may prompt or fork. */
    got = pin_from_sources(prov, tok, u, pw_cb, pw_cbarg, pin, sizeof(pin),
                           &pinlen);
    if (got < 0) {
        goto end;
    }
    pthread_mutex_lock(&tok->lock);
    token_sync_gen(tok);
    if (tok->logged_in) {
        ok = 1;
    } else {
        ok = login_locked(prov, tok, got ? pin : NULL, pinlen);
    }
    if (ok && got && tok->pin == NULL) {
        /* Kept for a forked child or a recovered session only. */
        tok->pin = OPENSSL_secure_zalloc(KH_PIN_MAX + 1);
        if (tok->pin != NULL) {
            memcpy(tok->pin, pin, pinlen);
            tok->pinlen = pinlen;
        }
    }
    pthread_mutex_unlock(&tok->lock);
end:
    OPENSSL_cleanse(pin, sizeof(pin));
    return ok;
}

static CK_RV session_get_once(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                              CK_SESSION_HANDLE *sess)
{
    CK_SLOT_ID slot;
    CK_RV rv;

    if (!kh_p11_module_ready(prov, tok->mod)) {
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    pthread_mutex_lock(&tok->lock);
    token_sync_gen(tok);
    if (!tok->present) {
        pthread_mutex_unlock(&tok->lock);
        if (!token_rediscover(prov, tok)) {
            return CKR_TOKEN_NOT_PRESENT;
        }
        pthread_mutex_lock(&tok->lock);
        token_sync_gen(tok);
    }
    if (!tok->logged_in && tok->pin != NULL) {
        /* A kept PIN means this token wanted a login; its flags, read at a
         * bad moment after fork, are not trusted for that. */
        /* First use after fork or recovery: log in again, no prompt. */
        tok->last_open_rv = CKR_OK;
        if (!login_locked(prov, tok, tok->pin, tok->pinlen)) {
            rv = is_lost_token(tok->last_open_rv) ? tok->last_open_rv
                                                  : CKR_USER_NOT_LOGGED_IN;
            pthread_mutex_unlock(&tok->lock);
            return rv;
        }
    }
    if (tok->npool > 0) {
        *sess = tok->pool[--tok->npool];
        pthread_mutex_unlock(&tok->lock);
        return CKR_OK;
    }
    slot = tok->slot;
    pthread_mutex_unlock(&tok->lock);
    rv = open_session(tok, slot, sess);
    if (rv != CKR_OK) {
        KH_debug("C_OpenSession: %s", kh_ckr_name(rv));
    } else {
        __atomic_add_fetch(&tok->mod->opened, 1, __ATOMIC_RELAXED);
    }
    return rv;
}

CK_RV kh_p11_session_get(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                         CK_SESSION_HANDLE *sess)
{
    unsigned int gen = cur_gen();
    CK_RV rv;
    int attempt;

    /*
     * Every signature comes here: the common case (module initialised in
     * this process image, token present and logged in, a session in the
     * pool) is what session_get_once does first, minus the error marks
     * its recovery needs.
     */
    if (__atomic_load_n(&tok->mod->gen, __ATOMIC_ACQUIRE) == gen) {
        pthread_mutex_lock(&tok->lock);
        if (tok->gen == gen && tok->present && tok->npool > 0
            && (tok->logged_in || tok->pin == NULL)) {
            *sess = tok->pool[--tok->npool];
            pthread_mutex_unlock(&tok->lock);
            return CKR_OK;
        }
        pthread_mutex_unlock(&tok->lock);
    }
    /* Bounded: a few fresh initialisations, never a loop of logins. */
    for (attempt = 0;; attempt++) {
        ERR_set_mark();
        rv = session_get_once(prov, tok, sess);
        if (rv == CKR_OK || !is_lost_token(rv) || attempt >= 6
            || module_fresh_reinit(prov, tok) < 0) {
            ERR_clear_last_mark();
            return rv;
        }
        ERR_pop_to_mark();
        usleep(10000 * (attempt + 1));
    }
}

void kh_p11_session_put(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess)
{
    pthread_mutex_lock(&tok->lock);
    if (tok->gen != cur_gen()) {
        /* Opened before a fork in this process image: not ours to keep. */
        pthread_mutex_unlock(&tok->lock);
        return;
    }
    if (tok->npool == tok->cappool) {
        size_t ncap = tok->cappool == 0 ? 8 : tok->cappool * 2;
        CK_SESSION_HANDLE *np = OPENSSL_realloc(tok->pool,
                                                ncap * sizeof(*np));

        if (np == NULL) {
            pthread_mutex_unlock(&tok->lock);
            tok->mod->fl->C_CloseSession(sess);
            return;
        }
        tok->pool = np;
        tok->cappool = ncap;
    }
    tok->pool[tok->npool++] = sess;
    pthread_mutex_unlock(&tok->lock);
}

void kh_p11_session_drop(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess)
{
    /* Best effort: the handle may be dead already. */
    if (sess != CK_INVALID_HANDLE) {
        tok->mod->fl->C_CloseSession(sess);
    }
}

int kh_p11_recover(KH_PROV_CTX *prov, KH_P11_TOKEN *tok, CK_RV rv)
{
    KH_P11_MODULE *mod = tok->mod;
    int retry = 0;

    switch (rv) {
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        /* The module lost its state: initialise again, then every token
         * of it needs fresh sessions and a login. */
        pthread_mutex_lock(&mod->lock);
        __atomic_store_n(&mod->gen, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&mod->lock);
        if (!kh_p11_module_ready(prov, mod)) {
            return 0;
        }
        pthread_mutex_lock(&tok->lock);
        tok->npool = 0;
        tok->login_session = CK_INVALID_HANDLE;
        tok->logged_in = 0;
        pthread_mutex_unlock(&tok->lock);
        retry = 1;
        break;
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
        /* Other pooled sessions are likely gone too (C_CloseAllSessions,
         * token reset): start a fresh pool and login. */
        pthread_mutex_lock(&tok->lock);
        tok->npool = 0;
        if (tok->login_session != CK_INVALID_HANDLE) {
            CK_SESSION_INFO si;

            if (mod->fl->C_GetSessionInfo(tok->login_session, &si) != CKR_OK
                || (si.state != CKS_RO_USER_FUNCTIONS
                    && si.state != CKS_RW_USER_FUNCTIONS)) {
                tok->login_session = CK_INVALID_HANDLE;
                tok->logged_in = 0;
            }
        }
        pthread_mutex_unlock(&tok->lock);
        retry = 1;
        break;
    case CKR_USER_NOT_LOGGED_IN:
        pthread_mutex_lock(&tok->lock);
        tok->logged_in = 0;
        if (tok->pin != NULL) {
            retry = login_locked(prov, tok, tok->pin, tok->pinlen);
        }
        pthread_mutex_unlock(&tok->lock);
        break;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_SLOT_ID_INVALID:
    case CKR_DEVICE_ERROR:
        pthread_mutex_lock(&tok->lock);
        tok->present = 0;
        tok->npool = 0;
        tok->login_session = CK_INVALID_HANDLE;
        tok->logged_in = 0;
        pthread_mutex_unlock(&tok->lock);
        retry = 0;
        break;
    default:
        retry = 0;
        break;
    }
    KH_debug("recovery after %s: %s", kh_ckr_name(rv),
             retry ? "retrying once" : "no retry");
    return retry;
}
