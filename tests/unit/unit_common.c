/* SPDX-License-Identifier: MIT */
/* Unit tests for the shared parsers: pkcs11: URIs, PIN files, key
 * references. No token needed. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>

#include "kh_keyref.h"
#include "kh_p11util.h"
#include "kh_pin.h"
#include "kh_uri.h"

#include "kh_check.h"

static KH_P11_URI *parse_ok(const char *s)
{
    KH_P11_URI *u = NULL;
    char err[256] = "";

    if (!kh_p11_uri_parse(s, &u, err, sizeof(err))) {
        fprintf(stderr, "unexpected parse failure for '%s': %s\n", s, err);
        failures++;
        return NULL;
    }
    return u;
}

/* Expects failure and a message containing |needle|. */
static void parse_bad(const char *s, const char *needle)
{
    KH_P11_URI *u = NULL;
    char err[256] = "";

    checks++;
    if (kh_p11_uri_parse(s, &u, err, sizeof(err))) {
        fprintf(stderr, "'%s' parsed but must fail\n", s);
        failures++;
        kh_p11_uri_free(u);
        return;
    }
    if (strstr(err, needle) == NULL) {
        fprintf(stderr, "'%s': error '%s' lacks '%s'\n", s, err, needle);
        failures++;
    }
    if (strstr(err, "s3cret") != NULL) {
        fprintf(stderr, "'%s': error leaks the PIN\n", s);
        failures++;
    }
}

static void test_uri(void)
{
    KH_P11_URI *u;
    char *f;

    u = parse_ok("pkcs11:token=my%20token;object=srv;type=private;"
                 "id=%01%02%ff?pin-source=file:/etc/pin&module-path=/usr/lib/"
                 "softhsm/libsofthsm2.so");
    if (u != NULL) {
        CHECK(strcmp(u->token, "my token") == 0);
        CHECK(strcmp(u->object, "srv") == 0);
        CHECK(u->type == KH_URI_TYPE_PRIVATE);
        CHECK(u->has_id && u->idlen == 3 && u->id[2] == 0xff);
        CHECK(strcmp(u->pin_source, "file:/etc/pin") == 0);
        CHECK(strcmp(u->module_path, "/usr/lib/softhsm/libsofthsm2.so") == 0);
        CHECK(u->slot_id == -1);
        f = kh_p11_uri_format(u, KH_URI_FMT_MODULE | KH_URI_FMT_PIN_SOURCE);
        CHECK(f != NULL && strstr(f, "token=my%20token") != NULL);
        CHECK(f != NULL && strstr(f, "id=%01%02%FF") != NULL);
        CHECK(f != NULL
              && strstr(f, "module-path=/usr/lib/softhsm/libsofthsm2.so") != NULL);
        /* Round trip: the formatted URI parses to the same thing. */
        if (f != NULL) {
            KH_P11_URI *v = parse_ok(f);

            if (v != NULL) {
                CHECK(strcmp(v->token, u->token) == 0);
                CHECK(v->idlen == u->idlen && memcmp(v->id, u->id, 3) == 0);
                kh_p11_uri_free(v);
            }
        }
        free(f);
        f = kh_p11_uri_format(u, 0);
        CHECK(f != NULL && strchr(f, '?') == NULL);
        free(f);
        kh_p11_uri_free(u);
    }

    u = parse_ok("pkcs11:token=t;object=k?pin-value=s3cret");
    if (u != NULL) {
        CHECK(strcmp(u->pin_value, "s3cret") == 0);
        f = kh_p11_uri_format(u, KH_URI_FMT_MODULE | KH_URI_FMT_PIN_SOURCE);
        CHECK(f != NULL && strstr(f, "s3cret") == NULL);
        free(f);
        kh_p11_uri_free(u);
    }
    /* libp11 style: pin-value in the path is tolerated. */
    u = parse_ok("pkcs11:token=t;pin-value=s3cret;slot-id=3");
    if (u != NULL) {
        CHECK(u->slot_id == 3);
        kh_p11_uri_free(u);
    }
    u = parse_ok("pkcs11:");
    kh_p11_uri_free(u);
    u = parse_ok("PKCS11:token=a;x-vendor=1");
    kh_p11_uri_free(u);

    parse_bad("file:/x", "pkcs11:");
    parse_bad("pkcs11:token=a%4", "percent-encoding");
    parse_bad("pkcs11:token=a%zz", "percent-encoding");
    parse_bad("pkcs11:colour=red", "unknown path attribute 'colour'");
    parse_bad("pkcs11:token=a;token=b", "twice");
    parse_bad("pkcs11:type=banana", "unknown object type");
    parse_bad("pkcs11:slot-id=x", "slot-id");
    parse_bad("pkcs11:token=a?object=b", "path attribute");
    parse_bad("pkcs11:token=a b", "space");
    parse_bad("pkcs11:object=%00", "NUL");
    parse_bad("pkcs11:token=t?pin-value=s3cret&bogus=1", "bogus");
    parse_bad("pkcs11:token", "no '=value'");
}

