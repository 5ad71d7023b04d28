/* SPDX-License-Identifier: MIT */
/*
 * The process's one ESAPI connection and the keys that use it.
 *
 * - One connection per process, opened on first use. Through a resource
 *   manager (/dev/tpmrm0, tpm2-abrmd) it stays open while keys exist. A TPM
 *   without one (swtpm's socket, a bare /dev/tpm0) serves one connection at
 *   a time and keeps transient objects until flushed: then an operation,
 *   or a burst of them, connects under a lock file, works and disconnects,
 *   so processes take turns (see tcti_is_exclusive; KEYHOLD_TPM_HOLD=0/1
 *   overrides); what it loaded stays loaded, as the lock file's record
 *   says ("the lease"); a burst ends when idle or when another waits.
 * - Every ESYS call runs under one mutex: an ESYS_CONTEXT is not
 *   thread-safe, and the TPM executes one command at a time anyway.
 * - Transient objects are few (swtpm has 3 slots). A loaded key stays
 *   loaded for speed; when the TPM reports TPM_RC_OBJECT_MEMORY the least
 *   recently used of this process's keys is flushed (its saved context
 *   makes the next load one command). The primary storage key is never
 *   left loaded: its saved context is loaded for a TPM2_Load and flushed.
 * - A lost connection (swtpm restarted, TCTI I/O error) or vanished handles
 *   (TPM reset) drop the connection and the loaded handles; the operation
 *   is tried once more on a fresh connection, then fails cleanly.
 * - A wrong auth value is never retried: the key remembers the failure and
 *   refuses further attempts in this process (dictionary-attack lockout).
 * - After fork() the child forgets the parent's connection (closing only
 *   its file descriptors; no TPM command on the shared socket) and the
 *   parent's loaded keys, and opens its own on first use.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "internal.h"
#include "kh_pin.h"

struct kh_tpm_key {
    int refs;
    uint32_t persistent;        /* 0x81xxxxxx, or 0: loaded from a blob */
    uint32_t parent;            /* blob only */
    int sealed;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;         /* blob only */
    TPM2B_NAME name;            /* persistent: checked on each reload */
    int empty_auth;
    int has_pcr_policy;
    TPML_PCR_SELECTION pcrs;
    TPM2B_AUTH auth;            /* wiped on free */
    int auth_failed;            /* sticky: a wrong auth is never retried */
    int pss_salt[4];            /* RSA-PSS salt the TPM was seen to make,
                                   per SHA-1/256/384/512; -1 unknown */
    unsigned long pss_epoch;    /* g.tpm_epoch the salts were seen in */
    /* Below: under g.lock only. */
    ESYS_TR tr;
    unsigned long gen;          /* connection generation tr belongs to */
    TPMS_CONTEXT *saved;        /* saved context of the loaded object */
    struct kh_tpm_key *prev, *next;  /* loaded transient keys, MRU first */
    TPM2_HANDLE handle;         /* TPM handle of the loaded transient */
    uint8_t *trser;             /* its ESYS_TR, serialized, for the next
                                   connection (persistent: name checked) */
    size_t trserlen;
    unsigned long epoch;        /* persistent: g.epoch trser was checked */
};

/*
 * The record kept in the lock file of a TPM without resource manager (see
 * "the lease" below): which keyhold process left which transient object
 * loaded, and whether an operation is under way.
 */
/* The TSS headers' TPM2_TRANSIENT_FIRST shifts a signed int too far. */
#define KH_TRANSIENT_FIRST 0x80000000u
#define LEASE_MAGIC "khtpmL01"
#define LEASE_MAX 32

struct lease_ent {
    uint64_t owner;             /* token of the process that loaded it */
    uint32_t pid;
    uint32_t handle;            /* transient handle, 0x80xxxxxx */
};

struct lease {
    char magic[8];
    uint64_t seq;               /* +1 at the start of every operation */
    uint32_t busy;              /* an operation is under way, or died */
    uint32_t n;
    struct lease_ent e[LEASE_MAX];
};

/*
 * Between operations that follow each other closely a process keeps the
 * lock and the connection (a burst), until it has been idle this long or
 * another keyhold process waits for the TPM.
 */
#define HOLD_IDLE_NS (3 * 1000000ull)

static struct {
    pthread_mutex_t lock;
    int configured;
    int explicit_tcti;
    int hold;                   /* keep the connection between operations */
    char tcti[512];
    char lockpath[600];         /* cross-process lock (no resource manager) */
    int lockfd;
    TSS2_TCTI_CONTEXT *tcti_ctx;
    ESYS_CONTEXT *esys;
    unsigned long gen;
    pid_t pid;
    int atfork;
    long keys;                  /* live key objects */
    TPMS_CONTEXT *primary;      /* saved owner-hierarchy storage key */
    int primary_rsa;            /* 1: the TPM has no ECC, RSA SRK used */
    struct kh_tpm_key *loaded;  /* MRU list of loaded transient keys */
    /* Sharing a TPM without resource manager: see "the lease" below. */
    uint64_t token;             /* this process in the lock file's record */
    pid_t token_pid;
    uint64_t seq;               /* the record's seq after our last start */
    int lease_trusted;          /* the lock file's record can be trusted */
    int leased;                 /* lock held and the record read */
    int sweep;                  /* a holder died mid-operation */
    int nforeign, nflushq;
    struct lease_ent foreign[LEASE_MAX];  /* live processes' objects */
    struct lease_ent flushq[LEASE_MAX];   /* abandoned objects to flush */
    unsigned long epoch;        /* +1 when other processes may have
                                   changed persistent handles */
    unsigned long tpm_epoch;    /* +1 when the TPM may have restarted */
    /* A burst (see HOLD_IDLE_NS): lock, record and connection kept. */
    int held;
    int no_hold;                /* at exit and release: never keep them */
    uint64_t last_op;
    int helper_on;              /* the thread that ends an idle burst */
    pthread_cond_t cond;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .lockfd = -1 };

/* Standard storage key templates (TCG key files: ECC P-256 first). */
#define SRK_ATTRS (TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED \
                   | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_NODA \
                   | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT \
                   | TPMA_OBJECT_SENSITIVEDATAORIGIN)

static const TPM2B_PUBLIC srk_ecc = {
    .publicArea = {
        .type = TPM2_ALG_ECC,
        .nameAlg = TPM2_ALG_SHA256,
        .objectAttributes = SRK_ATTRS,
        .parameters.eccDetail = {
            .symmetric = {
                .algorithm = TPM2_ALG_AES,
                .keyBits.aes = 128,
                .mode.aes = TPM2_ALG_CFB,
            },
            .scheme = { .scheme = TPM2_ALG_NULL },
            .curveID = TPM2_ECC_NIST_P256,
            .kdf = { .scheme = TPM2_ALG_NULL },
        },
    },
};

static const TPM2B_PUBLIC srk_rsa = {
    .publicArea = {
        .type = TPM2_ALG_RSA,
        .nameAlg = TPM2_ALG_SHA256,
        .objectAttributes = SRK_ATTRS,
        .parameters.rsaDetail = {
            .symmetric = {
                .algorithm = TPM2_ALG_AES,
                .keyBits.aes = 128,
                .mode.aes = TPM2_ALG_CFB,
            },
            .scheme = { .scheme = TPM2_ALG_NULL },
            .keyBits = 2048,
            .exponent = 0,
        },
    },
};

/* ---- error classification ------------------------------------------- */

/* Ours: a persistent handle now holds another key than the one opened. */
#define KH_RC_NAME_CHANGED ((TSS2_RC)(TSS2_ESAPI_RC_LAYER | 0xf801))

static TSS2_RC rc_base(TSS2_RC rc)
{
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) {
        return rc;
    }
    if (rc & TPM2_RC_FMT1) {
        return rc & (TPM2_RC_FMT1 | 0x3f);
    }
    return rc & 0xfff;
}

static int rc_is_comm(TSS2_RC rc)
{
    TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

    if (layer == TSS2_TCTI_RC_LAYER) {
        return 1;
    }
    /* ESYS reports a dead transport through these too. */
    return rc == TSS2_ESYS_RC_IO_ERROR
           || rc == TSS2_ESYS_RC_MALFORMED_RESPONSE
           || rc == TSS2_ESYS_RC_INSUFFICIENT_RESPONSE
           || rc == TSS2_ESYS_RC_TRY_AGAIN
           || rc == TSS2_ESYS_RC_BAD_SEQUENCE;
}

/* The TPM forgot our objects: reset, restart or someone flushed them. */
static int rc_is_stale(TSS2_RC rc)
{
    TSS2_RC b = rc_base(rc);

    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) {
        return 0;
    }
    return b == TPM2_RC_INITIALIZE || b == TPM2_RC_HANDLE
           || (b >= TPM2_RC_REFERENCE_H0 && b <= TPM2_RC_REFERENCE_H6);
}

static enum kh_tpm_rc rc_class(TSS2_RC rc)
{
    TSS2_RC b = rc_base(rc);

    if (rc == TSS2_RC_SUCCESS) {
        return KH_TPM_OK;
    }
    if (rc_is_comm(rc)) {
        return KH_TPM_ERR_COMM;
    }
    if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
        if (b == TPM2_RC_AUTH_FAIL || b == TPM2_RC_BAD_AUTH) {
            return KH_TPM_ERR_AUTH;
        }
        if (b == TPM2_RC_LOCKOUT) {
            return KH_TPM_ERR_LOCKOUT;
        }
    }
    return KH_TPM_ERR;
}

static int rc_is_objmem(TSS2_RC rc);

static enum kh_tpm_rc fail(TSS2_RC rc, char *err, size_t errlen,
                           const char *what)
{
    enum kh_tpm_rc c = rc_class(rc);

    switch (c) {
    case KH_TPM_ERR_AUTH:
        snprintf(err, errlen, "%s: TPM auth failed (wrong auth value; not "
                 "retried, to spare the dictionary-attack counter)", what);
        break;
    case KH_TPM_ERR_LOCKOUT:
        snprintf(err, errlen, "%s: TPM is in dictionary-attack lockout "
                 "(wait for the lockout interval or clear it with the "
                 "lockout auth)", what);
        break;
    case KH_TPM_ERR_COMM:
        snprintf(err, errlen, "%s: TPM unreachable through TCTI '%s': %s",
                 what, g.tcti, Tss2_RC_Decode(rc));
        break;
    default:
        if (rc_is_objmem(rc)) {
            snprintf(err, errlen, "%s: the TPM's object slots are full "
                     "with objects of other programs (a TPM without resource "
                     "manager: flush them with tpm2_flushcontext -t, or use "
                     "/dev/tpmrm0 or tpm2-abrmd)", what);
            break;
        }
        snprintf(err, errlen, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc),
                 rc);
        break;
    }
    return c;
}

/* ---- configuration and connection ------------------------------------ */

/*
 * TPMs reached without a resource manager serve one connection at a time
 * and keep every transient object until it is flushed: swtpm's and the
 * simulator's sockets, a bare /dev/tpm0. With those, a process connects
 * for each operation and flushes what it loaded before letting go, so
 * that several processes (nginx workers, the CLI beside a server) take
 * turns instead of waiting for each other forever. Through /dev/tpmrm0 or
 * tpm2-abrmd the connection and the loaded keys stay.
 */
static int tcti_is_exclusive(const char *t)
{
    if (strncmp(t, "swtpm", 5) == 0 || strncmp(t, "mssim", 5) == 0) {
        return 1;
    }
    if (strncmp(t, "device", 6) == 0) {
        return strstr(t, "tpmrm") == NULL;
    }
    return 0;
}

static void release_hold_locked(void);

static void configure_locked(const char *tcti)
{
    static const char *envs[] = {
        "KEYHOLD_TPM_TCTI", "TPM2TOOLS_TCTI", "TCTI", "TPM2OPENSSL_TCTI"
    };
    const char *v = tcti;
    size_t i;

    if (v != NULL && *v != '\0') {
        g.explicit_tcti = 1;
    } else {
        if (g.configured) {
            return;
        }
        v = NULL;
        for (i = 0; i < sizeof(envs) / sizeof(envs[0]) && v == NULL; i++) {
            v = getenv(envs[i]);
            if (v != NULL && *v == '\0') {
                v = NULL;
            }
        }
        if (v == NULL) {
            v = "device:/dev/tpmrm0";
        }
    }
    snprintf(g.tcti, sizeof(g.tcti), "%s", v);
    g.hold = !tcti_is_exclusive(g.tcti);
    v = getenv("KEYHOLD_TPM_HOLD");
    if (v != NULL && (*v == '0' || *v == '1')) {
        g.hold = *v == '1';
    }
    v = getenv("KEYHOLD_TPM_LOCK");
    if (v != NULL && *v != '\0') {
        snprintf(g.lockpath, sizeof(g.lockpath), "%s", v);
    } else {
        unsigned long h = 5381;
        const char *c;

        /* One lock per TPM: a hash of the TCTI string names it. */
        for (c = g.tcti; *c != '\0'; c++) {
            h = h * 33 + (unsigned char)*c;
        }
        snprintf(g.lockpath, sizeof(g.lockpath), "%s/keyhold-tpm-%08lx.lock",
                 access("/run/lock", W_OK) == 0 ? "/run/lock" : "/tmp",
                 h & 0xffffffffUL);
    }
    if (g.lockfd >= 0) {
        release_hold_locked();
        close(g.lockfd);
        g.lockfd = -1;
    }
    /*
     * tpm2-tss logs every failed TPM command to stderr unless told
     * otherwise; keyhold reports errors itself and must print nothing.
     */
    if (getenv("TSS2_LOG") == NULL && getenv("KEYHOLD_DEBUG") == NULL) {
        setenv("TSS2_LOG", "all+none", 0);
    }
    g.configured = 1;
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g.lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g.lock);
}

