/* SPDX-License-Identifier: MIT */
/*
 * A minimal SCEP responder (RFC 8894) for the SCEP scenarios: a real HTTP
 * server on 127.0.0.1 with a software CA and separate RA certificates for
 * encryption (keyEncipherment) and for signing CertReps
 * (digitalSignature). It answers GetCACaps, GetCACert and PKIOperation
 * (POST): PKCSReq checked against the challenge password, RenewalReq
 * checked against the CA, CertPoll (GetCertInitial) for requests it keeps
 * PENDING for a given number of rounds. It issues server-auth certificates
 * carrying the request's subject and subjectAltName. One line per message
 * goes to the log (--log) for the scenario to inspect.
 *
 *   scep-responder --port N --ca-cert F --ca-key F --ra-enc-cert F
 *       --ra-enc-key F --ra-sign-cert F --ra-sign-key F
 *       [--challenge-file F] [--pending N] [--days N] [--legacy]
 *       [--log F]
 *
 * --legacy: capabilities of an old server (none: no POST, no Renewal, no
 * SHA-256, no AES), PKIOperation by GET with the base64 message.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define MAX_REQ (256 * 1024)
#define MAX_TX 16

typedef struct ias {
    X509_NAME *issuer;
    X509_NAME *subject;
} IAS;

ASN1_SEQUENCE(IAS) = {
    ASN1_SIMPLE(IAS, issuer, X509_NAME),
    ASN1_SIMPLE(IAS, subject, X509_NAME)
} ASN1_SEQUENCE_END(IAS)

DECLARE_ASN1_FUNCTIONS(IAS)
IMPLEMENT_ASN1_FUNCTIONS(IAS)

static X509 *ca, *ra_enc, *ra_sign;
static EVP_PKEY *ca_key, *ra_enc_key, *ra_sign_key;
static char challenge[256];
static int pending_rounds, days = 30, renewal = 1;
static FILE *logf;
static int nid_msgtype, nid_status, nid_failinfo, nid_snonce, nid_rnonce,
    nid_transid;

static struct tx {
    char id[80];
    X509_REQ *csr;
    int left;
} txs[MAX_TX];

static void die(const char *m)
{
    fprintf(stderr, "scep-responder: %s\n", m);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void logmsg(const char *fmt, ...)
{
    va_list ap;

    if (logf == NULL) {
        return;
    }
    va_start(ap, fmt);
    vfprintf(logf, fmt, ap);
    va_end(ap);
    fputc('\n', logf);
    fflush(logf);
}

static X509 *load_cert(const char *f)
{
    FILE *fp = fopen(f, "r");
    X509 *x = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;

    if (fp) {
        fclose(fp);
    }
    if (x == NULL) {
        die(f);
    }
    return x;
}

static EVP_PKEY *load_key(const char *f)
{
    FILE *fp = fopen(f, "r");
    EVP_PKEY *k = fp ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;

    if (fp) {
        fclose(fp);
    }
    if (k == NULL) {
        die(f);
    }
    return k;
}

static const char *attr_str(PKCS7_SIGNER_INFO *si, int nid, char *buf,
                            size_t len)
{
    ASN1_TYPE *t = PKCS7_get_signed_attribute(si, nid);
    int n;

    if (t == NULL || t->type != V_ASN1_PRINTABLESTRING) {
        return NULL;
    }
    n = ASN1_STRING_length(t->value.asn1_string);
    if (n < 0 || (size_t)n >= len) {
        return NULL;
    }
    memcpy(buf, ASN1_STRING_get0_data(t->value.asn1_string), (size_t)n);
    buf[n] = '\0';
    return buf;
}

static void add_str(PKCS7_SIGNER_INFO *si, int nid, const char *v)
{
    ASN1_PRINTABLESTRING *s = ASN1_PRINTABLESTRING_new();

    ASN1_STRING_set(s, v, -1);
    PKCS7_add_signed_attribute(si, nid, V_ASN1_PRINTABLESTRING, s);
}

static void add_oct(PKCS7_SIGNER_INFO *si, int nid, const unsigned char *v,
                    int n)
{
    ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();

    ASN1_OCTET_STRING_set(s, v, n);
    PKCS7_add_signed_attribute(si, nid, V_ASN1_OCTET_STRING, s);
}

/* A server-auth certificate for |csr| from the CA. */
static X509 *issue(X509_REQ *csr)
{
    X509 *x = X509_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    unsigned char serial[12];
    BIGNUM *bn;
    int i;

    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    serial[0] |= 1;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    X509_set_version(x, X509_VERSION_3);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_subject_name(x, X509_REQ_get_subject_name(csr));
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
    X509_set_pubkey(x, X509_REQ_get0_pubkey(csr));
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                              "critical,CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage,
                              "critical,digitalSignature,keyEncipherment");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage,
                              "serverAuth,clientAuth");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier,
                              "keyid");
    if (ext != NULL) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

        if (OBJ_obj2nid(X509_EXTENSION_get_object(e))
            == NID_subject_alt_name) {
            X509_add_ext(x, e, -1);
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/*
 * The CertRep for a request signed by |signer|: status "0" with |issued|
 * enveloped to the signer, "3" pending, "2" with |fail|.
 */
static unsigned char *cert_rep(const char *txid, ASN1_OCTET_STRING *snonce,
                               const char *status, const char *fail,
                               X509 *issued, X509 *signer, int *outlen)
{
    PKCS7 *sd, *deg = NULL, *env = NULL;
    PKCS7_SIGNER_INFO *si;
    STACK_OF(X509) *rcpt = sk_X509_new_null();
    unsigned char *degder = NULL, *envder = NULL, *out = NULL, nonce[16];
    int deglen, envlen = 0;
    BIO *in = NULL, *content;

    if (issued != NULL) {
        deg = PKCS7_new();
        PKCS7_set_type(deg, NID_pkcs7_signed);
        PKCS7_content_new(deg, NID_pkcs7_data);
        PKCS7_add_certificate(deg, issued);
        PKCS7_add_certificate(deg, ca);
        deglen = i2d_PKCS7(deg, &degder);
        sk_X509_push(rcpt, signer);
        in = BIO_new_mem_buf(degder, deglen);
        env = PKCS7_encrypt(rcpt, in, EVP_aes_128_cbc(), PKCS7_BINARY);
        if (env == NULL) {
            die("encrypt");
        }
        envlen = i2d_PKCS7(env, &envder);
    }
    /* RFC 8894 3.3.2: no content unless SUCCESS */
    sd = PKCS7_sign(NULL, NULL, NULL, NULL, PKCS7_PARTIAL | PKCS7_BINARY
                    | (issued == NULL ? PKCS7_DETACHED : 0));
    si = PKCS7_sign_add_signer(sd, ra_sign, ra_sign_key, EVP_sha256(),
                               PKCS7_NOSMIMECAP);
    if (si == NULL) {
        die("sign");
    }
    PKCS7_add_certificate(sd, ca);
    add_str(si, nid_msgtype, "3");
    add_str(si, nid_transid, txid);
    add_str(si, nid_status, status);
    if (fail != NULL) {
        add_str(si, nid_failinfo, fail);
    }
    RAND_bytes(nonce, sizeof(nonce));
    add_oct(si, nid_snonce, nonce, sizeof(nonce));
    if (snonce != NULL) {
        add_oct(si, nid_rnonce, ASN1_STRING_get0_data(snonce),
                ASN1_STRING_length(snonce));
    }
    content = BIO_new_mem_buf(envder != NULL ? envder : (unsigned char *)"",
                              envlen);
    if (PKCS7_final(sd, content, PKCS7_BINARY
                    | (issued == NULL ? PKCS7_DETACHED : 0)) != 1) {
        die("final");
    }
    *outlen = i2d_PKCS7(sd, &out);
    BIO_free(content);
    BIO_free(in);
    PKCS7_free(sd);
    PKCS7_free(deg);
    PKCS7_free(env);
    sk_X509_free(rcpt);
    OPENSSL_free(degder);
    OPENSSL_free(envder);
    return out;
}

static int challenge_ok(X509_REQ *csr)
{
    int i = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1);
    X509_ATTRIBUTE *a;
    ASN1_TYPE *t;
    int n;

    if (challenge[0] == '\0') {
        return 1;
    }
    if (i < 0) {
        return 0;
    }
    a = X509_REQ_get_attr(csr, i);
    t = X509_ATTRIBUTE_get0_type(a, 0);
    if (t == NULL || (t->type != V_ASN1_UTF8STRING
                      && t->type != V_ASN1_PRINTABLESTRING)) {
        return 0;
    }
    n = ASN1_STRING_length(t->value.asn1_string);
    return (size_t)n == strlen(challenge)
           && memcmp(ASN1_STRING_get0_data(t->value.asn1_string), challenge,
                     (size_t)n) == 0;
}

