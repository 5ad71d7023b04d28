/* SPDX-License-Identifier: MIT */
/*
 * The audit log and the provisioning reports.
 *
 * $STATE/audit.log: one JSON record per management operation (who, what,
 * identity, key id, outcome, time). Each record carries "prev", the SHA-256
 * of the previous line, and "hash", the SHA-256 of itself up to that field,
 * so an edited or removed record breaks the chain; $STATE/audit.head keeps
 * the count and last hash so a cut tail shows too. Also sent to syslog.
 * Never a secret: callers pass ids, fingerprints and messages only.
 *
 * $STATE/reports.jsonl: one line per provision/enroll/renew/rekey for the
 * factory's database.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "keyhold.h"

#define ZERO_HASH \
    "0000000000000000000000000000000000000000000000000000000000000000"

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    int i;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}

static void who(char *out, size_t outlen)
{
    struct passwd *pw = getpwuid(getuid());
    const char *sudo = getenv("SUDO_USER");

    snprintf(out, outlen, "%s(uid=%u)%s%s",
             pw != NULL ? pw->pw_name : "?", (unsigned)getuid(),
             sudo != NULL ? " via sudo by " : "", sudo != NULL ? sudo : "");
}

static void iso_time(time_t t, char *out, size_t outlen)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Last line of the open file (without its newline) and the count. */
static int last_line(int fd, char *out, size_t outlen, long *count)
{
    char buf[8192];
    off_t size = lseek(fd, 0, SEEK_END), start;
    ssize_t n;
    char *end, *nl;
    long c = 0;

    out[0] = '\0';
    *count = 0;
    if (size <= 0) {
        return 1;
    }
    /* count lines */
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        ssize_t i;

        for (i = 0; i < n; i++) {
            c += buf[i] == '\n';
        }
    }
    *count = c;
    start = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
    if (pread(fd, buf, (size_t)(size - start), start) != size - start) {
        return 0;
    }
    buf[size - start] = '\0';
    end = buf + (size - start);
    if (end > buf && end[-1] == '\n') {
        *--end = '\0';
    }
    nl = strrchr(buf, '\n');
    snprintf(out, outlen, "%s", nl != NULL ? nl + 1 : buf);
    return 1;
}

int kh_audit(KH_CTX *ctx, const char *op, const char *identity,
             const char *key_id, const char *outcome, const char *detail)
{
    char path[KH_PATH_MAX], head[KH_PATH_MAX];
    char last[8192], prev[65], self[65];
    char w[160], ts[32], jw[400], jop[200], jid[200], jkey[200], jout[200];
    char jdet[1200], rec[4096], hb[128];
    time_t now = time(NULL);
    long count = 0;
    int fd, n;

    if (mkdir(ctx->state_dir, 0750) != 0 && errno != EEXIST) {
        return 0;
    }
    kh_path(path, sizeof(path), "%s/audit.log", ctx->state_dir);
    kh_path(head, sizeof(head), "%s/audit.head", ctx->state_dir);
    who(w, sizeof(w));
    iso_time(now, ts, sizeof(ts));
    kh_json_str(jw, sizeof(jw), w);
    kh_json_str(jop, sizeof(jop), op);
    kh_json_str(jid, sizeof(jid), identity != NULL ? identity : "");
    kh_json_str(jkey, sizeof(jkey), key_id != NULL ? key_id : "");
    kh_json_str(jout, sizeof(jout), outcome);
    kh_json_str(jdet, sizeof(jdet), detail != NULL ? detail : "");

    openlog("keyhold", LOG_PID, LOG_AUTHPRIV);
    syslog(LOG_NOTICE, "audit: op=%s identity=%s key=%s outcome=%s by %s",
           op, identity != NULL ? identity : "-",
           key_id != NULL && *key_id ? key_id : "-", outcome, w);
    closelog();

    fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        return 0;
    }
    if (flock(fd, LOCK_EX) != 0 || !last_line(fd, last, sizeof(last), &count)) {
        close(fd);
        return 0;
    }
    if (last[0] != '\0') {
        sha256_hex(last, strlen(last), prev);
    } else {
        memcpy(prev, ZERO_HASH, 65);
    }
    n = snprintf(rec, sizeof(rec),
                 "{\"seq\":%ld,\"time\":\"%s\",\"who\":%s,\"op\":%s,"
                 "\"identity\":%s,\"key_id\":%s,\"outcome\":%s,\"detail\":%s,"
                 "\"prev\":\"%s\"",
                 count + 1, ts, jw, jop, jid, jkey, jout, jdet, prev);
    if (n < 0 || (size_t)n + 80 > sizeof(rec)) {
        close(fd);
        return 0;
    }
    sha256_hex(rec, (size_t)n, self);
    n += snprintf(rec + n, sizeof(rec) - (size_t)n, ",\"hash\":\"%s\"}\n",
                  self);
    if (write(fd, rec, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    fsync(fd);
    /* the head names the last record: a cut tail no longer matches it */
    sha256_hex(rec, (size_t)n - 1, self);
    n = snprintf(hb, sizeof(hb), "%ld %s\n", count + 1, self);
    kh_write_atomic(head, hb, (size_t)n, 0640, NULL, 0);
    close(fd);
    return 1;
}

static int json_field(const char *line, const char *key, char *out,
                      size_t outlen)
{
    char pat[40];
    const char *p, *e;

    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    p = strstr(line, pat);
    if (p == NULL) {
        return 0;
    }
    p += strlen(pat);
    e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= outlen) {
        return 0;
    }
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 1;
}