/*
 * In the child: the parent's connection must not be used (nor finalized,
 * which may send a session-end on the shared socket). Close our copy of
 * its descriptors and forget it.
 */
static void atfork_child(void)
{
    struct kh_tpm_key *k, *next;

    if (g.tcti_ctx != NULL) {
        TSS2_TCTI_POLL_HANDLE h[4];
        size_t n = 4, i;

        if (Tss2_Tcti_GetPollHandles(g.tcti_ctx, h, &n) == TSS2_RC_SUCCESS
            && n <= 4) {
            for (i = 0; i < n; i++) {
                close(h[i].fd);
            }
        }
    }
    /* flock() locks belong to the open file: the child needs its own. */
    if (g.lockfd >= 0) {
        close(g.lockfd);
        g.lockfd = -1;
    }
    g.tcti_ctx = NULL;          /* leaked on purpose, see above */
    g.esys = NULL;
    g.gen++;
    g.epoch++;
    g.pid = getpid();
    /* The parent's objects stay the parent's (its entries in the lock
     * file's record); the child loads its own under a token of its own. */
    for (k = g.loaded; k != NULL; k = next) {
        next = k->next;
        k->prev = k->next = NULL;
        k->handle = 0;
        free(k->trser);
        k->trser = NULL;
        k->trserlen = 0;
    }
    g.loaded = NULL;
    g.token = 0;
    g.leased = 0;
    g.sweep = 0;
    g.nforeign = g.nflushq = 0;
    /* The parent's burst (its lock, its connection) stays the parent's;
     * the thread that ends bursts is not in the child. */
    g.held = 0;
    g.helper_on = 0;
    pthread_mutex_unlock(&g.lock);
}

void kh_tpm_configure(const char *tcti)
{
    pthread_mutex_lock(&g.lock);
    configure_locked(tcti);
    pthread_mutex_unlock(&g.lock);
}

const char *kh_tpm_tcti(void)
{
    pthread_mutex_lock(&g.lock);
    configure_locked(NULL);
    pthread_mutex_unlock(&g.lock);
    return g.tcti;
}

static void list_unlink(struct kh_tpm_key *k)
{
    if (k->prev != NULL) {
        k->prev->next = k->next;
    } else if (g.loaded == k) {
        g.loaded = k->next;
    }
    if (k->next != NULL) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
}

static void list_push(struct kh_tpm_key *k)
{
    k->prev = NULL;
    k->next = g.loaded;
    if (g.loaded != NULL) {
        g.loaded->prev = k;
    }
    g.loaded = k;
}

/* Forgets k's handle without flushing it (gone, or no longer ours). */
static void forget_key_locked(struct kh_tpm_key *k)
{
    list_unlink(k);
    if (k->tr != ESYS_TR_NONE && k->gen == g.gen && g.esys != NULL) {
        Esys_TR_Close(g.esys, &k->tr);
    }
    k->tr = ESYS_TR_NONE;
    k->handle = 0;
    free(k->trser);
    k->trser = NULL;
    k->trserlen = 0;
}

/*
 * Flushes a loaded transient key (connected): through its ESYS_TR of this
 * connection, or one rebuilt from the serialized handle of an earlier one.
 */
static void flush_key_locked(struct kh_tpm_key *k)
{
    ESYS_TR tr = ESYS_TR_NONE;

    if (k->tr != ESYS_TR_NONE && k->gen == g.gen) {
        tr = k->tr;
    } else if (k->handle != 0 && k->trser != NULL
               && Esys_TR_Deserialize(g.esys, k->trser, k->trserlen, &tr)
                  != TSS2_RC_SUCCESS) {
        tr = ESYS_TR_NONE;
    }
    if (tr != ESYS_TR_NONE
        && Esys_FlushContext(g.esys, tr) != TSS2_RC_SUCCESS) {
        Esys_TR_Close(g.esys, &tr);
    }
    k->tr = ESYS_TR_NONE;
    forget_key_locked(k);
}

/* Forgets every loaded key; flushes them when |flush| (connected). */
static void unload_all_locked(int flush)
{
    struct kh_tpm_key *k;

    while ((k = g.loaded) != NULL) {
        if (flush && g.esys != NULL) {
            flush_key_locked(k);
        } else {
            forget_key_locked(k);
        }
    }
    g.epoch++;                  /* persistent handles: check them again */
}

static void close_conn_locked(void)
{
    if (g.esys != NULL) {
        Esys_Finalize(&g.esys);
    }
    if (g.tcti_ctx != NULL) {
        Tss2_TctiLdr_Finalize(&g.tcti_ctx);
    }
    g.esys = NULL;
    g.tcti_ctx = NULL;
    g.gen++;
}

static void disconnect_locked(int flush)
{
    unload_all_locked(flush);
    close_conn_locked();
}

static void lease_flush_locked(void);

/*
 * Keeps the TCTI libraries of the TCTI string loaded after the first
 * connection: without a resource manager keyhold connects per operation,
 * and the TCTI loader would otherwise map and unmap them each time. Every
 * ':'-separated name that is a loaded library (or libtss2-tcti-NAME.so.0)
 * gets one more reference (RTLD_NOLOAD: nothing new is loaded).
 */
static void pin_tcti_libs_locked(void)
{
    static int pinned;
    char buf[sizeof(g.tcti)], lib[sizeof(g.tcti) + 32];
    char *tok, *save = NULL;

    if (pinned) {
        return;
    }
    pinned = 1;
    snprintf(buf, sizeof(buf), "%s", g.tcti);
    for (tok = strtok_r(buf, ":", &save); tok != NULL;
         tok = strtok_r(NULL, ":", &save)) {
        if (strchr(tok, '=') != NULL || *tok == '\0') {
            continue;
        }
        if (dlopen(tok, RTLD_LAZY | RTLD_NOLOAD) == NULL) {
            snprintf(lib, sizeof(lib), "libtss2-tcti-%s.so.0", tok);
            dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
        }
    }
}

static enum kh_tpm_rc connect_locked(char *err, size_t errlen)
{
    TSS2_RC rc;

    if (!g.atfork) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        g.atfork = 1;
        g.pid = getpid();
    }
    configure_locked(NULL);
    if (g.esys != NULL) {
        return KH_TPM_OK;
    }
    rc = Tss2_TctiLdr_Initialize(g.tcti, &g.tcti_ctx);
    if (rc != TSS2_RC_SUCCESS) {
        g.tcti_ctx = NULL;
        snprintf(err, errlen, "cannot open the TPM through TCTI '%s': %s "
                 "(is the TPM or swtpm running? set tpm2-tcti in the "
                 "provider config or TPM2TOOLS_TCTI)", g.tcti,
                 Tss2_RC_Decode(rc));
        return KH_TPM_ERR_COMM;
    }
    rc = Esys_Initialize(&g.esys, g.tcti_ctx, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        g.esys = NULL;
        Tss2_TctiLdr_Finalize(&g.tcti_ctx);
        return fail(rc, err, errlen, "ESAPI initialisation");
    }
    g.gen++;
    pin_tcti_libs_locked();
    if (g.leased) {
        lease_flush_locked();
    }
    return KH_TPM_OK;
}

/* Closes the connection when nobody needs it (see the file comment). */
static void maybe_release_locked(void)
{
    if (g.keys == 0 && g.esys != NULL) {
        disconnect_locked(1);
    }
}

void kh_tpm_release(void)
{
    pthread_mutex_lock(&g.lock);
    release_hold_locked();
    maybe_release_locked();
    if (g.keys == 0) {
        /* Only a cache; the module may be unloaded after this. */
        Esys_Free(g.primary);
        g.primary = NULL;
    }
    pthread_mutex_unlock(&g.lock);
}

/*
 * A write to a socket whose peer died (swtpm killed) raises SIGPIPE, which
 * would kill a server that did not ignore it. Block it for this thread
 * around TPM traffic and discard one that became pending.
 */
typedef struct {
    sigset_t old;
    int pending_before;
    int xlocked;
} SIGPIPE_GUARD;

static void lease_begin_locked(void);
static void lease_end_locked(void);

/*
 * Opens (creating) the lock file. Its record decides which TPM handle a
 * process signs with, so it is trusted only when nobody could write it
 * who cannot use the TPM anyway: for a TPM reached over a local socket
 * (swtpm, the simulator) every local user can; for a device, the file
 * must not be world-writable, and a new one is made 0660 with the
 * device's group (servers that drop privileges to a user in that group
 * still open it). An untrusted record only costs speed: nothing is left
 * loaded between operations.
 */
static void lock_open_locked(void)
{
    int sock = strncmp(g.tcti, "swtpm", 5) == 0
               || strncmp(g.tcti, "mssim", 5) == 0;
    const char *dev = strchr(g.tcti, ':');
    struct stat st, ds;

    g.lease_trusted = 0;
    g.lockfd = open(g.lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                    sock ? 0666 : 0660);
    if (g.lockfd < 0 || fstat(g.lockfd, &st) != 0) {
        return;
    }
    if (st.st_uid == geteuid()) {
        fchmod(g.lockfd, sock ? 0666 : 0660);
        if (!sock && dev != NULL && stat(dev + 1, &ds) == 0
            && st.st_gid != ds.st_gid) {
            if (fchown(g.lockfd, (uid_t)-1, ds.st_gid) != 0) {
                /* not in the device's group: the owner alone uses it */
            }
        }
        if (fstat(g.lockfd, &st) != 0) {
            return;
        }
    }
    g.lease_trusted = sock || !(st.st_mode & S_IWOTH);
}

/*
 * A TPM without a resource manager serves one connection at a time, so
 * keyhold processes take an exclusive flock() for each operation's
 * connect..sign..disconnect, and keep in the lock file the record of
 * which of them left which object loaded ("the lease" below). Other
 * programs do not take it: see docs/tpm.md. Failing to open the lock file
 * only loses that protection, and then nothing is left loaded.
 */
static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Who waits for the lock: a process about to block on it holds a read
 * lock (an open-file-description fcntl lock, independent of flock) on the
 * file's first byte until it has the flock. The holder tests for one
 * without taking anything; the kernel drops it with a process that dies.
 */
static void waiter_mark(int on)
{
    struct flock fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = on ? F_RDLCK : F_UNLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 1;
    if (fcntl(g.lockfd, F_OFD_SETLK, &fl) != 0) {
        /* without it, the holder's burst ends only when it is idle */
    }
}