static void test_pin(void)
{
    char dir[] = "/tmp/kh-unit.XXXXXX";
    char path[512], pin[KH_PIN_MAX + 1], err[512];
    size_t len = 0;
    FILE *fp;

    if (mkdtemp(dir) == NULL) {
        failures++;
        return;
    }
    snprintf(path, sizeof(path), "%s/pin", dir);
    fp = fopen(path, "w");
    fputs("1234\n", fp);
    fclose(fp);

    chmod(path, 0600);
    CHECK(kh_pin_read_file(path, pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_OK);
    CHECK(len == 4 && strcmp(pin, "1234") == 0);
    chmod(path, 0640);
    CHECK(kh_pin_read_file(path, pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_OK);
    chmod(path, 0644);
    CHECK(kh_pin_read_file(path, pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_ERR_PERM);
    CHECK(strstr(err, "chmod 0640") != NULL && strstr(err, "1234") == NULL);
    CHECK(len == 0);
    chmod(path, 0660);
    CHECK(kh_pin_read_file(path, pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_ERR_PERM);
    CHECK(strstr(err, "writable by its group") != NULL);

    /* Empty file, missing file, "file:" prefix. */
    chmod(path, 0600);
    fp = fopen(path, "w");
    fclose(fp);
    CHECK(kh_pin_read_file(path, pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_ERR_FORMAT);
    snprintf(path, sizeof(path), "file:%s/none", dir);
    CHECK(kh_pin_read_file(path, pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_ERR_IO);

    unsetenv("KEYHOLD_PIN_FILE");
    unsetenv("CREDENTIALS_DIRECTORY");
    CHECK(kh_pin_read_default(pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_ERR_NONE);
    CHECK(strstr(err, "LoadCredential") != NULL);

    snprintf(path, sizeof(path), "%s/keyhold-pin", dir);
    fp = fopen(path, "w");
    fputs("9876\r\n", fp);
    fclose(fp);
    chmod(path, 0400);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    CHECK(kh_pin_read_default(pin, sizeof(pin), &len, err, sizeof(err))
          == KH_PIN_OK);
    CHECK(strcmp(pin, "9876") == 0);
    unsetenv("CREDENTIALS_DIRECTORY");
    OPENSSL_cleanse(pin, sizeof(pin));

    unlink(path);
    snprintf(path, sizeof(path), "%s/pin", dir);
    unlink(path);
    rmdir(dir);
}

static void test_keyref(void)
{
    const char *uri = "pkcs11:token=appliance;object=keyhold:rec:1;type=private"
                      "?pin-value=s3cret";
    char err[256], *out = NULL;
    BIO *mem = BIO_new(BIO_s_mem());
    BUF_MEM *bm;
    unsigned char *der = NULL;
    size_t derlen = 0;

    CHECK(kh_keyref_pem_write(mem, uri, err, sizeof(err)));
    BIO_get_mem_ptr(mem, &bm);
    CHECK(bm->length > 0 && memmem(bm->data, bm->length, "BEGIN KEYHOLD KEY "
                                   "REFERENCE", 27) != NULL);
    CHECK(kh_keyref_pem_read(mem, &out, err, sizeof(err)));
    CHECK(out != NULL && strstr(out, "s3cret") == NULL);
    CHECK(out != NULL && strstr(out, "object=keyhold:rec:1") != NULL);
    OPENSSL_free(out);
    BIO_free(mem);

    CHECK(kh_keyref_der_encode("tpm2:handle=0x81000010", &der, &derlen, err,
                               sizeof(err)));
    CHECK(kh_keyref_der_decode(der, derlen, &out, err, sizeof(err)));
    CHECK(out != NULL && strcmp(out, "tpm2:handle=0x81000010") == 0);
    OPENSSL_free(out);
    /* Truncated DER, and trailing garbage. */
    CHECK(!kh_keyref_der_decode(der, derlen - 1, &out, err, sizeof(err)));
    CHECK(strstr(err, "not valid DER") != NULL);
    OPENSSL_free(der);

    CHECK(!kh_keyref_der_encode("file:/etc/key.pem", &der, &derlen, err,
                                sizeof(err)));
    mem = BIO_new_mem_buf("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE"
                          " KEY-----\n", -1);
    CHECK(!kh_keyref_pem_read(mem, &out, err, sizeof(err)));
    CHECK(strstr(err, "is not a KEYHOLD KEY REFERENCE") != NULL);
    BIO_free(mem);
    mem = BIO_new_mem_buf("-----BEGIN KEYHOLD KEY REFERENCE-----\nMAMCAQ", -1);
    CHECK(!kh_keyref_pem_read(mem, &out, err, sizeof(err)));
    BIO_free(mem);
}

static void test_p11util(void)
{
    char s[8], err[256];
    void *h = NULL;
    CK_FUNCTION_LIST_PTR fl = NULL;

    CHECK(strcmp(kh_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT") == 0);
    CHECK(strcmp(kh_ckr_name(0x12345), "CKR_0x00012345") == 0);
    CHECK(kh_ckr_hint(CKR_TOKEN_NOT_PRESENT) != NULL);
    {
        CK_RV rv = 0;

        CHECK(kh_ckr_parse("CKR_DEVICE_REMOVED", &rv)
              && rv == CKR_DEVICE_REMOVED);
        CHECK(!kh_ckr_parse("CKR_NO_SUCH_THING", &rv));
    }
    kh_p11_str(s, sizeof(s), (const unsigned char *)"ab   ", 5);
    CHECK(strcmp(s, "ab") == 0);
    kh_p11_str(s, sizeof(s), (const unsigned char *)"abcdefghij", 10);
    CHECK(strcmp(s, "abcdefg") == 0);
    CHECK(!kh_p11_module_open("/nonexistent/mod.so", &h, &fl, err,
                              sizeof(err)));
    CHECK(strstr(err, "cannot load PKCS#11 module") != NULL);
}

int main(void)
{
    test_uri();
    test_pin();
    test_keyref();
    test_p11util();
    return kh_check_summary("unit_common");
}
