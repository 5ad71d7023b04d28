/* SPDX-License-Identifier: MIT */
/*
 * keyhold benchmark (make bench): shared declarations. One binary,
 * kh-bench, is both the driver (rounds, tables, JSON) and every measuring
 * child (one process per key path, so the paths never share a PKCS#11
 * module instance, a login state or an OpenSSL library context).
 */
#ifndef KH_BENCH_H
#define KH_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <p11-kit/pkcs11.h>

#define KHB_MAX_THREADS 8
#define KHB_MSG_LEN 128         /* about a TLS 1.3 CertificateVerify input */

/* Algorithms every table row is about. */
enum khb_alg {
    KHB_ECDSA = 0,              /* ECDSA P-256, SHA-256 */
    KHB_RSA_PKCS1,              /* RSA-2048 PKCS#1 v1.5, SHA-256 */
    KHB_RSA_PSS,                /* RSA-2048 PSS, SHA-256, salt 32 */
    KHB_NALG
};

extern const char *const khb_alg_name[KHB_NALG];

/* Where the bench's token, keys and certificates are (set by bench.sh). */
typedef struct khb_env {
    const char *dir;            /* KHB_DIR: certs, keys, pin file */
    const char *module;         /* KHB_MODULE: PKCS#11 module */
    const char *token;          /* KHB_TOKEN: token label */
    const char *pin;            /* KHB_PIN */
    const char *provdir;        /* KHB_PROVIDER_DIR: holds keyhold.so */
    const char *engine;         /* KHB_LIBP11_ENGINE: libp11 engine .so */
    const char *tpm_tcti;       /* KHB_TPM_TCTI: swtpm TCTI or NULL */
    double seconds;             /* measurement window */
} KHB_ENV;

extern KHB_ENV khb_env;

/* One operation of a measured loop; returns 1 ok, 0 failure. */
typedef int (*khb_op_fn)(void *state);

/*
 * Runs |op| on |nthreads| threads, state[i] for thread i, and returns the
 * aggregate operations per second over one window of khb_env.seconds,
 * after a short warm-up on every thread. Returns -1 on any failure.
 */
double khb_measure(khb_op_fn op, void **state, int nthreads);

/* Profile mode: |n| operations in this thread, each through khb_prof_op. */
int khb_prof_op(khb_op_fn op, void *state);
int khb_profile_loop(khb_op_fn op, void *state, long n);
/* "kh-bench profile PATH ALG N" (PATH raw|sw|keyhold|libp11|tpm-keyhold|
 * tpm-peer, ALG one of khb_alg_name). */
int khb_profile_raw(enum khb_alg alg, long n);
int khb_profile(const char *path, enum khb_alg alg, long n);
int khb_profile_hs(const char *variant, const char *kalg, long n);
int khb_profile_tls(const char *path, const char *kalg, long n);
int khb_cold_sign(const char *kalg, long n);
uint64_t khb_thread_cpu_ns(void);

/* Prints one result line for the driver: "R <name> <value>". */
void khb_result(const char *name, double value);
/* A rate from the last khb_measure(): "R name v" and, per CPU-second of
 * the measuring threads, "R cpu.name v". */
void khb_rate(const char *name, double value);
/* Tells the driver a path is unavailable: "U <path> <reason>". */
void khb_unavailable(const char *path, const char *reason);
/* The driver's round number (KHB_ROUND), to rotate the order of paths. */
int khb_round(void);

/* Monotonic time in seconds / nanoseconds. */
double khb_now(void);
uint64_t khb_now_ns(void);

/* Path of a file in KHB_DIR (static buffer per call slot 0..3). */
const char *khb_path(int slot, const char *name);

/* Prints the OpenSSL error queue with a prefix, to stderr. */
void khb_ossl_err(const char *what);

/* --- raw PKCS#11 (bench_p11.c) --- */
typedef struct khb_p11 {
    void *dlh;
    CK_FUNCTION_LIST_PTR f;
    CK_SLOT_ID slot;
} KHB_P11;

/* dlopen + C_Initialize (OS locking) + find the bench token's slot. */
int khb_p11_open(KHB_P11 *p, int allow_initialized);
/* Opens a session; logs in with it when |login| is set. */
int khb_p11_session(KHB_P11 *p, CK_SESSION_HANDLE *s, int login);
/* Finds a private key by label. */
int khb_p11_find_key(KHB_P11 *p, CK_SESSION_HANDLE s, const char *label,
                     CK_OBJECT_HANDLE *key);
/* Sets up mechanism and to-be-signed bytes for |alg| over |msg|. */
void khb_p11_prepare(enum khb_alg alg, const unsigned char *msg, size_t len,
                     CK_MECHANISM *mech, CK_RSA_PKCS_PSS_PARAMS *pss,
                     unsigned char *tbs, CK_ULONG *tbslen);
/* Counts the module's open sessions (handles that answer C_GetSessionInfo). */
int khb_p11_count_sessions(KHB_P11 *p);

/* The raw path inside the multi-path "sign" child. */
int khb_raw_open(void);
void *khb_raw_state(enum khb_alg alg, int thread);
int khb_raw_op(void *state);

/* --- OpenSSL signing and TLS (bench_ossl.c) --- */
enum khb_path {
    KHB_PATH_SW = 0,            /* software key, default provider */
    KHB_PATH_KEYHOLD,           /* keyhold provider, key from pkcs11: URI */
    KHB_PATH_LIBP11,            /* libp11's pkcs11 engine */
    KHB_PATH_TPM_KEYHOLD,       /* keyhold provider, tpm2 key (its default
                                   on a TCTI without a resource manager:
                                   connect, load, sign, flush per op) */
    KHB_PATH_TPM_PEER,          /* tpm2-openssl provider */
    KHB_PATH_TPM_KEYHOLD_HOLD   /* keyhold, KEYHOLD_TPM_HOLD=1: key stays
                                   loaded, as with a resource manager */
};

/* "sign": raw, software, keyhold and libp11 windows interleaved in one
 * process (adjacent in time, so their ratios survive a noisy machine). */
int khb_child_sign_all(void);
/* "tls": software, keyhold and libp11 servers, interleaved likewise. */
int khb_child_tls_all(void);
/* TPM paths, one process each (swtpm holds three objects). */
int khb_child_sign(enum khb_path path);
int khb_child_tls(enum khb_path path);
int khb_child_footprint(void);
int khb_child_memory(void);
int khb_child_tpm_commands(enum khb_path path);

/* Loads "default" (+ "keyhold" when |keyhold|) into a new library context. */
OSSL_LIB_CTX *khb_libctx_new(int keyhold);
EVP_PKEY *khb_load_pem_key(OSSL_LIB_CTX *libctx, const char *file);
EVP_PKEY *khb_load_uri_key(OSSL_LIB_CTX *libctx, const char *uri,
                           const char *propq);
/* "pkcs11:token=...;object=LABEL;type=private?module-path=..&pin-source=..". */
const char *khb_uri(int slot, const char *label, int with_pin_source);

/* --- start-up (bench_start.c) --- */
int khb_child_first_sig(const char *how);

/* --- libp11 engine (bench_libp11.c) --- */
EVP_PKEY *khb_libp11_load(const char *label);

#endif