static int waiters_locked(void)
{
    struct flock fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 1;
    return fcntl(g.lockfd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/*
 * Takes the lock. After giving it up for a waiter (|yield|), lets the
 * waiter in first: flock() wakes it, but this process would otherwise take
 * the lock again before it runs. Stops yielding after about 2 ms.
 */
static void lock_take_locked(int yield)
{
    int i;

    for (i = 0; ; i++) {
        if (flock(g.lockfd, LOCK_EX | LOCK_NB) != 0) {
            waiter_mark(1);
            while (flock(g.lockfd, LOCK_EX) != 0 && errno == EINTR) {
            }
            waiter_mark(0);
            return;
        }
        if (!yield || i >= 40 || !waiters_locked()) {
            return;
        }
        flock(g.lockfd, LOCK_UN);
        usleep(50);
    }
}

static void xproc_lock(SIGPIPE_GUARD *s)
{
    int yield = 0;

    s->xlocked = 0;
    configure_locked(NULL);
    if (g.hold) {
        return;
    }
    if (g.held) {
        /* In a burst: lock, record and connection are still ours. */
        if (!waiters_locked()) {
            s->xlocked = 1;
            return;
        }
        release_hold_locked();
        yield = 1;
    }
    if (g.lockfd < 0) {
        lock_open_locked();
    }
    if (g.lockfd >= 0) {
        lock_take_locked(yield);
        s->xlocked = 1;
        if (g.lease_trusted) {
            lease_begin_locked();
        }
    }
}

static void hold_helper_wake(void);

static void xproc_unlock(SIGPIPE_GUARD *s)
{
    if (s->xlocked && g.held) {
        hold_helper_wake();     /* ends the burst when idle */
        s->xlocked = 0;
        return;
    }
    if (s->xlocked && g.lockfd >= 0) {
        if (g.leased) {
            lease_end_locked();
        }
        flock(g.lockfd, LOCK_UN);
    }
    s->xlocked = 0;
}

static void sigpipe_block(SIGPIPE_GUARD *s)
{
    sigset_t set, pend;

    xproc_lock(s);

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    s->pending_before = sigismember(&pend, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &s->old);
}

static void sigpipe_restore(SIGPIPE_GUARD *s)
{
    sigset_t set, pend;
    struct timespec zero = { 0, 0 };

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    if (!s->pending_before && sigismember(&pend, SIGPIPE)) {
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
    xproc_unlock(s);
}

/* ---- loading --------------------------------------------------------- */

/*
 * Tss2_Sys_FlushContext, from the libtss2-sys that libtss2-esys already
 * loaded (looked up rather than linked: the build links ESAPI only).
 */
typedef TSS2_RC (*sys_flush_fn)(TSS2_SYS_CONTEXT *sys, TPMI_DH_CONTEXT h);

static sys_flush_fn sys_flush_locked(void)
{
    static int looked;
    static sys_flush_fn fn;
    void *lib;

    if (!looked) {
        looked = 1;
        lib = dlopen("libtss2-sys.so.1", RTLD_LAZY | RTLD_NOLOAD);
        if (lib != NULL) {
            /* Keeps the reference: the library stays while esys does. */
            *(void **)&fn = dlsym(lib, "Tss2_Sys_FlushContext");
        }
    }
    return fn;
}

/*
 * Flushes a transient object known only by its TPM handle: one command
 * (TPM2_FlushContext through the SAPI context under ESAPI, which has no
 * handle of its own for the object), else two (TPM2_ReadPublic for an
 * ESAPI handle, then TPM2_FlushContext).
 */
static TSS2_RC flush_raw_locked(TPM2_HANDLE h)
{
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_SYS_CONTEXT *sys = NULL;
    sys_flush_fn fn = sys_flush_locked();
    TSS2_RC rc;

    if ((h & 0xff000000u) != KH_TRANSIENT_FIRST) {
        return TSS2_ESYS_RC_BAD_VALUE;      /* never anything else */
    }
    if (fn != NULL && Esys_GetSysContext(g.esys, &sys) == TSS2_RC_SUCCESS
        && sys != NULL) {
        return fn(sys, h);
    }
    rc = Esys_TR_FromTPMPublic(g.esys, h, ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, &tr);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    rc = Esys_FlushContext(g.esys, tr);
    if (rc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(g.esys, &tr);
    }
    return rc;
}

/*
 * Makes room: flushes the least recently used loaded key other than
 * |keep|, else an object another keyhold process left loaded (it loads
 * its key again, see the lease).
 */
static int evict_one_locked(struct kh_tpm_key *keep)
{
    struct kh_tpm_key *k, *last = NULL;
    TSS2_RC rc;

    for (k = g.loaded; k != NULL; k = k->next) {
        if (k != keep) {
            last = k;
        }
    }
    if (last != NULL) {
        flush_key_locked(last);
        return 1;
    }
    while (g.nforeign > 0) {
        rc = flush_raw_locked(g.foreign[0].handle);
        if (rc_is_comm(rc)) {
            return 0;
        }
        g.nforeign--;
        memmove(&g.foreign[0], &g.foreign[1],
                (size_t)g.nforeign * sizeof(g.foreign[0]));
        if (rc == TSS2_RC_SUCCESS) {
            return 1;
        }
    }
    return 0;
}

/*
 * ESYS_TR for a persistent handle (TPM2_ReadPublic). A TPM loads a
 * persistent object into an object slot to use it, so this makes room too.
 */
static TSS2_RC from_tpm_locked(TPM2_HANDLE h, struct kh_tpm_key *keep,
                               ESYS_TR *tr)
{
    TSS2_RC rc;

    for (;;) {
        rc = Esys_TR_FromTPMPublic(g.esys, h, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, tr);
        if (rc_is_objmem(rc) && evict_one_locked(keep)) {
            continue;
        }
        return rc;
    }
}

/* ---- the lease: sharing a TPM without resource manager -------------- *
 *
 * Connecting per operation lets other processes take turns, but loading
 * the key from its saved context and flushing it again costs two TPM
 * commands per signature. Instead, each key stays loaded after the
 * operation and the connection is closed; the lock file holds a record
 * of every object keyhold processes left loaded and who left it (a random
 * token per process, and its pid). At the start of the next operation,
 * under the lock:
 *
 * - a key of ours whose entry is still in the record is still loaded at
 *   that handle: nobody who took the lock since flushed it (flushing one
 *   removes its entry), and the TPM gives a loaded object's handle to no
 *   other object. Its ESYS_TR is rebuilt from the serialized one (no TPM
 *   command): one command, TPM2_Sign, per signature;
 * - a key of ours whose entry is gone was flushed by another process: it
 *   is loaded again from its saved context;
 * - other processes' objects stay loaded until this process needs their
 *   slot; those of processes that no longer exist are flushed;
 * - "busy" set means the previous holder died in the middle of an
 *   operation, leaving objects nobody knows of: every transient object
 *   is flushed and every key loaded again;
 * - "seq" changed means others used the TPM: persistent handles are
 *   checked (by name) again before use.
 *
 * A TPM reset or restart in between shows as TPM_RC_HANDLE for the kept
 * handle (see run_key_op). Programs other than keyhold do not read the
 * record: see docs/tpm.md.
 */

static void lease_read(struct lease *r)
{
    ssize_t n = pread(g.lockfd, r, sizeof(*r), 0);

    if (n != (ssize_t)sizeof(*r) || memcmp(r->magic, LEASE_MAGIC, 8) != 0
        || r->n > LEASE_MAX) {
        memset(r, 0, sizeof(*r));
    }
}

static int lease_write(struct lease *r)
{
    memcpy(r->magic, LEASE_MAGIC, 8);
    return pwrite(g.lockfd, r, sizeof(*r), 0) == (ssize_t)sizeof(*r);
}

static void lease_token(void)
{
    uint64_t r = 0;
    struct timespec ts;

    if (g.token != 0 && g.token_pid == getpid()) {
        return;
    }
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull
            ^ (uint64_t)ts.tv_sec;
    }
    g.token_pid = getpid();
    g.token = r ^ ((uint64_t)(uint32_t)g.token_pid << 32);
    if (g.token == 0) {
        g.token = 1;
    }
}

static int pid_alive(uint32_t pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static int key_at_locked(TPM2_HANDLE h)
{
    struct kh_tpm_key *k;

    for (k = g.loaded; k != NULL; k = k->next) {
        if (k->handle == h) {
            return 1;
        }
    }
    return 0;
}

static void lease_begin_locked(void)
{
    struct lease r;
    struct kh_tpm_key *k, *next;
    uint32_t i;
    int mine;

    lease_token();
    lease_read(&r);
    g.nforeign = g.nflushq = 0;
    g.sweep = r.busy != 0;
    if (g.sweep) {
        r.n = 0;
    }
    if (r.seq != g.seq) {
        g.epoch++;
    }
    for (k = g.loaded; k != NULL; k = next) {
        next = k->next;
        mine = 0;
        for (i = 0; i < r.n && !mine; i++) {
            mine = r.e[i].owner == g.token && r.e[i].handle == k->handle;
        }
        if (!mine) {
            forget_key_locked(k);
        }
    }
    for (i = 0; i < r.n; i++) {
        if (r.e[i].owner == g.token) {
            if (!key_at_locked(r.e[i].handle)) {
                g.flushq[g.nflushq++] = r.e[i];
            }
        } else if (pid_alive(r.e[i].pid)) {
            g.foreign[g.nforeign++] = r.e[i];
        } else {
            g.flushq[g.nflushq++] = r.e[i];
        }
    }
    r.seq++;
    r.busy = 1;
    g.seq = r.seq;
    g.leased = lease_write(&r);
}

/* After connecting: flush what was abandoned. */
static void lease_flush_locked(void)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    TSS2_RC rc;
    uint32_t i;

    if (g.sweep) {
        rc = Esys_GetCapability(g.esys, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                KH_TRANSIENT_FIRST, TPM2_MAX_CAP_HANDLES,
                                &more, &cap);
        if (rc == TSS2_RC_SUCCESS) {
            for (i = 0; i < cap->data.handles.count; i++) {
                if (!key_at_locked(cap->data.handles.handle[i])) {
                    flush_raw_locked(cap->data.handles.handle[i]);
                }
            }
            g.sweep = 0;
        }
        Esys_Free(cap);
    }
    while (g.nflushq > 0) {
        rc = flush_raw_locked(g.flushq[g.nflushq - 1].handle);
        if (rc_is_comm(rc)) {
            break;
        }
        g.nflushq--;
    }
}

static void lease_add(struct lease *r, const struct lease_ent *e)
{
    uint32_t i;

    if (r->n >= LEASE_MAX) {
        return;
    }
    for (i = 0; i < r->n; i++) {
        if (r->e[i].handle == e->handle) {
            return;             /* the first (ours, just loaded) wins */
        }
    }
    r->e[r->n++] = *e;
}

static void lease_end_locked(void)
{
    struct lease r;
    struct lease_ent e;
    struct kh_tpm_key *k;
    int i;

    memset(&r, 0, sizeof(r));
    r.seq = g.seq;
    r.busy = g.sweep;           /* a sweep that could not run yet */
    e.owner = g.token;
    e.pid = (uint32_t)getpid();
    for (k = g.loaded; k != NULL; k = k->next) {
        if (k->handle != 0) {
            e.handle = k->handle;
            lease_add(&r, &e);
        }
    }
    for (i = 0; i < g.nforeign; i++) {
        lease_add(&r, &g.foreign[i]);
    }
    for (i = 0; i < g.nflushq; i++) {
        lease_add(&r, &g.flushq[i]);
    }
    lease_write(&r);
    g.leased = 0;
}

/*
 * Ends an operation on a TPM without resource manager: the loaded keys
 * stay in the TPM, their ESYS_TRs serialized, and the connection closes
 * so that other processes can connect. Keys beyond half the record are
 * flushed (the record also names other processes' objects).
 */
static void park_locked(void)
{
    struct kh_tpm_key *k, *next;
    int n = 0;

    for (k = g.loaded; k != NULL; k = next) {
        next = k->next;
        if (++n > LEASE_MAX / 2) {
            flush_key_locked(k);
            continue;
        }
        if (k->trser == NULL && k->tr != ESYS_TR_NONE && k->gen == g.gen
            && Esys_TR_Serialize(g.esys, k->tr, &k->trser, &k->trserlen)
               != TSS2_RC_SUCCESS) {
            k->trser = NULL;
            flush_key_locked(k);
        }
    }
    close_conn_locked();
}

static int hold_helper_start_locked(void);

/*
 * The end of an operation: what stays loaded, and the connection. Within
 * a burst the connection and the lock stay too (g.held), unless another
 * keyhold process waits or the burst has lasted long enough.
 */
static void op_done_locked(void)
{
    g.held = 0;
    if (g.hold || g.esys == NULL) {
        return;
    }
    if (g.leased && !g.no_hold && !waiters_locked()
        && hold_helper_start_locked()) {
        g.held = 1;
        g.last_op = now_ns();
        return;
    }
    if (g.leased) {
        park_locked();
    } else {
        disconnect_locked(1);
    }
}

/* Ends a burst: the keys stay loaded, the connection and lock go. */
static void release_hold_locked(void)
{
    if (!g.held) {
        return;
    }
    g.held = 0;
    if (g.esys != NULL) {
        park_locked();
    }
    if (g.leased) {
        lease_end_locked();
    }
    if (g.lockfd >= 0) {
        flock(g.lockfd, LOCK_UN);
    }
}

/* The thread that ends a burst once the process has been idle. */
static void *hold_helper(void *arg)
{
    struct timespec ts;
    uint64_t due;

    (void)arg;
    pthread_mutex_lock(&g.lock);
    for (;;) {
        if (!g.held) {
            pthread_cond_wait(&g.cond, &g.lock);
            continue;
        }
        due = g.last_op + HOLD_IDLE_NS;
        if (now_ns() >= due) {
            release_hold_locked();
            continue;
        }
        ts.tv_sec = (time_t)(due / 1000000000ull);
        ts.tv_nsec = (long)(due % 1000000000ull);
        pthread_cond_timedwait(&g.cond, &g.lock, &ts);
    }
    return NULL;
}

/*
 * Starts that thread once per process (all signals blocked in it: they
 * stay the application's). 0 when it cannot run: then no burst is kept.
 */
static int hold_helper_start_locked(void)
{
    pthread_condattr_t ca;
    pthread_attr_t ta;
    Dl_info di;
    sigset_t all, old;
    pthread_t t;
    int ok;

    if (g.helper_on) {
        return 1;
    }
    /*
     * The thread runs this library's code for the life of the process: the
     * library must stay mapped even if whoever loaded it unloads it.
     */
    if (dladdr((void *)hold_helper, &di) == 0 || di.dli_fname == NULL
        || dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE)
           == NULL) {
        return 0;
    }
    if (pthread_condattr_init(&ca) != 0) {
        return 0;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    ok = pthread_cond_init(&g.cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok || pthread_attr_init(&ta) != 0) {
        return 0;
    }
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&ta, 64 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ok = pthread_create(&t, &ta, hold_helper, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&ta);
    g.helper_on = ok;
    return ok;
}

static void hold_helper_wake(void)
{
    if (g.helper_on) {
        pthread_cond_signal(&g.cond);
    }
}

/*
 * At exit, keys left loaded in a TPM without resource manager are flushed
 * (what exits without this, e.g. killed, the next keyhold operation on
 * that TPM flushes: the record names the process, which no longer runs).
 * Skipped when another thread is inside an operation.
 */
__attribute__((destructor)) static void kh_tpm_at_exit(void)
{
    SIGPIPE_GUARD sp;
    char err[256];

    if (!g.configured || g.hold || g.token == 0 || g.token_pid != getpid()) {
        return;
    }
    if (pthread_mutex_trylock(&g.lock) != 0) {
        return;
    }
    g.no_hold = 1;
    sigpipe_block(&sp);
    if (g.leased && (g.loaded != NULL || g.nflushq > 0)
        && connect_locked(err, sizeof(err)) == KH_TPM_OK) {
        unload_all_locked(1);
    }
    op_done_locked();
    sigpipe_restore(&sp);
    pthread_mutex_unlock(&g.lock);
}

static int rc_is_objmem(TSS2_RC rc)
{
    TSS2_RC b = rc_base(rc);

    return (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER
           && (b == TPM2_RC_OBJECT_MEMORY || b == TPM2_RC_MEMORY);
}

static TSS2_RC context_load_locked(const TPMS_CONTEXT *c,
                                   struct kh_tpm_key *keep, ESYS_TR *tr)
{
    TSS2_RC rc;

    for (;;) {
        rc = Esys_ContextLoad(g.esys, c, tr);
        if (rc_is_objmem(rc) && evict_one_locked(keep)) {
            continue;
        }
        return rc;
    }
}

static int tpm_has_ecc_locked(void)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    TSS2_RC rc;
    int ok = 0;

    rc = Esys_GetCapability(g.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                            TPM2_CAP_ALGS, TPM2_ALG_ECC, 1, &more, &cap);
    if (rc == TSS2_RC_SUCCESS && cap->data.algorithms.count > 0
        && cap->data.algorithms.algProperties[0].alg == TPM2_ALG_ECC) {
        ok = 1;
    }
    Esys_Free(cap);
    return ok;
}

/*
 * Loads the owner-hierarchy storage key: from its saved context when that
 * still works, else by TPM2_CreatePrimary with the standard template.
 * The caller flushes *tr.
 */
static TSS2_RC primary_load_locked(struct kh_tpm_key *keep, ESYS_TR *tr)
{
    static const TPM2B_SENSITIVE_CREATE sens = { .size = 0 };
    static const TPM2B_DATA outside = { .size = 0 };
    static const TPML_PCR_SELECTION pcrs = { .count = 0 };
    TSS2_RC rc;

    if (g.primary != NULL) {
        rc = context_load_locked(g.primary, keep, tr);
        if (rc == TSS2_RC_SUCCESS || rc_is_comm(rc)) {
            return rc;
        }
        /* TPM reset: saved contexts are void. Make the primary again. */
        Esys_Free(g.primary);
        g.primary = NULL;
    }
    g.primary_rsa = !tpm_has_ecc_locked();
    for (;;) {
        rc = Esys_CreatePrimary(g.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                ESYS_TR_NONE, ESYS_TR_NONE, &sens,
                                g.primary_rsa ? &srk_rsa : &srk_ecc,
                                &outside, &pcrs, tr, NULL, NULL, NULL, NULL);
        if (rc_is_objmem(rc) && evict_one_locked(keep)) {
            continue;
        }
        break;
    }
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    if (Esys_ContextSave(g.esys, *tr, &g.primary) != TSS2_RC_SUCCESS) {
        g.primary = NULL;       /* only slower next time */
    }
    return TSS2_RC_SUCCESS;
}

/* Loads the parent named in a key file; *flush says whether to flush it. */
static TSS2_RC parent_load_locked(uint32_t parent, struct kh_tpm_key *keep,
                                  ESYS_TR *tr, int *flush)
{
    if (parent == KH_TPM_RH_OWNER) {
        *flush = 1;
        return primary_load_locked(keep, tr);
    }
    *flush = 0;
    return from_tpm_locked(parent, NULL, tr);
}

static void parent_done_locked(ESYS_TR *tr, int flush)
{
    if (*tr == ESYS_TR_NONE) {
        return;
    }
    if (flush) {
        Esys_FlushContext(g.esys, *tr);
    } else {
        Esys_TR_Close(g.esys, tr);
    }
    *tr = ESYS_TR_NONE;
}

static TSS2_RC load_blob_locked(struct kh_tpm_key *k, ESYS_TR *tr)
{
    ESYS_TR parent = ESYS_TR_NONE;
    int flush = 0;
    TSS2_RC rc;

    if (k->saved != NULL) {
        rc = context_load_locked(k->saved, k, tr);
        if (rc == TSS2_RC_SUCCESS || rc_is_comm(rc)) {
            return rc;
        }
        Esys_Free(k->saved);
        k->saved = NULL;
    }
    rc = parent_load_locked(k->parent, k, &parent, &flush);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    for (;;) {
        rc = Esys_Load(g.esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                       ESYS_TR_NONE, &k->priv, &k->pub, tr);
        if (rc_is_objmem(rc) && evict_one_locked(k)) {
            continue;
        }
        break;
    }
    parent_done_locked(&parent, flush);
    if (rc == TSS2_RC_SUCCESS && !k->sealed) {
        if (Esys_ContextSave(g.esys, *tr, &k->saved) != TSS2_RC_SUCCESS) {
            k->saved = NULL;
        }
    }
    return rc;
}

static TSS2_RC load_persistent_locked(struct kh_tpm_key *k, ESYS_TR *tr)
{
    TPM2B_NAME *name = NULL;
    TSS2_RC rc;

    rc = from_tpm_locked(k->persistent, k, tr);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    /* Someone may have evicted our key and put another one there. */
    rc = Esys_TR_GetName(g.esys, *tr, &name);
    if (rc == TSS2_RC_SUCCESS
        && (name->size != k->name.size
            || memcmp(name->name, k->name.name, name->size) != 0)) {
        rc = KH_RC_NAME_CHANGED;
        Esys_TR_Close(g.esys, tr);
    }
    Esys_Free(name);
    return rc;
}

/*
 * Makes k->tr usable on the current connection: the handle of this
 * connection; else the one kept from an earlier connection (a transient
 * key still loaded, a persistent key whose name was checked since others
 * last used the TPM), rebuilt without a TPM command; else a fresh load.
 */
static TSS2_RC ensure_loaded_locked(struct kh_tpm_key *k)
{
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc;

    if (k->tr != ESYS_TR_NONE && k->gen == g.gen) {
        if (!k->persistent) {
            list_unlink(k);
            list_push(k);
        }
        return TSS2_RC_SUCCESS;
    }
    k->tr = ESYS_TR_NONE;
    if (k->trser != NULL
        && (k->persistent ? k->epoch == g.epoch : k->handle != 0)
        && Esys_TR_Deserialize(g.esys, k->trser, k->trserlen, &tr)
           == TSS2_RC_SUCCESS) {
        goto have;
    }
    tr = ESYS_TR_NONE;
    forget_key_locked(k);
    if (k->persistent) {
        rc = load_persistent_locked(k, &tr);
        if (rc == TSS2_RC_SUCCESS
            && Esys_TR_Serialize(g.esys, tr, &k->trser, &k->trserlen)
               == TSS2_RC_SUCCESS) {
            k->epoch = g.epoch;
        } else {
            k->trser = NULL;
            k->trserlen = 0;
        }
    } else {
        rc = load_blob_locked(k, &tr);
        if (rc == TSS2_RC_SUCCESS
            && Esys_TR_GetTpmHandle(g.esys, tr, &k->handle)
               != TSS2_RC_SUCCESS) {
            k->handle = 0;
        }
    }
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
have:
    if (k->auth.size > 0) {
        rc = Esys_TR_SetAuth(g.esys, tr, &k->auth);
        if (rc != TSS2_RC_SUCCESS) {
            k->tr = tr;
            k->gen = g.gen;
            if (k->persistent) {
                forget_key_locked(k);
            } else {
                flush_key_locked(k);
            }
            return rc;
        }
    }
    k->tr = tr;
    k->gen = g.gen;
    if (!k->persistent) {
        list_unlink(k);
        list_push(k);
    }
    return TSS2_RC_SUCCESS;
}

/* Lets go of k's handle (flushing a transient one). */
static void unload_locked(struct kh_tpm_key *k)
{
    struct lease_ent e;

    if (k->persistent || (k->tr == ESYS_TR_NONE && k->handle == 0)) {
        forget_key_locked(k);
        return;
    }
    if (g.esys != NULL) {
        flush_key_locked(k);
        return;
    }
    if (g.leased && k->handle != 0 && g.nflushq < LEASE_MAX) {
        /* No connection now: the record names it for flushing. */
        e.owner = g.token;
        e.pid = (uint32_t)getpid();
        e.handle = k->handle;
        g.flushq[g.nflushq++] = e;
    }
    forget_key_locked(k);
}

/*
 * Runs op(k, arg) with a loaded key: connect, load, run; on a lost
 * connection or vanished handles, once more from scratch.
 */
typedef TSS2_RC (*key_op)(struct kh_tpm_key *k, void *arg);

static enum kh_tpm_rc run_key_op(struct kh_tpm_key *k, key_op op, void *arg,
                                 const char *what, char *err, size_t errlen)
{
    SIGPIPE_GUARD sp;
    enum kh_tpm_rc ret = KH_TPM_ERR;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int attempt, started = 0;

    if (k->auth_failed) {
        snprintf(err, errlen, "%s: refused: this key's auth value was "
                 "already rejected by the TPM (not retried, to spare the "
                 "dictionary-attack counter)", what);
        return KH_TPM_ERR_AUTH;
    }
    pthread_mutex_lock(&g.lock);
    sigpipe_block(&sp);
    for (attempt = 0; attempt < 2; attempt++) {
        ret = connect_locked(err, errlen);
        if (ret != KH_TPM_OK) {
            if (attempt == 0 && ret == KH_TPM_ERR_COMM) {
                continue;
            }
            goto end;
        }
        rc = ensure_loaded_locked(k);
        if (rc == TSS2_RC_SUCCESS) {
            started = 1;
            do {
                /* A persistent key needs a free object slot to be used. */
                rc = op(k, arg);
            } while (rc_is_objmem(rc) && evict_one_locked(k));
        }
        if (rc == TSS2_RC_SUCCESS) {
            ret = KH_TPM_OK;
            goto end;
        }
        if (rc_class(rc) == KH_TPM_ERR_AUTH) {
            k->auth_failed = 1;
            break;
        }
        if (rc_is_comm(rc)) {
            disconnect_locked(0);
            __atomic_add_fetch(&g.tpm_epoch, 1, __ATOMIC_RELEASE);
            continue;
        }
        if (rc_is_stale(rc)) {
            __atomic_add_fetch(&g.tpm_epoch, 1, __ATOMIC_RELEASE);
            if (rc_base(rc) == TPM2_RC_INITIALIZE) {
                /* A TPM that was restarted without TPM2_Startup: every
                 * handle of ours is gone. */
                Esys_Startup(g.esys, TPM2_SU_CLEAR);
                unload_all_locked(0);
            }
            /* Flushed behind our back, or the TPM was reset: forget it,
             * the others may still be loaded. */
            forget_key_locked(k);
            if (k->saved != NULL) {
                Esys_Free(k->saved);
                k->saved = NULL;
            }
            continue;
        }
        break;
    }
    if (rc == KH_RC_NAME_CHANGED) {
        snprintf(err, errlen, "%s: persistent handle 0x%08x now holds a "
                 "different key", what, k->persistent);
        ret = KH_TPM_ERR_NOTFOUND;
    } else if (k->persistent && !started && rc_base(rc) == TPM2_RC_HANDLE) {
        snprintf(err, errlen, "%s: no key at persistent handle 0x%08x",
                 what, k->persistent);
        ret = KH_TPM_ERR_NOTFOUND;
    } else if (!k->persistent && !started && !rc_is_comm(rc)
               && (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
        /* The TPM refuses the key file: its storage key is not the one
         * the file was made under (TPM cleared, another machine's file). */
        snprintf(err, errlen, "%s: this TPM cannot load the key file (TPM "
                 "cleared, or a key of another TPM): %s", what,
                 Tss2_RC_Decode(rc));
        ret = KH_TPM_ERR_NOTFOUND;
    } else {
        ret = fail(rc, err, errlen, what);
    }
end:
    op_done_locked();
    sigpipe_restore(&sp);
    pthread_mutex_unlock(&g.lock);
    return ret;
}

/* ---- key objects ----------------------------------------------------- */

static struct kh_tpm_key *key_new(void)
{
    struct kh_tpm_key *k = OPENSSL_zalloc(sizeof(*k));

    if (k == NULL) {
        return NULL;
    }
    k->refs = 1;
    k->tr = ESYS_TR_NONE;
    k->pss_salt[0] = k->pss_salt[1] = k->pss_salt[2] = k->pss_salt[3] = -1;
    pthread_mutex_lock(&g.lock);
    g.keys++;
    pthread_mutex_unlock(&g.lock);
    return k;
}

KH_TPM_KEY *kh_tpm_key_up_ref(KH_TPM_KEY *k)
{
    if (k != NULL) {
        __atomic_add_fetch(&k->refs, 1, __ATOMIC_SEQ_CST);
    }
    return k;
}

void kh_tpm_key_free(KH_TPM_KEY *k)
{
    SIGPIPE_GUARD sp;

    if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_SEQ_CST) > 0) {
        return;
    }
    pthread_mutex_lock(&g.lock);
    sigpipe_block(&sp);
    if (g.leased && g.esys == NULL && k->handle != 0) {
        char err[256];

        /* Still loaded since an earlier operation: flush it now. */
        connect_locked(err, sizeof(err));
    }
    unload_locked(k);
    Esys_Free(k->saved);
    g.keys--;
    maybe_release_locked();
    op_done_locked();
    sigpipe_restore(&sp);
    pthread_mutex_unlock(&g.lock);
    OPENSSL_clear_free(k, sizeof(*k));
}

static enum kh_tpm_rc key_check_pub(const TPM2B_PUBLIC *pub, char *err,
                                    size_t errlen)
{
    TPMA_OBJECT a = pub->publicArea.objectAttributes;

    if (pub->publicArea.type != TPM2_ALG_RSA
        && pub->publicArea.type != TPM2_ALG_ECC) {
        snprintf(err, errlen, "TPM object is not an RSA or ECC key");
        return KH_TPM_ERR_UNSUPPORTED;
    }
    if (a & TPMA_OBJECT_RESTRICTED) {
        snprintf(err, errlen, "TPM key is restricted (a storage or "
                 "attestation key), not a general signing key");
        return KH_TPM_ERR_UNSUPPORTED;
    }
    if (!(a & (TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT))) {
        snprintf(err, errlen, "TPM key can neither sign nor decrypt");
        return KH_TPM_ERR_UNSUPPORTED;
    }
    return KH_TPM_OK;
}

enum kh_tpm_rc kh_tpm_key_from_der(const unsigned char *der, size_t derlen,
                                   KH_TPM_KEY **out, char *err, size_t errlen)
{
    KH_TPM_KEYFILE kf;
    struct kh_tpm_key *k;
    enum kh_tpm_rc rc;

    *out = NULL;
    rc = kh_tpm_keyfile_decode(der, derlen, &kf, err, errlen);
    if (rc != KH_TPM_OK) {
        return rc;
    }
    if (!kf.sealed) {
        rc = key_check_pub(&kf.pub, err, errlen);
        if (rc != KH_TPM_OK) {
            return rc;
        }
    }
    k = key_new();
    if (k == NULL) {
        snprintf(err, errlen, "out of memory");
        return KH_TPM_ERR;
    }
    k->parent = kf.parent;
    k->sealed = kf.sealed;
    k->pub = kf.pub;
    k->priv = kf.priv;
    k->empty_auth = kf.empty_auth;
    k->has_pcr_policy = kf.has_pcr_policy;
    k->pcrs = kf.pcrs;
    OPENSSL_cleanse(&kf, sizeof(kf));
    *out = k;
    return KH_TPM_OK;
}

enum kh_tpm_rc kh_tpm_key_from_file(const char *path, KH_TPM_KEY **out,
                                    char *err, size_t errlen)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    enum kh_tpm_rc rc;

    rc = kh_tpm_file_read_der(path, &der, &derlen, err, errlen);
    if (rc == KH_TPM_OK) {
        rc = kh_tpm_key_from_der(der, derlen, out, err, errlen);
    }
    OPENSSL_free(der);
    return rc;
}