static struct tx *tx_find(const char *id, int create)
{
    int i;

    for (i = 0; i < MAX_TX; i++) {
        if (txs[i].id[0] != '\0' && strcmp(txs[i].id, id) == 0) {
            return &txs[i];
        }
    }
    for (i = 0; create && i < MAX_TX; i++) {
        if (txs[i].id[0] == '\0') {
            snprintf(txs[i].id, sizeof(txs[i].id), "%s", id);
            return &txs[i];
        }
    }
    return NULL;
}

/* One PKIOperation: the pkiMessage DER in, the CertRep DER out. */
static unsigned char *pki_operation(const unsigned char *der, long len,
                                    int *outlen)
{
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, len), *env = NULL;
    STACK_OF(X509) *signers = NULL;
    PKCS7_SIGNER_INFO *si;
    ASN1_TYPE *sn;
    BIO *content = BIO_new(BIO_s_mem()), *plain = BIO_new(BIO_s_mem());
    BUF_MEM *bm;
    char type[8], txid[80];
    X509 *signer, *issued = NULL;
    X509_REQ *csr = NULL;
    IAS *ias = NULL;
    unsigned char *out = NULL;
    struct tx *t;

    if (p7 == NULL || !PKCS7_type_is_signed(p7)
        || PKCS7_verify(p7, NULL, NULL, NULL, content,
                        PKCS7_NOVERIFY | PKCS7_BINARY) != 1) {
        logmsg("bad message: signature");
        goto end;
    }
    signers = PKCS7_get0_signers(p7, NULL, 0);
    signer = sk_X509_value(signers, 0);
    si = sk_PKCS7_SIGNER_INFO_value(PKCS7_get_signer_info(p7), 0);
    sn = PKCS7_get_signed_attribute(si, nid_snonce);
    if (attr_str(si, nid_msgtype, type, sizeof(type)) == NULL
        || attr_str(si, nid_transid, txid, sizeof(txid)) == NULL
        || sn == NULL || sn->type != V_ASN1_OCTET_STRING) {
        logmsg("bad message: attributes");
        goto end;
    }
    BIO_get_mem_ptr(content, &bm);
    p = (unsigned char *)bm->data;
    env = d2i_PKCS7(NULL, &p, (long)bm->length);
    if (env == NULL
        || PKCS7_decrypt(env, ra_enc_key, ra_enc, plain, PKCS7_BINARY) != 1) {
        logmsg("bad message: not decryptable by the RA encryption key");
        out = cert_rep(txid, sn->value.octet_string, "2", "1", NULL, signer,
                       outlen);
        goto end;
    }
    BIO_get_mem_ptr(plain, &bm);
    p = (unsigned char *)bm->data;
    if (strcmp(type, "19") == 0 || strcmp(type, "17") == 0) {
        char sub[256];

        csr = d2i_X509_REQ(NULL, &p, (long)bm->length);
        if (csr == NULL || X509_REQ_verify(csr, X509_REQ_get0_pubkey(csr))
            != 1) {
            logmsg("%s: bad CSR", type);
            out = cert_rep(txid, sn->value.octet_string, "2", "1", NULL,
                           signer, outlen);
            goto end;
        }
        X509_NAME_oneline(X509_get_subject_name(signer), sub, sizeof(sub));
        if (strcmp(type, "17") == 0) {
            if (!renewal || X509_verify(signer, X509_get0_pubkey(ca)) != 1) {
                logmsg("RenewalReq refused: signer %s not from the CA", sub);
                out = cert_rep(txid, sn->value.octet_string, "2", "2", NULL,
                               signer, outlen);
                goto end;
            }
            logmsg("RenewalReq signed by %s (from the CA)", sub);
        } else {
            if (!challenge_ok(csr)) {
                logmsg("PKCSReq refused: wrong challenge");
                out = cert_rep(txid, sn->value.octet_string, "2", "2", NULL,
                               signer, outlen);
                goto end;
            }
            logmsg("PKCSReq signed by %s (%s)", sub,
                   X509_check_issued(signer, signer) == X509_V_OK
                   ? "self-signed" : "not self-signed");
        }
        if (pending_rounds > 0) {
            t = tx_find(txid, 1);
            if (t == NULL) {
                logmsg("too many transactions");
                goto end;
            }
            X509_REQ_free(t->csr);
            t->csr = csr;
            csr = NULL;
            t->left = pending_rounds;
            logmsg("PENDING %s", txid);
            out = cert_rep(txid, sn->value.octet_string, "3", NULL, NULL,
                           signer, outlen);
            goto end;
        }
        issued = issue(csr);
    } else if (strcmp(type, "20") == 0) {
        ias = d2i_IAS(NULL, &p, (long)bm->length);
        t = tx_find(txid, 0);
        if (ias == NULL || t == NULL || t->csr == NULL
            || X509_NAME_cmp(ias->issuer, X509_get_subject_name(ca)) != 0
            || X509_NAME_cmp(ias->subject,
                             X509_REQ_get_subject_name(t->csr)) != 0) {
            logmsg("CertPoll: unknown transaction");
            out = cert_rep(txid, sn->value.octet_string, "2", "4", NULL,
                           signer, outlen);
            goto end;
        }
        if (--t->left > 0) {
            logmsg("CertPoll: PENDING %s", txid);
            out = cert_rep(txid, sn->value.octet_string, "3", NULL, NULL,
                           signer, outlen);
            goto end;
        }
        logmsg("CertPoll: SUCCESS %s", txid);
        issued = issue(t->csr);
        X509_REQ_free(t->csr);
        memset(t, 0, sizeof(*t));
    } else {
        logmsg("message type %s unsupported", type);
        out = cert_rep(txid, sn->value.octet_string, "2", "2", NULL, signer,
                       outlen);
        goto end;
    }
    if (issued == NULL) {
        out = cert_rep(txid, sn->value.octet_string, "2", "2", NULL, signer,
                       outlen);
        goto end;
    }
    logmsg("SUCCESS issued for type %s", type);
    out = cert_rep(txid, sn->value.octet_string, "0", NULL, issued, signer,
                   outlen);