int kh_audit_verify(KH_CTX *ctx, long *records, char *err, size_t errlen)
{
    char path[KH_PATH_MAX], head[KH_PATH_MAX];
    char *buf = NULL, *line, *next, *hbuf = NULL;
    char prev[65], have[65], self[65];
    long n = 0;
    int bad = 0;

    *records = 0;
    kh_path(path, sizeof(path), "%s/audit.log", ctx->state_dir);
    kh_path(head, sizeof(head), "%s/audit.head", ctx->state_dir);
    if (!kh_read_file(path, 256UL * 1024 * 1024, &buf, NULL, err, errlen)) {
        return errno == ENOENT ? 0 : -1;
    }
    memcpy(prev, ZERO_HASH, 65);
    for (line = buf; *line != '\0'; line = next) {
        char *hpos;

        next = strchr(line, '\n');
        if (next == NULL) {
            kh_seterr(err, errlen, 0, "record %ld is cut off (no newline)",
                      n + 1);
            bad = (int)n + 1;
            break;
        }
        *next++ = '\0';
        n++;
        if (!json_field(line, "prev", have, sizeof(have))
            || strcmp(have, prev) != 0) {
            kh_seterr(err, errlen, 0,
                      "record %ld does not follow record %ld (a record was "
                      "edited, removed or inserted)", n, n - 1);
            bad = (int)n;
            break;
        }
        hpos = strstr(line, ",\"hash\":\"");
        if (hpos == NULL || !json_field(hpos, "hash", have, sizeof(have))) {
            kh_seterr(err, errlen, 0, "record %ld has no hash", n);
            bad = (int)n;
            break;
        }
        sha256_hex(line, (size_t)(hpos - line), self);
        if (strcmp(self, have) != 0) {
            kh_seterr(err, errlen, 0, "record %ld was edited (hash mismatch)",
                      n);
            bad = (int)n;
            break;
        }
        {
            char seq[32];
            const char *p = strstr(line, "\"seq\":");

            snprintf(seq, sizeof(seq), "%ld", n);
            if (p == NULL || strncmp(p + 6, seq, strlen(seq)) != 0
                || (p[6 + strlen(seq)] != ',')) {
                kh_seterr(err, errlen, 0,
                          "record %ld has the wrong sequence number", n);
                bad = (int)n;
                break;
            }
        }
        sha256_hex(line, strlen(line), prev);
    }
    if (!bad && kh_read_file(head, 4096, &hbuf, NULL, NULL, 0)) {
        long hn = 0;
        char hh[65] = "";

        if (sscanf(hbuf, "%ld %64s", &hn, hh) != 2 || hn != n
            || (n > 0 && strcmp(hh, prev) != 0)) {
            kh_seterr(err, errlen, 0,
                      "the log ends at record %ld but audit.head names "
                      "record %ld: records were removed from the end", n, hn);
            bad = (int)(n + 1);
        }
    }
    free(hbuf);
    free(buf);
    *records = n;
    return bad;
}

int kh_report(KH_CTX *ctx, const KH_REPORT *r)
{
    char path[KH_PATH_MAX], line[8192], ts[32];
    char fpk[80] = "", fpr[80] = "", fpc[80] = "";
    char jop[100], jid[200], jb[60], jkid[200], juri[2100], jser[100];
    char jout[600];
    char jsubj[600] = "\"\"", nb[32] = "", na[32] = "";
    time_t now = time(NULL);
    int fd, n;

    kh_path(path, sizeof(path), "%s/reports.jsonl", ctx->state_dir);
    iso_time(now, ts, sizeof(ts));
    if (r->pub != NULL) {
        kh_fp_pubkey(r->pub, fpk, sizeof(fpk));
    }
    if (r->csr != NULL) {
        kh_fp_req(r->csr, fpr, sizeof(fpr));
    }
    if (r->cert != NULL) {
        char s[512];
        struct tm tm;

        kh_fp_cert(r->cert, fpc, sizeof(fpc));
        X509_NAME_oneline(X509_get_subject_name(r->cert), s, sizeof(s));
        kh_json_str(jsubj, sizeof(jsubj), s);
        if (ASN1_TIME_to_tm(X509_get0_notBefore(r->cert), &tm) == 1) {
            strftime(nb, sizeof(nb), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        if (ASN1_TIME_to_tm(X509_get0_notAfter(r->cert), &tm) == 1) {
            strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
    }
    kh_json_str(jop, sizeof(jop), r->op);
    kh_json_str(jid, sizeof(jid), r->identity);
    kh_json_str(jb, sizeof(jb), r->backend != NULL ? r->backend : "pkcs11");
    kh_json_str(jkid, sizeof(jkid), r->key_id != NULL ? r->key_id : "");
    kh_json_str(juri, sizeof(juri), r->key_uri != NULL ? r->key_uri : "");
    kh_json_str(jser, sizeof(jser),
                r->token_serial != NULL ? r->token_serial : "");
    kh_json_str(jout, sizeof(jout), r->outcome != NULL ? r->outcome : "ok");
    n = snprintf(line, sizeof(line),
                 "{\"time\":\"%s\",\"op\":%s,\"identity\":%s,\"backend\":%s,"
                 "\"key_id\":%s,\"key_uri\":%s,\"token_serial\":%s,"
                 "\"public_key_fingerprint\":\"%s\",\"csr_fingerprint\":\"%s\","
                 "\"cert_fingerprint\":\"%s\",\"subject\":%s,"
                 "\"not_before\":\"%s\",\"not_after\":\"%s\",\"outcome\":%s}\n",
                 ts, jop, jid, jb, jkid, juri, jser, fpk, fpr, fpc, jsubj, nb,
                 na, jout);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return 0;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
              0640);
    if (fd < 0) {
        return 0;
    }
    flock(fd, LOCK_EX);
    n = write(fd, line, (size_t)n) == n;
    fsync(fd);
    close(fd);
    return n;
}