static TSS2_RC noop_op(struct kh_tpm_key *k, void *arg)
{
    (void)k;
    (void)arg;
    return TSS2_RC_SUCCESS;
}

enum kh_tpm_rc kh_tpm_key_check(KH_TPM_KEY *k, char *err, size_t errlen)
{
    return run_key_op(k, noop_op, NULL, "loading the TPM key", err, errlen);
}

static TSS2_RC read_public_op(struct kh_tpm_key *k, void *arg)
{
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_NAME *name = NULL;
    TSS2_RC rc;

    (void)arg;
    rc = Esys_ReadPublic(g.esys, k->tr, ESYS_TR_NONE, ESYS_TR_NONE,
                         ESYS_TR_NONE, &pub, &name, NULL);
    if (rc == TSS2_RC_SUCCESS) {
        k->pub = *pub;
    }
    Esys_Free(pub);
    Esys_Free(name);
    return rc;
}

enum kh_tpm_rc kh_tpm_key_from_handle(uint32_t handle, KH_TPM_KEY **out,
                                      char *err, size_t errlen)
{
    struct kh_tpm_key *k;
    TPM2B_NAME *name = NULL;
    SIGPIPE_GUARD sp;
    enum kh_tpm_rc rc;
    TSS2_RC trc;
    ESYS_TR tr = ESYS_TR_NONE;

    *out = NULL;
    if (handle < KH_TPM_PERSISTENT_MIN || handle > KH_TPM_PERSISTENT_MAX) {
        snprintf(err, errlen, "TPM handle 0x%08x is not a persistent "
                 "object handle (0x81000000-0x81ffffff)", handle);
        return KH_TPM_ERR_INPUT;
    }
    k = key_new();
    if (k == NULL) {
        snprintf(err, errlen, "out of memory");
        return KH_TPM_ERR;
    }
    k->persistent = handle;
    /* Learn the key's name once; reloads check it did not change. */
    pthread_mutex_lock(&g.lock);
    sigpipe_block(&sp);
    rc = connect_locked(err, errlen);
    if (rc == KH_TPM_OK) {
        trc = from_tpm_locked(handle, NULL, &tr);
        if (trc == TSS2_RC_SUCCESS) {
            trc = Esys_TR_GetName(g.esys, tr, &name);
            if (trc == TSS2_RC_SUCCESS) {
                k->name = *name;
            }
            Esys_Free(name);
            Esys_TR_Close(g.esys, &tr);
        }
        if (trc != TSS2_RC_SUCCESS) {
            if (rc_base(trc) == TPM2_RC_HANDLE) {
                snprintf(err, errlen, "no key at persistent handle 0x%08x",
                         handle);
                rc = KH_TPM_ERR_NOTFOUND;
            } else {
                rc = fail(trc, err, errlen, "reading the persistent key");
            }
        }
    }
    op_done_locked();
    sigpipe_restore(&sp);
    pthread_mutex_unlock(&g.lock);
    if (rc == KH_TPM_OK) {
        rc = run_key_op(k, read_public_op, NULL, "reading the TPM key",
                        err, errlen);
    }
    if (rc == KH_TPM_OK) {
        rc = key_check_pub(&k->pub, err, errlen);
    }
    if (rc != KH_TPM_OK) {
        kh_tpm_key_free(k);
        return rc;
    }
    /* Persistent keys carry no "empty auth" flag: assume one when none
     * is given; a later kh_tpm_key_set_auth() says otherwise. */
    k->empty_auth = 1;
    *out = k;
    return KH_TPM_OK;
}

