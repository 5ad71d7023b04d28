/* SPDX-License-Identifier: MIT */
/*
 * The keyhold CLI's internal API: exit codes, the global context, identities
 * (config on disk, state directory, generations), the token-management
 * layer, loading keys through the provider, CSRs, certificate checks, the
 * atomic install, renewal state (status.json), locks, the audit log and the
 * provisioning reports. Every provision/ C file includes this; enrolment
 * and renewal (est*.c, cmd_enroll.c, cmd_renew.c, cmd_rekey.c) build on it.
 *
 * Conventions: functions that can fail the command return an exit code
 * (enum kh_exit, KH_EXIT_OK on success) and write one line naming the
 * problem and its fix into err; helpers returning int truth say so.
 */
#ifndef KH_PROVISION_KEYHOLD_H
#define KH_PROVISION_KEYHOLD_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* ------------------------------------------------------------------ */
/* Exit codes: the same for every command (docs/keyhold.1). */
enum kh_exit {
    KH_EXIT_OK = 0,
    KH_EXIT_USAGE = 1,      /* bad command line */
    KH_EXIT_REJECTED = 2,   /* a cert, CSR, URI, name or file fails a check */
    KH_EXIT_TOKEN = 3,      /* token / TPM error */
    KH_EXIT_NETWORK = 4,    /* network / CA error */
    KH_EXIT_ATTENTION = 5,  /* expiring, overdue, hosts-changed, no-cert */
    KH_EXIT_PIN = 6,        /* PIN or key auth incorrect, no PIN source */
    KH_EXIT_PERM = 7,       /* permission denied */
    KH_EXIT_BROKEN = 8,     /* expired, key-missing, mismatch, unreachable */
    KH_EXIT_BUSY = 75       /* another keyhold holds the identity's lock */
};

#define KH_ERR_MAX 1024
#define KH_NAME_MAX 64
#define KH_PATH_MAX 4096
#define KH_CLOCK_SKEW 300      /* seconds of clock skew tolerated */

/* ------------------------------------------------------------------ */
/* Global context of one CLI run. */
typedef struct kh_ctx {
    char conf_dir[KH_PATH_MAX];    /* --conf-dir, $KEYHOLD_CONF_DIR */
    char state_dir[KH_PATH_MAX];   /* --state-dir, $KEYHOLD_STATE_DIR */
    int debug;                     /* --debug or $KEYHOLD_DEBUG */
    const char *cmd;               /* running subcommand */
    OSSL_LIB_CTX *libctx;          /* NULL: the default library context */
    OSSL_PROVIDER *prov_keyhold;   /* loaded lazily by kh_prov_load() */
    OSSL_PROVIDER *prov_default;
} KH_CTX;

/* One line "keyhold: <msg>" on stderr (+ the OpenSSL error queue with
 * --debug). */