end:
    X509_free(issued);
    X509_REQ_free(csr);
    IAS_free(ias);
    sk_X509_free(signers);
    BIO_free(content);
    BIO_free(plain);
    PKCS7_free(p7);
    PKCS7_free(env);
    return out;
}

static void reply(int fd, int status, const char *ctype,
                  const unsigned char *body, size_t len)
{
    char hdr[256];
    int n;

    n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n", status,
                 status == 200 ? "OK" : "Error", ctype, len);
    if (write(fd, hdr, (size_t)n) < 0 || (len > 0 && write(fd, body, len) < 0)) {
        return;
    }
}

static void serve(int fd)
{
    static unsigned char buf[MAX_REQ + 1];
    size_t got = 0, need = 0;
    char *hend = NULL, *cl, *op;
    ssize_t r;

    while (got < MAX_REQ) {
        r = read(fd, buf + got, MAX_REQ - got);
        if (r <= 0) {
            return;
        }
        got += (size_t)r;
        buf[got] = '\0';
        if (hend == NULL) {
            hend = strstr((char *)buf, "\r\n\r\n");
            if (hend != NULL) {
                cl = strcasestr((char *)buf, "\r\nContent-Length:");
                need = (size_t)(hend + 4 - (char *)buf)
                       + (cl != NULL && cl < hend ? strtoul(cl + 17, NULL, 10)
                                                  : 0);
            }
        }
        if (hend != NULL && got >= need) {
            break;
        }
    }
    if (hend == NULL || got < need) {
        return;
    }
    *hend = '\0';
    op = strstr((char *)buf, "operation=");
    if (op == NULL) {
        reply(fd, 400, "text/plain", (const unsigned char *)"no operation\n",
              13);
        return;
    }
    op += 10;
    if (strncmp(op, "GetCACaps", 9) == 0) {
        const char *caps = renewal
            ? "POSTPKIOperation\nRenewal\nSHA-256\nAES\nSCEPStandard\n"
            : "\n";

        logmsg("GetCACaps");
        reply(fd, 200, "text/plain", (const unsigned char *)caps,
              strlen(caps));
    } else if (strncmp(op, "GetCACert", 9) == 0) {
        PKCS7 *deg = PKCS7_new();
        unsigned char *der = NULL;
        int n;

        PKCS7_set_type(deg, NID_pkcs7_signed);
        PKCS7_content_new(deg, NID_pkcs7_data);
        /* the RA certificates first: the client must pick by usage */
        PKCS7_add_certificate(deg, ra_sign);
        PKCS7_add_certificate(deg, ra_enc);
        PKCS7_add_certificate(deg, ca);
        n = i2d_PKCS7(deg, &der);
        logmsg("GetCACert");
        reply(fd, 200, "application/x-x509-ca-ra-cert", der, (size_t)n);
        OPENSSL_free(der);
        PKCS7_free(deg);
    } else if (strncmp(op, "PKIOperation", 12) == 0
               && strncmp((char *)buf, "POST ", 5) == 0) {
        int n = 0;
        unsigned char *out = pki_operation((unsigned char *)hend + 4,
                                           (long)(got - (size_t)(hend + 4
                                                  - (char *)buf)), &n);

        if (out == NULL) {
            reply(fd, 400, "text/plain", (const unsigned char *)"bad\n", 4);
        } else {
            reply(fd, 200, "application/x-pki-message", out, (size_t)n);
        }
        OPENSSL_free(out);
    } else if (strncmp(op, "PKIOperation", 12) == 0
               && strncmp((char *)buf, "GET ", 4) == 0) {
        /* message=BASE64 (URL-encoded) up to the end of the target */
        char *m = strstr(op, "message="), *e;
        unsigned char *der = NULL, *out = NULL;
        size_t j = 0;
        int n = 0, dl;

        if (m != NULL) {
            m += 8;
            e = m + strcspn(m, " &");
            der = OPENSSL_malloc((size_t)(e - m) + 4);
            for (; m < e; m++) {
                if (*m == '%' && m + 2 < e) {
                    char hx[3] = { m[1], m[2], 0 };

                    der[j++] = (unsigned char)strtol(hx, NULL, 16);
                    m += 2;
                } else {
                    der[j++] = (unsigned char)*m;
                }
            }
            der[j] = 0;
            dl = EVP_DecodeBlock(der, der, (int)j);
            while (dl > 0 && j > 0 && der[j - 1] == '=') {
                j--;
                dl--;
            }
            if (dl > 0) {
                logmsg("PKIOperation by GET");
                out = pki_operation(der, dl, &n);
            }
        }
        if (out == NULL) {
            reply(fd, 400, "text/plain", (const unsigned char *)"bad\n", 4);
        } else {
            reply(fd, 200, "application/x-pki-message", out, (size_t)n);
        }
        OPENSSL_free(out);
        OPENSSL_free(der);
    } else {
        reply(fd, 400, "text/plain", (const unsigned char *)"unsupported\n",
              12);
    }
}