static int pss_slot(int md_nid)
{
    switch (md_nid) {
    case NID_sha1:
        return 0;
    case NID_sha256:
        return 1;
    case NID_sha384:
        return 2;
    case NID_sha512:
        return 3;
    default:
        return -1;
    }
}

/*
 * What a TPM does with the PSS salt is fixed by its firmware: learnt once
 * per key and digest, and learnt again after any sign that the TPM may
 * have been restarted (maybe with other firmware): a lost connection or
 * vanished handles bump g.tpm_epoch.
 */
int kh_tpm_key_pss_salt(const KH_TPM_KEY *k, int md_nid)
{
    int i = pss_slot(md_nid);

    if (i < 0 || __atomic_load_n(&k->pss_epoch, __ATOMIC_ACQUIRE)
                 != __atomic_load_n(&g.tpm_epoch, __ATOMIC_ACQUIRE)) {
        return -1;
    }
    return __atomic_load_n(&k->pss_salt[i], __ATOMIC_RELAXED);
}

void kh_tpm_key_pss_salt_set(KH_TPM_KEY *k, int md_nid, int saltlen)
{
    unsigned long e = __atomic_load_n(&g.tpm_epoch, __ATOMIC_ACQUIRE);
    int i = pss_slot(md_nid), j;

    if (i < 0) {
        return;
    }
    if (__atomic_load_n(&k->pss_epoch, __ATOMIC_ACQUIRE) != e) {
        for (j = 0; j < 4; j++) {
            __atomic_store_n(&k->pss_salt[j], -1, __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&k->pss_salt[i], saltlen, __ATOMIC_RELAXED);
    __atomic_store_n(&k->pss_epoch, e, __ATOMIC_RELEASE);
}

int kh_tpm_key_empty_auth(const KH_TPM_KEY *k)
{
    return k->empty_auth;
}

enum kh_tpm_rc kh_tpm_key_set_auth(KH_TPM_KEY *k, const char *auth,
                                   size_t authlen, char *err, size_t errlen)
{
    if (authlen > sizeof(k->auth.buffer)) {
        snprintf(err, errlen, "TPM auth value longer than %zu bytes",
                 sizeof(k->auth.buffer));
        return KH_TPM_ERR_INPUT;
    }
    pthread_mutex_lock(&g.lock);
    OPENSSL_cleanse(&k->auth, sizeof(k->auth));
    memcpy(k->auth.buffer, auth, authlen);
    k->auth.size = (UINT16)authlen;
    k->empty_auth = authlen == 0;
    k->auth_failed = 0;
    /* The handle's auth is set at load: force a fresh one. */
    if (k->tr != ESYS_TR_NONE && k->gen == g.gen && g.esys != NULL) {
        Esys_TR_SetAuth(g.esys, k->tr, &k->auth);
    }
    pthread_mutex_unlock(&g.lock);
    return KH_TPM_OK;
}

int kh_tpm_key_type(const KH_TPM_KEY *k)
{
    return k->pub.publicArea.type == TPM2_ALG_RSA ? EVP_PKEY_RSA
                                                   : EVP_PKEY_EC;
}

int kh_tpm_key_bits(const KH_TPM_KEY *k)
{
    if (k->pub.publicArea.type == TPM2_ALG_RSA) {
        return k->pub.publicArea.parameters.rsaDetail.keyBits;
    }
    switch (k->pub.publicArea.parameters.eccDetail.curveID) {
    case TPM2_ECC_NIST_P384:
        return 384;
    case TPM2_ECC_NIST_P521:
        return 521;
    default:
        return 256;
    }
}

int kh_tpm_key_can_sign(const KH_TPM_KEY *k)
{
    return (k->pub.publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT)
           != 0;
}

int kh_tpm_key_can_decrypt(const KH_TPM_KEY *k)
{
    return k->pub.publicArea.type == TPM2_ALG_RSA
           && (k->pub.publicArea.objectAttributes & TPMA_OBJECT_DECRYPT);
}

uint32_t kh_tpm_key_handle(const KH_TPM_KEY *k)
{
    return k->persistent;
}

EVP_PKEY *kh_tpm_key_public(const KH_TPM_KEY *k, OSSL_LIB_CTX *libctx,
                            const char *propq, char *err, size_t errlen)
{
    return kh_tpm_pub_to_pkey(&k->pub, libctx, propq, err, errlen);
}

/* ---- signing and decryption ------------------------------------------ */

static TPMI_ALG_HASH hash_alg(int md_nid, size_t tbslen)
{
    switch (md_nid) {
    case NID_sha1:
        return TPM2_ALG_SHA1;
    case NID_sha256:
        return TPM2_ALG_SHA256;
    case NID_sha384:
        return TPM2_ALG_SHA384;
    case NID_sha512:
        return TPM2_ALG_SHA512;
    case NID_undef:
        switch (tbslen) {
        case 20:
            return TPM2_ALG_SHA1;
        case 32:
            return TPM2_ALG_SHA256;
        case 48:
            return TPM2_ALG_SHA384;
        case 64:
            return TPM2_ALG_SHA512;
        }
        break;
    }
    return TPM2_ALG_NULL;
}

static size_t hash_len(TPMI_ALG_HASH h)
{
    switch (h) {
    case TPM2_ALG_SHA1:
        return 20;
    case TPM2_ALG_SHA256:
        return 32;
    case TPM2_ALG_SHA384:
        return 48;
    case TPM2_ALG_SHA512:
        return 64;
    default:
        return 0;
    }
}

/*
 * The authorization for using a key: a key without an auth value takes the
 * empty password; a key with one gets an HMAC session of its own, so the
 * auth value never crosses the bus in the clear and a replayed command
 * fails. The session ends with the command (continueSession clear); after
 * a failed command the TPM keeps it, so it is flushed here.
 */
static TSS2_RC key_session_locked(struct kh_tpm_key *k, ESYS_TR *sess)
{
    static const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_NULL };
    TSS2_RC rc;

    *sess = ESYS_TR_PASSWORD;
    if (k->auth.size == 0) {
        return TSS2_RC_SUCCESS;
    }
    for (;;) {
        rc = Esys_StartAuthSession(g.esys, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256,
                                   sess);
        if (rc_is_objmem(rc) && evict_one_locked(k)) {
            continue;
        }
        break;
    }
    if (rc != TSS2_RC_SUCCESS) {
        *sess = ESYS_TR_PASSWORD;
        return rc;
    }
    rc = Esys_TRSess_SetAttributes(g.esys, *sess, 0,
                                   TPMA_SESSION_CONTINUESESSION);
    if (rc != TSS2_RC_SUCCESS) {
        Esys_FlushContext(g.esys, *sess);
        *sess = ESYS_TR_PASSWORD;
    }
    return rc;
}

static void key_session_done(ESYS_TR sess, TSS2_RC rc)
{
    if (sess != ESYS_TR_PASSWORD && rc != TSS2_RC_SUCCESS
        && !rc_is_comm(rc)) {
        Esys_FlushContext(g.esys, sess);
    }
}

struct sign_arg {
    TPM2B_DIGEST digest;
    TPMT_SIG_SCHEME scheme;
    TPMT_SIGNATURE *sig;
};

static TSS2_RC sign_op(struct kh_tpm_key *k, void *arg)
{
    struct sign_arg *a = arg;
    /* A null ticket: the key is not restricted, the TPM needs none. */
    static const TPMT_TK_HASHCHECK none = {
        .tag = TPM2_ST_HASHCHECK,
        .hierarchy = TPM2_RH_NULL,
        .digest = { .size = 0 },
    };

    ESYS_TR sess;
    TSS2_RC rc;

    rc = key_session_locked(k, &sess);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    rc = Esys_Sign(g.esys, k->tr, sess, ESYS_TR_NONE, ESYS_TR_NONE,
                   &a->digest, &a->scheme, &none, &a->sig);
    key_session_done(sess, rc);
    return rc;
}

static enum kh_tpm_rc ecdsa_to_der(const TPMS_SIGNATURE_ECC *s,
                                   unsigned char *sig, size_t *siglen,
                                   size_t sigsize, char *err, size_t errlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(s->signatureR.buffer, s->signatureR.size, NULL);
    BIGNUM *ss = BN_bin2bn(s->signatureS.buffer, s->signatureS.size, NULL);
    unsigned char *p = sig;
    enum kh_tpm_rc rc = KH_TPM_ERR;
    int len;

    if (es == NULL || r == NULL || ss == NULL || !ECDSA_SIG_set0(es, r, ss)) {
        BN_free(r);
        BN_free(ss);
        snprintf(err, errlen, "out of memory");
        goto end;
    }
    len = i2d_ECDSA_SIG(es, NULL);
    if (len <= 0 || (size_t)len > sigsize) {
        snprintf(err, errlen, "ECDSA signature does not fit (%d > %zu)",
                 len, sigsize);
        goto end;
    }
    len = i2d_ECDSA_SIG(es, &p);
    *siglen = (size_t)len;
    rc = KH_TPM_OK;
end:
    ECDSA_SIG_free(es);
    return rc;
}

enum kh_tpm_rc kh_tpm_key_sign(KH_TPM_KEY *k, enum kh_tpm_sig scheme,
                               int md_nid, int saltlen,
                               const unsigned char *tbs, size_t tbslen,
                               unsigned char *sig, size_t *siglen,
                               size_t sigsize, char *err, size_t errlen)
{
    struct sign_arg a;
    TPMI_ALG_HASH h = hash_alg(md_nid, tbslen);
    const TPM2B_PUBLIC_KEY_RSA *rs;
    enum kh_tpm_rc rc;

    memset(&a, 0, sizeof(a));
    if (!kh_tpm_key_can_sign(k)) {
        snprintf(err, errlen, "TPM key was not created for signing");
        return KH_TPM_ERR_UNSUPPORTED;
    }
    if (h == TPM2_ALG_NULL || hash_len(h) != tbslen) {
        snprintf(err, errlen, "TPM signing needs a SHA-1/256/384/512 "
                 "digest of matching length (got %zu bytes)", tbslen);
        return KH_TPM_ERR_UNSUPPORTED;
    }
    switch (scheme) {
    case KH_TPM_SIG_ECDSA:
        if (k->pub.publicArea.type != TPM2_ALG_ECC) {
            goto mismatch;
        }
        a.scheme.scheme = TPM2_ALG_ECDSA;
        break;
    case KH_TPM_SIG_RSA_PKCS1:
        if (k->pub.publicArea.type != TPM2_ALG_RSA) {
            goto mismatch;
        }
        a.scheme.scheme = TPM2_ALG_RSASSA;
        break;
    case KH_TPM_SIG_RSA_PSS:
        if (k->pub.publicArea.type != TPM2_ALG_RSA) {
            goto mismatch;
        }
        a.scheme.scheme = TPM2_ALG_RSAPSS;
        (void)saltlen;          /* checked by the caller on the result */
        break;
    default:
        goto mismatch;
    }
    a.scheme.details.any.hashAlg = h;
    a.digest.size = (UINT16)tbslen;
    memcpy(a.digest.buffer, tbs, tbslen);
    rc = run_key_op(k, sign_op, &a, "TPM2_Sign", err, errlen);
    if (rc != KH_TPM_OK) {
        return rc;
    }
    if (scheme == KH_TPM_SIG_ECDSA) {
        rc = ecdsa_to_der(&a.sig->signature.ecdsa, sig, siglen, sigsize,
                          err, errlen);
    } else {
        rs = scheme == KH_TPM_SIG_RSA_PSS ? &a.sig->signature.rsapss.sig
                                          : &a.sig->signature.rsassa.sig;
        if (rs->size > sigsize) {
            snprintf(err, errlen, "RSA signature does not fit");
            rc = KH_TPM_ERR;
        } else {
            memcpy(sig, rs->buffer, rs->size);
            *siglen = rs->size;
        }
    }
    Esys_Free(a.sig);
    return rc;
mismatch:
    snprintf(err, errlen, "signature scheme does not fit the TPM key type");
    return KH_TPM_ERR_UNSUPPORTED;
}

struct dec_arg {
    TPM2B_PUBLIC_KEY_RSA in;
    TPMT_RSA_DECRYPT scheme;
    TPM2B_DATA label;
    TPM2B_PUBLIC_KEY_RSA *out;
};

static TSS2_RC dec_op(struct kh_tpm_key *k, void *arg)
{
    struct dec_arg *a = arg;

    ESYS_TR sess;
    TSS2_RC rc;

    rc = key_session_locked(k, &sess);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    rc = Esys_RSA_Decrypt(g.esys, k->tr, sess, ESYS_TR_NONE, ESYS_TR_NONE,
                          &a->in, &a->scheme, &a->label, &a->out);
    key_session_done(sess, rc);
    return rc;
}

enum kh_tpm_rc kh_tpm_key_decrypt(KH_TPM_KEY *k, int oaep_md_nid,
                                  const unsigned char *label, size_t labellen,
                                  const unsigned char *in, size_t inlen,
                                  unsigned char *out, size_t *outlen,
                                  size_t outsize, char *err, size_t errlen)
{
    struct dec_arg a;
    enum kh_tpm_rc rc;

    memset(&a, 0, sizeof(a));
    if (!kh_tpm_key_can_decrypt(k)) {
        snprintf(err, errlen, "TPM key is sign-only: decryption refused "
                 "(provision with --allow-decrypt for identities that "
                 "need it)");
        return KH_TPM_ERR_UNSUPPORTED;
    }
    if (inlen > sizeof(a.in.buffer)) {
        snprintf(err, errlen, "RSA ciphertext too long");
        return KH_TPM_ERR_INPUT;
    }
    if (oaep_md_nid == NID_undef) {
        a.scheme.scheme = TPM2_ALG_RSAES;
    } else {
        a.scheme.scheme = TPM2_ALG_OAEP;
        a.scheme.details.oaep.hashAlg = hash_alg(oaep_md_nid, 0);
        if (a.scheme.details.oaep.hashAlg == TPM2_ALG_NULL) {
            snprintf(err, errlen, "OAEP digest not supported by the TPM");
            return KH_TPM_ERR_UNSUPPORTED;
        }
    }
    if (labellen > 0) {
        /* The TPM wants a NUL-terminated label; OpenSSL's is raw bytes. */
        snprintf(err, errlen, "OAEP labels are not supported with TPM keys");
        return KH_TPM_ERR_UNSUPPORTED;
    }
    (void)label;
    a.in.size = (UINT16)inlen;
    memcpy(a.in.buffer, in, inlen);
    rc = run_key_op(k, dec_op, &a, "TPM2_RSA_Decrypt", err, errlen);
    if (rc != KH_TPM_OK) {
        return rc;
    }
    if (a.out->size > outsize) {
        snprintf(err, errlen, "decrypted message does not fit");
        rc = KH_TPM_ERR;
    } else {
        memcpy(out, a.out->buffer, a.out->size);
        *outlen = a.out->size;
    }
    OPENSSL_cleanse(a.out, sizeof(*a.out));
    Esys_Free(a.out);
    return rc;
}

/* ---- creation, eviction, status ------------------------------------- */

/*
 * Runs a management function under the lock with a connection, retrying
 * once on a lost connection, and releasing the connection afterwards when
 * no key needs it.
 */
typedef enum kh_tpm_rc (*mgmt_fn)(void *arg, char *err, size_t errlen);

static enum kh_tpm_rc run_mgmt(mgmt_fn fn, void *arg, char *err,
                               size_t errlen)
{
    SIGPIPE_GUARD sp;
    enum kh_tpm_rc rc;
    int attempt;

    pthread_mutex_lock(&g.lock);
    sigpipe_block(&sp);
    for (attempt = 0; attempt < 2; attempt++) {
        rc = connect_locked(err, errlen);
        if (rc == KH_TPM_OK) {
            rc = fn(arg, err, errlen);
        }
        if (rc != KH_TPM_ERR_COMM) {
            break;
        }
        disconnect_locked(0);
    }
    op_done_locked();
    maybe_release_locked();
    sigpipe_restore(&sp);
    pthread_mutex_unlock(&g.lock);
    return rc;
}

/* Loads the storage parent used for new objects. */
static TSS2_RC new_parent_locked(ESYS_TR *tr, int *flush, uint32_t *parent)
{
    TSS2_RC rc;

    rc = from_tpm_locked(KH_TPM_SRK_HANDLE, NULL, tr);
    if (rc == TSS2_RC_SUCCESS) {
        *flush = 0;
        *parent = KH_TPM_SRK_HANDLE;
        return rc;
    }
    if (rc_is_comm(rc)) {
        return rc;
    }
    *parent = KH_TPM_RH_OWNER;
    *flush = 1;
    return primary_load_locked(NULL, tr);
}

struct create_arg {
    const KH_TPM_GEN *gen;
    TPM2B_PUBLIC tmpl;
    TPM2B_SENSITIVE_CREATE sens;
    KH_TPM_KEYFILE kf;
    unsigned char **der;
    size_t *derlen;
};

static enum kh_tpm_rc create_fn(void *varg, char *err, size_t errlen)
{
    struct create_arg *a = varg;
    static const TPM2B_DATA outside = { .size = 0 };
    static const TPML_PCR_SELECTION pcrs = { .count = 0 };
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    ESYS_TR parent = ESYS_TR_NONE, obj = ESYS_TR_NONE, pers = ESYS_TR_NONE;
    int flush = 0;
    uint32_t parent_handle = 0;
    enum kh_tpm_rc rc = KH_TPM_ERR;
    TSS2_RC trc;

    if (a->gen->persistent) {
        ESYS_TR t = ESYS_TR_NONE;

        trc = from_tpm_locked(a->gen->persistent, NULL, &t);
        if (trc == TSS2_RC_SUCCESS) {
            Esys_TR_Close(g.esys, &t);
            snprintf(err, errlen, "persistent handle 0x%08x is taken "
                     "(zeroize the identity using it, or pick another)",
                     a->gen->persistent);
            return KH_TPM_ERR_INPUT;
        }
        if (rc_is_comm(trc)) {
            return fail(trc, err, errlen, "checking the persistent handle");
        }
    }
    trc = new_parent_locked(&parent, &flush, &parent_handle);
    if (trc != TSS2_RC_SUCCESS) {
        return fail(trc, err, errlen, "loading the storage key");
    }
    for (;;) {
        /* TPM2_Create needs a free object slot of its own. */
        trc = Esys_Create(g.esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                          ESYS_TR_NONE, &a->sens, &a->tmpl, &outside, &pcrs,
                          &priv, &pub, NULL, NULL, NULL);
        if (rc_is_objmem(trc) && evict_one_locked(NULL)) {
            continue;
        }
        break;
    }
    if (trc != TSS2_RC_SUCCESS) {
        rc = fail(trc, err, errlen, "TPM2_Create");
        goto end;
    }
    a->kf.parent = parent_handle;
    a->kf.pub = *pub;
    a->kf.priv = *priv;
    if (a->gen->persistent) {
        for (;;) {
            trc = Esys_Load(g.esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, priv, pub, &obj);
            if (rc_is_objmem(trc) && evict_one_locked(NULL)) {
                continue;
            }
            break;
        }
        if (trc != TSS2_RC_SUCCESS) {
            rc = fail(trc, err, errlen, "TPM2_Load");
            goto end;
        }
        trc = Esys_EvictControl(g.esys, ESYS_TR_RH_OWNER, obj,
                                ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                a->gen->persistent, &pers);
        if (trc != TSS2_RC_SUCCESS) {
            rc = fail(trc, err, errlen, "TPM2_EvictControl");
            goto end;
        }
        Esys_TR_Close(g.esys, &pers);
    } else {
        rc = kh_tpm_keyfile_encode(&a->kf, a->der, a->derlen, err, errlen);
        if (rc != KH_TPM_OK) {
            goto end;
        }
    }
    rc = KH_TPM_OK;
end:
    if (obj != ESYS_TR_NONE) {
        Esys_FlushContext(g.esys, obj);
    }
    parent_done_locked(&parent, flush);
    Esys_Free(priv);
    Esys_Free(pub);
    return rc;
}

enum kh_tpm_rc kh_tpm_key_create(const KH_TPM_GEN *gen, unsigned char **der,
                                 size_t *derlen, EVP_PKEY **pubout, char *err,
                                 size_t errlen)
{
    struct create_arg a;
    TPMT_PUBLIC *t;
    enum kh_tpm_rc rc;
    unsigned char *tmpder = NULL;
    size_t tmplen = 0;

    memset(&a, 0, sizeof(a));
    if (der != NULL) {
        *der = NULL;
        *derlen = 0;
    }
    if (pubout != NULL) {
        *pubout = NULL;
    }
    if (gen->persistent != 0
        && (gen->persistent < KH_TPM_PERSISTENT_MIN
            || gen->persistent > KH_TPM_PERSISTENT_MAX
            || gen->persistent == KH_TPM_SRK_HANDLE)) {
        snprintf(err, errlen, "persistent handle 0x%08x out of range "
                 "(0x81000002-0x81ffffff; 0x81000001 is the SRK)",
                 gen->persistent);
        return KH_TPM_ERR_INPUT;
    }
    if (gen->authlen > sizeof(a.sens.sensitive.userAuth.buffer)) {
        snprintf(err, errlen, "TPM auth value too long");
        return KH_TPM_ERR_INPUT;
    }
    a.gen = gen;
    a.der = &tmpder;
    a.derlen = &tmplen;
    t = &a.tmpl.publicArea;
    t->nameAlg = TPM2_ALG_SHA256;
    t->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT
                          | TPMA_OBJECT_SENSITIVEDATAORIGIN
                          | TPMA_OBJECT_USERWITHAUTH
                          | TPMA_OBJECT_SIGN_ENCRYPT;
    if (gen->allow_decrypt) {
        t->objectAttributes |= TPMA_OBJECT_DECRYPT;
    }
    switch (gen->alg) {
    case KH_TPM_ALG_EC_P256:
    case KH_TPM_ALG_EC_P384:
        t->type = TPM2_ALG_ECC;
        t->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        t->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        t->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        t->parameters.eccDetail.curveID = gen->alg == KH_TPM_ALG_EC_P256
                                          ? TPM2_ECC_NIST_P256
                                          : TPM2_ECC_NIST_P384;
        break;
    case KH_TPM_ALG_RSA_2048:
    case KH_TPM_ALG_RSA_3072:
        t->type = TPM2_ALG_RSA;
        t->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        t->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        t->parameters.rsaDetail.keyBits = gen->alg == KH_TPM_ALG_RSA_2048
                                          ? 2048 : 3072;
        t->parameters.rsaDetail.exponent = 0;
        break;
    default:
        snprintf(err, errlen, "unknown key algorithm");
        return KH_TPM_ERR_INPUT;
    }
    if (gen->auth != NULL && gen->authlen > 0) {
        memcpy(a.sens.sensitive.userAuth.buffer, gen->auth, gen->authlen);
        a.sens.sensitive.userAuth.size = (UINT16)gen->authlen;
    } else {
        /*
         * No auth value, nothing to guess: exempt the key from dictionary-
         * attack protection. TPMs count every unclean power loss as a
         * failed try, and an appliance that lost power a few times must
         * not find its server key locked out.
         */
        t->objectAttributes |= TPMA_OBJECT_NODA;
    }
    a.kf.empty_auth = a.sens.sensitive.userAuth.size == 0;
    rc = run_mgmt(create_fn, &a, err, errlen);
    if (rc == KH_TPM_OK && pubout != NULL) {
        *pubout = kh_tpm_pub_to_pkey(&a.kf.pub, NULL, NULL, err, errlen);
        if (*pubout == NULL) {
            rc = KH_TPM_ERR;
        }
    }
    if (rc == KH_TPM_OK && der != NULL) {
        *der = tmpder;
        *derlen = tmplen;
        tmpder = NULL;
    }
    OPENSSL_free(tmpder);
    OPENSSL_cleanse(&a, sizeof(a));
    return rc;
}

static enum kh_tpm_rc evict_fn(void *arg, char *err, size_t errlen)
{
    uint32_t handle = *(uint32_t *)arg;
    ESYS_TR tr = ESYS_TR_NONE, out = ESYS_TR_NONE;
    TSS2_RC trc;

    trc = from_tpm_locked(handle, NULL, &tr);
    if (trc != TSS2_RC_SUCCESS) {
        if (rc_base(trc) == TPM2_RC_HANDLE) {
            snprintf(err, errlen, "no key at persistent handle 0x%08x",
                     handle);
            return KH_TPM_ERR_NOTFOUND;
        }
        return fail(trc, err, errlen, "reading the persistent key");
    }
    trc = Esys_EvictControl(g.esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD,
                            ESYS_TR_NONE, ESYS_TR_NONE, handle, &out);
    if (trc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(g.esys, &tr);
        return fail(trc, err, errlen, "TPM2_EvictControl");
    }
    return KH_TPM_OK;
}

enum kh_tpm_rc kh_tpm_evict(uint32_t handle, char *err, size_t errlen)
{
    if (handle < KH_TPM_PERSISTENT_MIN || handle > KH_TPM_PERSISTENT_MAX
        || handle == KH_TPM_SRK_HANDLE) {
        snprintf(err, errlen, "refusing to evict 0x%08x (not a keyhold "
                 "persistent key handle)", handle);
        return KH_TPM_ERR_INPUT;
    }
    return run_mgmt(evict_fn, &handle, err, errlen);
}

struct exists_arg {
    uint32_t handle;
    int exists;
};

static enum kh_tpm_rc exists_fn(void *varg, char *err, size_t errlen)
{
    struct exists_arg *a = varg;
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC trc;

    trc = from_tpm_locked(a->handle, NULL, &tr);
    if (trc == TSS2_RC_SUCCESS) {
        a->exists = 1;
        Esys_TR_Close(g.esys, &tr);
        return KH_TPM_OK;
    }
    if (rc_base(trc) == TPM2_RC_HANDLE) {
        a->exists = 0;
        return KH_TPM_OK;
    }
    return fail(trc, err, errlen, "reading the persistent handle");
}

int kh_tpm_handle_exists(uint32_t handle, char *err, size_t errlen)
{
    struct exists_arg a = { handle, 0 };

    if (run_mgmt(exists_fn, &a, err, errlen) != KH_TPM_OK) {
        return -1;
    }
    return a.exists;
}

struct da_arg {
    uint32_t counter, max;
    int lockout;
};

static enum kh_tpm_rc da_fn(void *varg, char *err, size_t errlen)
{
    struct da_arg *a = varg;
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    TSS2_RC trc;
    UINT32 i;

    trc = Esys_GetCapability(g.esys, ESYS_TR_NONE, ESYS_TR_NONE,
                             ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                             TPM2_PT_PERMANENT, 16, &more, &cap);
    if (trc != TSS2_RC_SUCCESS) {
        return fail(trc, err, errlen, "TPM2_GetCapability");
    }
    for (i = 0; i < cap->data.tpmProperties.count; i++) {
        TPMS_TAGGED_PROPERTY *p = &cap->data.tpmProperties.tpmProperty[i];

        if (p->property == TPM2_PT_PERMANENT) {
            a->lockout = (p->value & TPMA_PERMANENT_INLOCKOUT) != 0;
        } else if (p->property == TPM2_PT_LOCKOUT_COUNTER) {
            a->counter = p->value;
        } else if (p->property == TPM2_PT_MAX_AUTH_FAIL) {
            a->max = p->value;
        }
    }
    Esys_Free(cap);
    return KH_TPM_OK;
}

enum kh_tpm_rc kh_tpm_da_info(uint32_t *counter, uint32_t *max_tries,
                              int *in_lockout, char *err, size_t errlen)
{
    struct da_arg a = { 0, 0, 0 };
    enum kh_tpm_rc rc = run_mgmt(da_fn, &a, err, errlen);

    *counter = a.counter;
    *max_tries = a.max;
    *in_lockout = a.lockout;
    return rc;
}

/* ---- sealing --------------------------------------------------------- */

static void pcr_select(TPML_PCR_SELECTION *sel, uint32_t mask)
{
    int i;

    memset(sel, 0, sizeof(*sel));
    sel->count = 1;
    sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel->pcrSelections[0].sizeofSelect = 3;
    for (i = 0; i < 24; i++) {
        if (mask & (1u << i)) {
            sel->pcrSelections[0].pcrSelect[i / 8] |= (uint8_t)(1u << (i % 8));
        }
    }
}

/* Starts a policy (or trial) session and runs TPM2_PolicyPCR in it. */
static TSS2_RC pcr_session_locked(const TPML_PCR_SELECTION *sel, int trial,
                                  ESYS_TR *sess)
{
    static const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_NULL };
    static const TPM2B_DIGEST empty = { .size = 0 };
    TSS2_RC rc;

    rc = Esys_StartAuthSession(g.esys, ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                               NULL, trial ? TPM2_SE_TRIAL : TPM2_SE_POLICY,
                               &sym, TPM2_ALG_SHA256, sess);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    rc = Esys_PolicyPCR(g.esys, *sess, ESYS_TR_NONE, ESYS_TR_NONE,
                        ESYS_TR_NONE, &empty, sel);
    if (rc != TSS2_RC_SUCCESS) {
        Esys_FlushContext(g.esys, *sess);
        *sess = ESYS_TR_NONE;
    }
    return rc;
}