void kh_err(KH_CTX *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kh_warn(KH_CTX *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kh_dbg(KH_CTX *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* snprintf into err (NULL-safe); returns |code|, so callers can
 * `return kh_seterr(...)`. */
int kh_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Management commands (provision, install, zeroize, token, set-hosts,
 * renew, rekey): KH_EXIT_PERM for members of group keyhold that are not
 * root, or when the conf/state dirs are not writable. */
int kh_require_manage(KH_CTX *ctx, const char *what, char *err, size_t errlen);
/* The rest of a command line that names one identity or --all (ALL, the
 * options read up to optind): anything else prints USAGE and is
 * KH_EXIT_USAGE; then kh_require_manage, its refusal printed after
 * PREFIX. KH_EXIT_OK to go on. */
int kh_manage_args(KH_CTX *ctx, const char *what, const char *prefix, int all,
                   int argc, const char *usage);

/* Subcommand entry point: argv[0] is the subcommand name. */
typedef int (*kh_cmd_fn)(KH_CTX *ctx, int argc, char **argv);
/* Returns 1 when argv holds -h/--help (after printing |usage|). */
int kh_want_help(int argc, char **argv, const char *usage);

/* ------------------------------------------------------------------ */
/* Small string lists (hosts, SANs, reload hooks). */
typedef struct kh_strlist {
    char **v;
    size_t n;
} KH_STRLIST;
int kh_strlist_add(KH_STRLIST *l, const char *s);   /* copies; 1 ok */
int kh_strlist_has(const KH_STRLIST *l, const char *s);
void kh_strlist_free(KH_STRLIST *l);

/* ------------------------------------------------------------------ */
/* Identities: $KEYHOLD_CONF_DIR/NAME.conf, `key = value` lines, '#'
 * comments, repeated keys for lists. The config keeps every entry in
 * order (unknown keys round-trip), so enrolment settings live here too.
 *
 * Keys used by the CLI:
 *   backend = pkcs11 | tpm2       key-uri = pkcs11:token=..;id=..;type=private
 *   module = /path/libsofthsm2.so (PKCS#11 module, default SoftHSM)
 *   token = LABEL                 key-id = HEX (CKA_ID)
 *   alg = ec-p256|ec-p384|rsa-2048|rsa-3072
 *   role = recording|management|mobile      allow-decrypt = yes|no
 *   host = NAME-OR-IP              san = dns:NAME | ip:ADDR   (repeated)
 *   pin-file = PATH                ca = PATH (trusted issuing CA, PEM)
 *   reload = COMMAND               (repeated; run by kh_run_hooks)
 */
typedef struct kh_kv {
    char *key;
    char *value;
} KH_KV;

typedef struct kh_identity {
    char name[KH_NAME_MAX + 1];
    KH_KV *kv;
    size_t nkv;
} KH_IDENTITY;

/* 1 when |name| is a valid identity name ([A-Za-z0-9._-], no "..", no '/',
 * not starting with '.' or '-', at most KH_NAME_MAX). */
int kh_name_valid(const char *name);
/* Exit code; KH_EXIT_REJECTED with "unknown identity" when absent. */
int kh_identity_load(KH_CTX *ctx, const char *name, KH_IDENTITY **out,
                     char *err, size_t errlen);
/* kh_identity_load for command WHAT, a failure printed as "WHAT: why". */
int kh_identity_load_cmd(KH_CTX *ctx, const char *what, const char *name,
                         KH_IDENTITY **out);
/* The one identity NAME left after a command's options (at optind): NULL
 * after printing USAGE (*rc KH_EXIT_USAGE) or refusing an invalid name as
 * "WHAT: invalid identity name" (*rc KH_EXIT_REJECTED). */
const char *kh_arg_name(KH_CTX *ctx, const char *what, int argc, char **argv,
                        const char *usage, int *rc);
int kh_identity_exists(KH_CTX *ctx, const char *name);
/* Writes the config atomically (tmp, fsync, rename, fsync dir), mode 0640. */
int kh_identity_save(KH_CTX *ctx, const KH_IDENTITY *id, char *err,
                     size_t errlen);
KH_IDENTITY *kh_identity_new(const char *name);
void kh_identity_free(KH_IDENTITY *id);
/* Buffer parser, no side effects (fuzzed): 1 ok, 0 with err ("line N: ..."). */
int kh_config_parse_buf(const char *buf, size_t len, KH_IDENTITY *out,
                        char *err, size_t errlen);
/* First value of |key| or NULL; kh_id_get_all collects every value. */
const char *kh_id_get(const KH_IDENTITY *id, const char *key);
int kh_id_get_all(const KH_IDENTITY *id, const char *key, KH_STRLIST *out);
int kh_id_get_bool(const KH_IDENTITY *id, const char *key, int dflt);
/* Replaces every |key| entry with one (value NULL: removes them). */
int kh_id_set(KH_IDENTITY *id, const char *key, const char *value);
/* Appends one more |key| entry (lists). */
int kh_id_add(KH_IDENTITY *id, const char *key, const char *value);
/* Lists identity names (sorted) from the conf dir's *.conf. */
int kh_identity_list(KH_CTX *ctx, KH_STRLIST *names);

/* Host names / SANs. "dns:a,ip:1.2.3.4" -> list of "dns:a", "ip:1.2.3.4"
 * (a bare name means dns:). 1 ok, 0 with err. */
int kh_sans_parse(const char *spec, KH_STRLIST *out, char *err, size_t errlen);
int kh_host_is_ip(const char *host);
/* 1 when |v| is a --host-in / host-in value: both, cn or san. */
int kh_host_in_valid(const char *v);
/* Every name the certificate must carry: host (dns: or ip:) + san entries. */
int kh_identity_names(const KH_IDENTITY *id, KH_STRLIST *out);
/* RFC 6125 matching, case-insensitive, '*' only as the whole leftmost
 * label of |pattern|. 1 match, 0 not (fuzzed). */
int kh_host_matches(const char *pattern, const char *host);
/* 1 when the cert carries |name| ("dns:x" in CN or DNS SAN, "ip:x" in an
 * IP SAN). */
int kh_cert_has_name(X509 *cert, const char *name);

/* ------------------------------------------------------------------ */
/* Paths and files. */
int kh_path(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* $STATE/NAME (created 02750 on demand by kh_state_prepare). */
int kh_state_idir(KH_CTX *ctx, const char *name, char *buf, size_t len);
/* Writes |len| bytes to |path| atomically: path.tmp (O_EXCL|O_NOFOLLOW),
 * fsync, rename, fsync(dir). 1 ok, 0 with err. */
int kh_write_atomic(const char *path, const void *data, size_t len, int mode,
                    char *err, size_t errlen);
/* Writes a new file (O_EXCL), fsync; no rename (for staging dirs). */
int kh_write_new(const char *path, const void *data, size_t len, int mode,
                 char *err, size_t errlen);
int kh_fsync_dir(const char *dir);
/* Reads a whole file (at most |max| bytes) into a malloc'd NUL-terminated
 * buffer. */
int kh_read_file(const char *path, size_t max, char **buf, size_t *len,
                 char *err, size_t errlen);
int kh_rm_rf(const char *path);
/* abort() when $KEYHOLD_CRASH_AT names |step| (crash tests). */
void kh_crash_point(const char *step);

/* ------------------------------------------------------------------ */
/* PINs: identity pin-file, $KEYHOLD_PIN_FILE,
 * $CREDENTIALS_DIRECTORY/keyhold-pin, else a prompt with echo off on a
 * terminal, else KH_EXIT_PIN at once. A refused PIN file (permissions,
 * symlink) gives KH_EXIT_PERM. The caller wipes |pin| with
 * OPENSSL_cleanse. |id| may be NULL. */
int kh_pin_obtain(KH_CTX *ctx, const KH_IDENTITY *id, char *pin, size_t pinsize,
                  size_t *pinlen, char *err, size_t errlen);
/* An explicit file (token init --pin-file): KH_EXIT_PERM / KH_EXIT_PIN. */
int kh_pin_from_file(const char *path, char *pin, size_t pinsize,
                     size_t *pinlen, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Token management (token.c): the thin PKCS#11 layer for what the provider
 * does not do: token init, PINs, key generation, cert objects, deletion. */
typedef struct kh_token KH_TOKEN;

typedef struct kh_token_info {
    char label[33];
    char serial[17];
    char manufacturer[33];
    char model[17];
    unsigned long flags;            /* CK_TOKEN_INFO.flags */
    unsigned long free_public;      /* CK_UNAVAILABLE_INFORMATION = ~0 */
    unsigned long free_private;
    int has_rsa_pss;
    int has_ecdsa;
    int has_rsa;
    unsigned long slot;
} KH_TOKEN_INFO;

#define KH_KEYID_LEN 16
#define KH_KEYID_HEX (2 * KH_KEYID_LEN + 1)

/* Opens the module (NULL: SoftHSM default) and a session on the token with
 * this label. KH_EXIT_TOKEN with the fix when missing. */
int kh_token_open(KH_CTX *ctx, const char *module, const char *label,
                  KH_TOKEN **out, char *err, size_t errlen);
/* Token of an identity: module/token from its config (or its key URI). */
int kh_token_open_identity(KH_CTX *ctx, const KH_IDENTITY *id, KH_TOKEN **out,
                           char *err, size_t errlen);
void kh_token_close(KH_TOKEN *t);
int kh_token_get_info(KH_TOKEN *t, KH_TOKEN_INFO *info, char *err,
                      size_t errlen);
/* User login (once; CKR_PIN_INCORRECT -> KH_EXIT_PIN; refuses when the token
 * reports CKF_USER_PIN_FINAL_TRY or LOCKED, without trying). */
int kh_token_login(KH_TOKEN *t, const char *pin, size_t pinlen, char *err,
                   size_t errlen);
/* Generates a key pair: label keyhold:NAME:GEN, random 16-byte CKA_ID
 * (hex in id_hex), attributes checked after generation. */
int kh_token_keygen(KH_TOKEN *t, const char *alg, const char *name,
                    unsigned gen, int allow_decrypt,
                    char id_hex[KH_KEYID_HEX], char *err, size_t errlen);
/* The public key of CKA_ID (no login needed). KH_EXIT_BROKEN when absent. */
int kh_token_get_pubkey(KH_TOKEN *t, const char *id_hex, EVP_PKEY **pub,
                        char *err, size_t errlen);
/* Stores |cert| as CKO_CERTIFICATE with CKA_ID id_hex (older cert objects
 * with that id are replaced). Needs login. */
int kh_token_store_cert(KH_TOKEN *t, const char *id_hex, const char *label,
                        X509 *cert, char *err, size_t errlen);
/* Destroys every object with CKA_ID id_hex (key pair + certs). Needs login.
 * *count gets the number destroyed (may be NULL). */
int kh_token_destroy_id(KH_TOKEN *t, const char *id_hex, int *count,
                        char *err, size_t errlen);
/* CKA_IDs (hex) of private keys whose label starts with keyhold:NAME: */
int kh_token_list_ids(KH_TOKEN *t, const char *name, KH_STRLIST *ids,
                      char *err, size_t errlen);
/* Token init on a free SoftHSM slot; serial out. */
int kh_token_init(KH_CTX *ctx, const char *module, const char *label,
                  const char *so_pin, size_t so_len, const char *pin,
                  size_t pin_len, char serial[17], char *err, size_t errlen);
int kh_token_set_pin(KH_TOKEN *t, const char *old_pin, size_t old_len,
                     const char *new_pin, size_t new_len, char *err,
                     size_t errlen);
/* pkcs11: URI of a private key (module-path added when not the default). */
char *kh_token_key_uri(const char *module, const char *label,
                       const char *id_hex);

/* ------------------------------------------------------------------ */
/* Provider (prov.c): every key operation goes through it. */
/* Loads "keyhold" (next to the executable, $KEYHOLD_PROVIDER_PATH, the
 * modules dir) and "default". KH_EXIT_BROKEN with the fix when it fails. */
int kh_prov_load(KH_CTX *ctx, char *err, size_t errlen);
/* Loads the private key of |uri| through OSSL_STORE, the PIN handed over
 * the UI callback. Maps the provider's errors to exit codes (6 wrong PIN,
 * 3 token). */
int kh_key_load(KH_CTX *ctx, const char *uri, const char *pin, size_t pinlen,
                EVP_PKEY **pkey, char *err, size_t errlen);
/* Empties the OpenSSL error queue into err ("what: ..."), keyhold's own
 * errors first, and returns the exit code they mean (6 PIN / key auth,
 * 2 bad or ambiguous URI, 8 no such key, else 3). For any key operation
 * through the provider that failed. */
int kh_prov_map_errors(const char *what, char *err, size_t errlen);
/* Convenience: PIN from kh_pin_obtain + kh_key_load of the identity's key
 * in use (or |uri| when given). */
int kh_identity_load_key(KH_CTX *ctx, const KH_IDENTITY *id, const char *uri,
                         EVP_PKEY **pkey, char *err, size_t errlen);
/* Signs + verifies a probe with |pkey| against |cert|, then a loopback TLS
 * handshake (in memory) with cert+chain, client verifying against |ca| and
 * the identity's host. KH_EXIT_OK, else REJECTED/TOKEN with err. */
int kh_key_selftest(KH_CTX *ctx, EVP_PKEY *pkey, X509 *cert,
                    STACK_OF(X509) *chain, X509 *ca, const char *host,
                    char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* CSRs (csr.c). CN = host; SANs = every host/IP; KU/EKU per role:
 * recording, mobile: serverAuth + clientAuth; management: serverAuth. */
int kh_identity_make_csr(KH_CTX *ctx, const KH_IDENTITY *id, EVP_PKEY *pkey,
                         X509_REQ **out, char *err, size_t errlen);
int kh_csr_write(X509_REQ *req, const char *path, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Certificates and checks (checks.c). */
/* Reads PEM (one or more) or DER; first cert in *cert, rest appended to
 * *rest (when rest != NULL). KH_EXIT_REJECTED on a truncated/garbled file. */
int kh_certs_read(const char *path, X509 **cert, STACK_OF(X509) **rest,
                  char *err, size_t errlen);
int kh_certs_read_buf(const unsigned char *buf, size_t len, X509 **cert,
                      STACK_OF(X509) **rest, char *err, size_t errlen);
/* A copy of C bound to the default provider, like every certificate the
 * CLI reads (NULL when it cannot be copied). */
X509 *kh_cert_rebind(X509 *c);
/* 1 when the system clock is before the build date. */
int kh_clock_suspect(time_t now);
/*
 * Every install check, in order, each failure naming itself:
 *   key       the public key equals |key_pub| (the identity's hardware key)
 *   chain     chains to |ca| through |chain|
 *   validity  valid now (KH_CLOCK_SKEW tolerance on not-before)
 *   host      every identity name in CN / SAN
 *   usage     KU/EKU fit (serverAuth), not a CA
 * KH_EXIT_OK or KH_EXIT_REJECTED.
 */
int kh_cert_check(KH_CTX *ctx, const KH_IDENTITY *id, X509 *cert,
                  STACK_OF(X509) *chain, X509 *ca, EVP_PKEY *key_pub,
                  time_t now, char *err, size_t errlen);
/* "sha256:hex" of the DER of a cert / SPKI / CSR (caller's buffer >= 72). */
int kh_fp_cert(X509 *c, char *out, size_t outlen);
int kh_fp_pubkey(EVP_PKEY *k, char *out, size_t outlen);
int kh_fp_req(X509_REQ *r, char *out, size_t outlen);

/* ------------------------------------------------------------------ */
/* State (state.c): $STATE/NAME/{gen-N/, current -> gen-N, cert.pem ...
 * -> current/..., status.json, .lock}. */

/* Takes the identity's lock (flock on $STATE/NAME/.lock, non-blocking):
 * KH_EXIT_BUSY when another run holds it. *fd is released by kh_unlock. */
int kh_lock(KH_CTX *ctx, const char *name, int *fd, char *err, size_t errlen);
void kh_unlock(int fd);
/* Creates $STATE/NAME and removes an incomplete gen-N (> current) left by
 * a crash, and the token cert objects it stored. Call with the lock held. */
int kh_state_prepare(KH_CTX *ctx, const char *name, char *err, size_t errlen);
/* Start of a management run on identity NAME: the caller may manage keys
 * (kh_require_manage, WHAT names the command), holds the identity's lock
 * (*lockfd, released by kh_unlock) and the state is prepared. */
int kh_manage_begin(KH_CTX *ctx, const char *what, const char *name,
                    int *lockfd, char *err, size_t errlen);
/* Generation that `current` points at, 0 when none. */
unsigned kh_state_current_gen(KH_CTX *ctx, const char *name);
/* Highest gen-N directory present (>= current). */
unsigned kh_state_max_gen(KH_CTX *ctx, const char *name);

/* The key URI in service: current/key.pem's reference, else config key-uri. */
int kh_identity_key_uri(KH_CTX *ctx, const KH_IDENTITY *id, char **uri);
/* The key a new CSR/certificate is for: the pending key (rekey, provision
 * --force) when one is recorded, else the key in service. */
int kh_identity_next_key_uri(KH_CTX *ctx, const KH_IDENTITY *id, char **uri);
/* CKA_ID hex from a pkcs11: URI (0 when none). */
int kh_uri_key_id(const char *uri, char *hex, size_t hexlen);

/* Current certificate, chain and CA from the state dir (any may be NULL). */
int kh_state_load_current(KH_CTX *ctx, const char *name, X509 **cert,
                          STACK_OF(X509) **chain, X509 **ca);

/* Install (checks + gen-N+1 + atomic switch). */
typedef struct kh_install_req {
    X509 *cert;                 /* required */
    STACK_OF(X509) *chain;      /* intermediates (may be NULL) */
    X509 *ca;                   /* trust anchor; NULL: the identity's ca=
                                   file, then the installed ca.pem */
    const char *key_uri;        /* key the cert is for; NULL: the pending
                                   key if the cert matches it, else the key
                                   in service */
    const char *op;             /* "install", "enroll", "renew", "rekey" */
    int no_token_cert;          /* 1: do not store the cert in the token */
    int no_prune;               /* 1: keep every older generation */
} KH_INSTALL_REQ;
/*
 * With the identity's lock held. Runs every check of kh_cert_check against
 * the key's public key (read from the token), builds gen-(N+1) completely
 * (cert.pem chain.pem fullchain.pem ca.pem key.pem identity.pem, files and
 * dir fsync'd), stores the cert in the token, switches `current` with one
 * rename(2), updates the stable links and status.json (generation, clears
 * pending key when it was used), then prunes generations older than the
 * previous one (destroying keys no longer referenced). On any failure
 * nothing visible changes. Crash points (KEYHOLD_CRASH_AT): checked,
 * staging, written, synced, token-cert, switch, switched, links, pruned.
 */
int kh_identity_install(KH_CTX *ctx, KH_IDENTITY *id, const KH_INSTALL_REQ *req,
                        char *err, size_t errlen);
/* Switches `current` back to gen-(N-1) (reload hook failed): exit code. */
int kh_identity_rollback(KH_CTX *ctx, KH_IDENTITY *id, char *err,
                         size_t errlen);
/* Runs the identity's `reload =` commands (/bin/sh -c); exit code, err names
 * the failing hook. */
int kh_run_hooks(KH_CTX *ctx, const KH_IDENTITY *id, char *err, size_t errlen);
/* Destroys keys labelled keyhold:NAME: that neither the config, the
 * current/previous generation nor the pending record reference. Needs a
 * logged-in token. */
int kh_identity_clean_orphans(KH_CTX *ctx, const KH_IDENTITY *id, KH_TOKEN *t,
                              char *err, size_t errlen);

/* Renewal state: $STATE/NAME/status.json (written atomically). Flat JSON
 * object; times are Unix seconds (0 = never). */
typedef struct kh_status_rec {
    unsigned generation;        /* in use */
    unsigned building;          /* being built, 0 = none */
    long long last_attempt;
    long long last_success;
    long long next_attempt;
    long long failures;         /* consecutive failures */
    long long failures_total;
    char last_error[512];
    char pending_key_uri[1024]; /* rekey / provision --force: a key
                                   awaiting its certificate */
    int warned_level;           /* expiry thresholds already warned (0..4) */
    long long warned_not_after; /* ... for the cert with this not-after */
} KH_STATUS_REC;
int kh_status_read(KH_CTX *ctx, const char *name, KH_STATUS_REC *st);
int kh_status_write(KH_CTX *ctx, const char *name, const KH_STATUS_REC *st,
                    char *err, size_t errlen);
/* Renewal bookkeeping for enroll/renew: success clears the error and the
 * failure count, failure records the error and next_attempt. */
int kh_status_record_attempt(KH_CTX *ctx, const char *name, int ok,
                             const char *error, time_t next_attempt);

/* Expiry thresholds for a cert of |lifetime| seconds: 30/14/7/1 days, each
 * capped to lifetime/3, /6, /12, /24. */
void kh_expiry_thresholds(long long lifetime, long long th[4]);
/* Emits (stderr + syslog) the warning for the tightest threshold crossed
 * that was not warned yet for this certificate; records it in status.json. */
void kh_expiry_warn(KH_CTX *ctx, const KH_IDENTITY *id, X509 *cert, time_t now);

/* ------------------------------------------------------------------ */
/* Audit log ($STATE/audit.log, one JSON record per line, each carrying the
 * SHA-256 of the previous line) and syslog. Never a secret. */
int kh_audit(KH_CTX *ctx, const char *op, const char *identity,
             const char *key_id, const char *outcome, const char *detail);
/* 0 when intact, else the first bad line number; err says what. */
int kh_audit_verify(KH_CTX *ctx, long *records, char *err, size_t errlen);

/* One JSON line in $STATE/reports.jsonl (provision, enroll, renew, rekey). */
typedef struct kh_report {
    const char *op;
    const char *identity;
    const char *backend;
    const char *key_id;
    const char *key_uri;
    EVP_PKEY *pub;              /* fingerprinted (SPKI) */
    X509_REQ *csr;              /* may be NULL */
    X509 *cert;                 /* may be NULL */
    const char *token_serial;   /* may be NULL */
    const char *outcome;        /* "ok" or the error */
} KH_REPORT;
int kh_report(KH_CTX *ctx, const KH_REPORT *r);

/* JSON string escaping into a buffer (truncates safely). */
void kh_json_str(char *out, size_t outlen, const char *s);

/* ------------------------------------------------------------------ */
/* TPM key backend (provision/tpm*.c, when linked in; weak here). */
int kh_tpm_keygen(KH_CTX *ctx, KH_IDENTITY *id, const char *alg,
                  unsigned gen, int allow_decrypt, char **key_uri,
                  char *err, size_t errlen) __attribute__((weak));
int kh_tpm_key_destroy(KH_CTX *ctx, const KH_IDENTITY *id, const char *key_uri,
                       char *err, size_t errlen) __attribute__((weak));
int kh_tpm_get_pubkey(KH_CTX *ctx, const KH_IDENTITY *id, const char *key_uri,
                      EVP_PKEY **pub, char *err, size_t errlen)
    __attribute__((weak));

/* Subcommands (one file each). */
int cmd_token(KH_CTX *ctx, int argc, char **argv);
int cmd_provision(KH_CTX *ctx, int argc, char **argv);
int cmd_csr(KH_CTX *ctx, int argc, char **argv);
int cmd_install(KH_CTX *ctx, int argc, char **argv);
int cmd_status(KH_CTX *ctx, int argc, char **argv);
int cmd_doctor(KH_CTX *ctx, int argc, char **argv);
int cmd_set_hosts(KH_CTX *ctx, int argc, char **argv);
int cmd_verify(KH_CTX *ctx, int argc, char **argv);
int cmd_zeroize(KH_CTX *ctx, int argc, char **argv);
int cmd_audit(KH_CTX *ctx, int argc, char **argv);
/* est engineer: cmd_enroll.c cmd_renew.c cmd_rekey.c */
int cmd_enroll(KH_CTX *ctx, int argc, char **argv) __attribute__((weak));
int cmd_renew(KH_CTX *ctx, int argc, char **argv) __attribute__((weak));
int cmd_rekey(KH_CTX *ctx, int argc, char **argv) __attribute__((weak));

#endif