int main(int argc, char **argv)
{
    const char *cacert = NULL, *cakey = NULL, *encc = NULL, *enck = NULL,
               *signc = NULL, *signk = NULL, *chf = NULL, *logfile = NULL;
    int port = 0, i, s, one = 1;
    struct sockaddr_in sa;

    for (i = 1; i + 1 < argc || (i < argc && !strcmp(argv[i],
                                                     "--legacy")); i++) {
        const char *a = argv[i];

        if (!strcmp(a, "--legacy")) {
            renewal = 0;
            continue;
        }
        if (!strcmp(a, "--port")) {
            port = atoi(argv[++i]);
        } else if (!strcmp(a, "--ca-cert")) {
            cacert = argv[++i];
        } else if (!strcmp(a, "--ca-key")) {
            cakey = argv[++i];
        } else if (!strcmp(a, "--ra-enc-cert")) {
            encc = argv[++i];
        } else if (!strcmp(a, "--ra-enc-key")) {
            enck = argv[++i];
        } else if (!strcmp(a, "--ra-sign-cert")) {
            signc = argv[++i];
        } else if (!strcmp(a, "--ra-sign-key")) {
            signk = argv[++i];
        } else if (!strcmp(a, "--challenge-file")) {
            chf = argv[++i];
        } else if (!strcmp(a, "--pending")) {
            pending_rounds = atoi(argv[++i]);
        } else if (!strcmp(a, "--days")) {
            days = atoi(argv[++i]);
        } else if (!strcmp(a, "--log")) {
            logfile = argv[++i];
        } else {
            die("usage: see the head of scep-responder.c");
        }
    }
    if (port <= 0 || !cacert || !cakey || !encc || !enck || !signc || !signk) {
        die("usage: see the head of scep-responder.c");
    }
    signal(SIGPIPE, SIG_IGN);
    ca = load_cert(cacert);
    ca_key = load_key(cakey);
    ra_enc = load_cert(encc);
    ra_enc_key = load_key(enck);
    ra_sign = load_cert(signc);
    ra_sign_key = load_key(signk);
    if (chf != NULL) {
        FILE *fp = fopen(chf, "r");

        if (fp == NULL || fgets(challenge, sizeof(challenge), fp) == NULL) {
            die(chf);
        }
        fclose(fp);
        challenge[strcspn(challenge, "\r\n")] = '\0';
    }
    if (logfile != NULL && (logf = fopen(logfile, "a")) == NULL) {
        die(logfile);
    }
    nid_msgtype = OBJ_create("2.16.840.1.113733.1.9.2", "messageType", NULL);
    nid_status = OBJ_create("2.16.840.1.113733.1.9.3", "pkiStatus", NULL);
    nid_failinfo = OBJ_create("2.16.840.1.113733.1.9.4", "failInfo", NULL);
    nid_snonce = OBJ_create("2.16.840.1.113733.1.9.5", "senderNonce", NULL);
    nid_rnonce = OBJ_create("2.16.840.1.113733.1.9.6", "recipientNonce",
                            NULL);
    nid_transid = OBJ_create("2.16.840.1.113733.1.9.7", "transID", NULL);

    s = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0
        || listen(s, 16) != 0) {
        die("listen");
    }
    for (;;) {
        struct timeval tv = { 10, 0 };
        int c = accept(s, NULL, NULL);

        if (c < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("accept");
        }
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        serve(c);
        close(c);
    }
}