struct seal_arg {
    TPM2B_SENSITIVE_CREATE sens;
    uint32_t mask;
    KH_TPM_KEYFILE kf;
    unsigned char **der;
    size_t *derlen;
};

static enum kh_tpm_rc seal_fn(void *varg, char *err, size_t errlen)
{
    struct seal_arg *a = varg;
    static const TPM2B_DATA outside = { .size = 0 };
    static const TPML_PCR_SELECTION nopcrs = { .count = 0 };
    TPM2B_PUBLIC tmpl;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_DIGEST *policy = NULL;
    ESYS_TR parent = ESYS_TR_NONE, sess = ESYS_TR_NONE;
    int flush = 0;
    uint32_t parent_handle = 0;
    enum kh_tpm_rc rc = KH_TPM_ERR;
    TSS2_RC trc;

    memset(&tmpl, 0, sizeof(tmpl));
    tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM
                                       | TPMA_OBJECT_FIXEDPARENT;
    tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    if (a->mask != 0) {
        pcr_select(&a->kf.pcrs, a->mask);
        a->kf.has_pcr_policy = 1;
        trc = pcr_session_locked(&a->kf.pcrs, 1, &sess);
        if (trc == TSS2_RC_SUCCESS) {
            trc = Esys_PolicyGetDigest(g.esys, sess, ESYS_TR_NONE,
                                       ESYS_TR_NONE, ESYS_TR_NONE, &policy);
        }
        if (sess != ESYS_TR_NONE) {
            Esys_FlushContext(g.esys, sess);
        }
        if (trc != TSS2_RC_SUCCESS) {
            return fail(trc, err, errlen, "computing the PCR policy");
        }
        tmpl.publicArea.authPolicy = *policy;
        Esys_Free(policy);
    } else {
        /* No PCRs: bound to this TPM only, usable with an empty auth. */
        tmpl.publicArea.objectAttributes |= TPMA_OBJECT_USERWITHAUTH;
        a->kf.empty_auth = 1;
    }
    trc = new_parent_locked(&parent, &flush, &parent_handle);
    if (trc != TSS2_RC_SUCCESS) {
        return fail(trc, err, errlen, "loading the storage key");
    }
    for (;;) {
        trc = Esys_Create(g.esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                          ESYS_TR_NONE, &a->sens, &tmpl, &outside, &nopcrs,
                          &priv, &pub, NULL, NULL, NULL);
        if (rc_is_objmem(trc) && evict_one_locked(NULL)) {
            continue;
        }
        break;
    }
    if (trc != TSS2_RC_SUCCESS) {
        rc = fail(trc, err, errlen, "TPM2_Create (seal)");
        goto end;
    }
    a->kf.sealed = 1;
    a->kf.parent = parent_handle;
    a->kf.pub = *pub;
    a->kf.priv = *priv;
    rc = kh_tpm_keyfile_encode(&a->kf, a->der, a->derlen, err, errlen);
end:
    parent_done_locked(&parent, flush);
    Esys_Free(priv);
    Esys_Free(pub);
    return rc;
}

enum kh_tpm_rc kh_tpm_seal(const unsigned char *data, size_t datalen,
                           uint32_t pcr_mask, unsigned char **der,
                           size_t *derlen, char *err, size_t errlen)
{
    struct seal_arg a;
    enum kh_tpm_rc rc;

    memset(&a, 0, sizeof(a));
    *der = NULL;
    *derlen = 0;
    if (datalen == 0 || datalen > sizeof(a.sens.sensitive.data.buffer)) {
        snprintf(err, errlen, "sealed data must be 1-%zu bytes",
                 sizeof(a.sens.sensitive.data.buffer));
        return KH_TPM_ERR_INPUT;
    }
    if (pcr_mask >= (1u << 24)) {
        snprintf(err, errlen, "PCR numbers must be 0-23");
        return KH_TPM_ERR_INPUT;
    }
    memcpy(a.sens.sensitive.data.buffer, data, datalen);
    a.sens.sensitive.data.size = (UINT16)datalen;
    a.mask = pcr_mask;
    a.der = der;
    a.derlen = derlen;
    rc = run_mgmt(seal_fn, &a, err, errlen);
    OPENSSL_cleanse(&a, sizeof(a));
    return rc;
}

struct unseal_arg {
    TPM2B_SENSITIVE_DATA *out;
};

static TSS2_RC unseal_op(struct kh_tpm_key *k, void *varg)
{
    struct unseal_arg *a = varg;
    ESYS_TR sess = ESYS_TR_PASSWORD;
    TSS2_RC rc;

    if (k->has_pcr_policy) {
        rc = pcr_session_locked(&k->pcrs, 0, &sess);
        if (rc != TSS2_RC_SUCCESS) {
            return rc;
        }
    }
    rc = Esys_Unseal(g.esys, k->tr, sess, ESYS_TR_NONE, ESYS_TR_NONE,
                     &a->out);
    if (k->has_pcr_policy && sess != ESYS_TR_NONE) {
        /* A policy session used in a command is flushed unless continued;
         * flushing again only fails harmlessly. */
        Esys_FlushContext(g.esys, sess);
    }
    return rc;
}

enum kh_tpm_rc kh_tpm_unseal(const unsigned char *der, size_t derlen,
                             unsigned char *out, size_t *outlen,
                             size_t outsize, char *err, size_t errlen)
{
    KH_TPM_KEY *k = NULL;
    struct unseal_arg a = { NULL };
    enum kh_tpm_rc rc;

    rc = kh_tpm_key_from_der(der, derlen, &k, err, errlen);
    if (rc != KH_TPM_OK) {
        return rc;
    }
    if (!k->sealed) {
        snprintf(err, errlen, "not a sealed-data object");
        rc = KH_TPM_ERR_INPUT;
        goto end;
    }
    rc = run_key_op(k, unseal_op, &a, "TPM2_Unseal", err, errlen);
    if (rc == KH_TPM_OK) {
        if (a.out->size > outsize) {
            snprintf(err, errlen, "sealed data larger than the buffer");
            rc = KH_TPM_ERR;
        } else {
            memcpy(out, a.out->buffer, a.out->size);
            *outlen = a.out->size;
        }
    } else if (rc == KH_TPM_ERR && strstr(err, "policy") != NULL) {
        /* Keep the TSS text, add what it means here. */
        size_t n = strlen(err);

        snprintf(err + n, errlen - n, " (PCR values changed since sealing)");
    }
end:
    if (a.out != NULL) {
        OPENSSL_cleanse(a.out, sizeof(*a.out));
        Esys_Free(a.out);
    }
    kh_tpm_key_free(k);
    return rc;
}

/*
 * A PIN file holding a sealed PIN (kh_pin_read_file found the PEM label):
 * unseal it into |pin|. One trailing newline, as sealed from a PIN file
 * written with echo, is dropped.
 */
enum kh_pin_rc kh_pin_unseal(const char *pem, size_t pemlen, char *pin,
                             size_t pinsize, size_t *pinlen, char *err,
                             size_t errlen)
{
    BIO *mem = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long derlen = 0;
    size_t n = 0;
    enum kh_pin_rc prc = KH_PIN_ERR_FORMAT;
    enum kh_tpm_rc rc;

    *pinlen = 0;
    if (pinsize < 2) {
        snprintf(err, errlen, "PIN buffer too small");
        return KH_PIN_ERR_FORMAT;
    }
    mem = BIO_new_mem_buf(pem, (int)pemlen);
    if (mem == NULL || !PEM_read_bio(mem, &name, &header, &der, &derlen)
        || strcmp(name, KH_TPM_PEM_LABEL) != 0) {
        snprintf(err, errlen, "sealed PIN: bad PEM");
        goto end;
    }
    rc = kh_tpm_unseal(der, (size_t)derlen, (unsigned char *)pin, &n,
                       pinsize - 1, err, errlen);
    if (rc != KH_TPM_OK) {
        prc = rc == KH_TPM_ERR_INPUT || rc == KH_TPM_ERR_UNSUPPORTED
              ? KH_PIN_ERR_FORMAT : KH_PIN_ERR_IO;
        goto end;
    }
    if (n > 0 && pin[n - 1] == '\n') {
        n--;
    }
    if (n == 0 || n > KH_PIN_MAX || memchr(pin, '\0', n) != NULL
        || memchr(pin, '\n', n) != NULL) {
        OPENSSL_cleanse(pin, pinsize);
        snprintf(err, errlen, "sealed PIN: not one PIN of at most %d "
                 "characters", KH_PIN_MAX);
        goto end;
    }
    pin[n] = '\0';
    *pinlen = n;
    prc = KH_PIN_OK;
end:
    kh_tpm_release();
    BIO_free(mem);
    OPENSSL_free(name);
    OPENSSL_free(header);
    if (der != NULL) {
        OPENSSL_clear_free(der, (size_t)derlen);
    }
    return prc;
}

/* ---- endorsement key identity ---------------------------------------- */

/*
 * The TPM's identity for reports: the SHA-256 of the SubjectPublicKeyInfo
 * of its endorsement key, made with the TCG EK Credential Profile's
 * default ECC NIST P-256 template (as `tpm2_createek -G ecc` does), or the
 * RSA-2048 one on a TPM without ECC. The EK is re-derived from the
 * endorsement seed each time, so the value is stable for the TPM's life.
 */
static const TPM2B_DIGEST ek_policy = {
    .size = 32,
    .buffer = { 0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90,
                0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e,
                0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14,
                0x69, 0xaa },
};

#define EK_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT \
                  | TPMA_OBJECT_SENSITIVEDATAORIGIN \
                  | TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED \
                  | TPMA_OBJECT_DECRYPT)

struct ek_arg {
    TPM2B_PUBLIC pub;
};

static enum kh_tpm_rc ek_fn(void *varg, char *err, size_t errlen)
{
    struct ek_arg *a = varg;
    static const TPM2B_SENSITIVE_CREATE sens = { .size = 0 };
    static const TPM2B_DATA outside = { .size = 0 };
    static const TPML_PCR_SELECTION pcrs = { .count = 0 };
    TPM2B_PUBLIC tmpl;
    TPM2B_PUBLIC *out = NULL;
    ESYS_TR ek = ESYS_TR_NONE;
    TSS2_RC rc;

    memset(&tmpl, 0, sizeof(tmpl));
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = EK_ATTRS;
    tmpl.publicArea.authPolicy = ek_policy;
    if (tpm_has_ecc_locked()) {
        tmpl.publicArea.type = TPM2_ALG_ECC;
        tmpl.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
        tmpl.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
        tmpl.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        tmpl.publicArea.unique.ecc.x.size = 32;
        tmpl.publicArea.unique.ecc.y.size = 32;
    } else {
        tmpl.publicArea.type = TPM2_ALG_RSA;
        tmpl.publicArea.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
        tmpl.publicArea.parameters.rsaDetail.symmetric.keyBits.aes = 128;
        tmpl.publicArea.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        tmpl.publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        tmpl.publicArea.parameters.rsaDetail.keyBits = 2048;
        tmpl.publicArea.unique.rsa.size = 256;
    }
    for (;;) {
        rc = Esys_CreatePrimary(g.esys, ESYS_TR_RH_ENDORSEMENT,
                                ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                &sens, &tmpl, &outside, &pcrs, &ek, &out,
                                NULL, NULL, NULL);
        if (rc_is_objmem(rc) && evict_one_locked(NULL)) {
            continue;
        }
        break;
    }
    if (rc != TSS2_RC_SUCCESS) {
        return fail(rc, err, errlen, "creating the endorsement key");
    }
    a->pub = *out;
    Esys_Free(out);
    Esys_FlushContext(g.esys, ek);
    return KH_TPM_OK;
}

enum kh_tpm_rc kh_tpm_ek_id(char *out, size_t outlen, char *err,
                            size_t errlen)
{
    struct ek_arg a;
    EVP_PKEY *pk = NULL;
    unsigned char *der = NULL, md[32];
    unsigned int mdlen = 0;
    enum kh_tpm_rc rc;
    int len, i;

    memset(&a, 0, sizeof(a));
    if (outlen < 7 + 2 * sizeof(md) + 1) {
        snprintf(err, errlen, "buffer too small");
        return KH_TPM_ERR_INPUT;
    }
    rc = run_mgmt(ek_fn, &a, err, errlen);
    if (rc != KH_TPM_OK) {
        return rc;
    }
    pk = kh_tpm_pub_to_pkey(&a.pub, NULL, NULL, err, errlen);
    len = pk != NULL ? i2d_PUBKEY(pk, &der) : -1;
    if (len <= 0 || !EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(),
                                NULL)) {
        rc = KH_TPM_ERR;
        if (pk != NULL) {
            snprintf(err, errlen, "cannot encode the endorsement key");
        }
        goto end;
    }
    memcpy(out, "sha256:", 7);
    for (i = 0; i < (int)mdlen; i++) {
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    }
end:
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
    return rc;
}
