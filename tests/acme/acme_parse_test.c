/* SPDX-License-Identifier: MIT */
/*
 * Unit test of ACME's network-free parsers (provision/acme_parse.c): JSON
 * member and array access on real ACME resources, malformed and hostile
 * input, base64url both ways (RFC 4648 vectors), problem documents.
 */
#include <stdio.h>
#include <string.h>

#include "../../provision/acme.h"

static int failures;

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);  \
            failures++;                                                   \
        }                                                                 \
    } while (0)

static KH_JSPAN span(const char *s)
{
    KH_JSPAN v = { s, strlen(s) };

    return v;
}

static void test_json(void)
{
    const char *authz =
        "{ \"status\": \"pending\", \"expires\": \"2026-01-01T00:00:00Z\",\n"
        "  \"identifier\": {\"type\":\"dns\",\"value\":\"cam1.example\"},\n"
        "  \"challenges\": [\n"
        "    {\"type\":\"tls-alpn-01\",\"url\":\"https://a/c/1\","
        "\"token\":\"t1\",\"status\":\"pending\"},\n"
        "    {\"type\":\"http-01\",\"url\":\"https://a/c/2\","
        "\"token\":\"t\\\"2\",\"status\":\"pending\", \"n\": 12.5e3,"
        "\"ok\": true, \"x\": null, \"arr\": [[1,2],{\"a\":\"]\"}]}\n"
        "  ], \"wildcard\": false }";
    KH_JSPAN v, chs, ch, id;
    char buf[64], t[32];
    size_t pos = 0;
    int n = 0;

    CHECK(kh_acme_json_getstr(span(authz), "status", buf, sizeof(buf)));
    CHECK(strcmp(buf, "pending") == 0);
    CHECK(kh_acme_json_get(span(authz), "identifier", &id));
    CHECK(kh_acme_json_getstr(id, "value", buf, sizeof(buf)));
    CHECK(strcmp(buf, "cam1.example") == 0);
    CHECK(kh_acme_json_get(span(authz), "wildcard", &v));
    CHECK(v.n == 5 && memcmp(v.p, "false", 5) == 0);
    CHECK(!kh_acme_json_get(span(authz), "absent", &v));
    /* a key's name inside a value is not a member */
    CHECK(!kh_acme_json_get(span(authz), "value", &v));
    CHECK(kh_acme_json_get(span(authz), "challenges", &chs));
    while (kh_acme_json_next(chs, &pos, &ch)) {
        CHECK(kh_acme_json_getstr(ch, "type", t, sizeof(t)));
        if (strcmp(t, "http-01") == 0) {
            CHECK(kh_acme_json_getstr(ch, "token", buf, sizeof(buf)));
            CHECK(strcmp(buf, "t\"2") == 0);
            CHECK(kh_acme_json_get(ch, "arr", &v));
        }
        n++;
    }
    CHECK(n == 2);
    /* escapes, \u */
    CHECK(kh_acme_json_getstr(span("{\"a\":\"x\\u0041\\n\\/\"}"), "a", buf,
                              sizeof(buf)));
    CHECK(strcmp(buf, "xA\n/") == 0);
    /* too small a buffer */
    CHECK(!kh_acme_json_getstr(span("{\"a\":\"abcdef\"}"), "a", buf, 4));
    /* malformed: each refused, none read past its end */
    CHECK(!kh_acme_json_get(span(""), "a", &v));
    CHECK(!kh_acme_json_get(span("{"), "a", &v));
    CHECK(!kh_acme_json_get(span("{\"a\""), "a", &v));
    CHECK(!kh_acme_json_get(span("{\"a\":"), "a", &v));
    CHECK(!kh_acme_json_get(span("{\"a\":\"x"), "a", &v));
    CHECK(!kh_acme_json_get(span("[\"a\"]"), "a", &v));
    CHECK(!kh_acme_json_getstr(span("{\"a\":\"\\u12\"}"), "a", buf,
                               sizeof(buf)));
    CHECK(!kh_acme_json_getstr(span("{\"a\":1}"), "a", buf, sizeof(buf)));
    {
        /* nesting beyond the bound is refused, not recursed into */
        char deep[200];
        int i;

        strcpy(deep, "{\"a\":");
        for (i = 0; i < 40; i++) {
            strcat(deep, "[");
        }
        CHECK(!kh_acme_json_get(span(deep), "a", &v));
    }
    pos = 0;
    CHECK(!kh_acme_json_next(span("[]"), &pos, &v));
    pos = 0;
    CHECK(!kh_acme_json_next(span("[1 2]"), &pos, &v) || pos > 0);
}

static void test_b64url(void)
{
    static const struct {
        const char *in, *out;
    } vec[] = {
        { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
    };
    unsigned char raw[] = { 0xfb, 0xff, 0xfe }, back[16];
    char out[32];
    size_t i;
    long n;

    for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        CHECK(kh_acme_b64url((const unsigned char *)vec[i].in,
                             strlen(vec[i].in), out, sizeof(out))
              == strlen(vec[i].out));
        CHECK(strcmp(out, vec[i].out) == 0);
        n = kh_acme_b64url_decode(vec[i].out, back, sizeof(back));
        CHECK(n == (long)strlen(vec[i].in));
        CHECK(n >= 0 && memcmp(back, vec[i].in, (size_t)n) == 0);
    }
    kh_acme_b64url(raw, sizeof(raw), out, sizeof(out));
    CHECK(strcmp(out, "-__-") == 0);            /* url alphabet */
    CHECK(kh_acme_b64url(raw, sizeof(raw), out, 4) == 0);   /* no room */
    CHECK(kh_acme_b64url_decode("+//+", back, sizeof(back)) == 3);
    CHECK(kh_acme_b64url_decode("Zm9v!", back, sizeof(back)) == -1);
    CHECK(kh_acme_b64url_decode("Zm9vYmFy", back, 2) == -1);
}

static void test_problem(void)
{
    const char *doc =
        "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
        "\"detail\":\"Error creating new order\",\"status\":400,"
        "\"subproblems\":[{\"type\":\"urn:ietf:params:acme:error:"
        "rejectedIdentifier\",\"detail\":\"name is blocked\","
        "\"identifier\":{\"type\":\"dns\",\"value\":\"bad.example\"}}]}";
    char out[512], type[64];

    CHECK(kh_acme_problem(doc, strlen(doc), out, sizeof(out), type,
                          sizeof(type)));
    CHECK(strcmp(type, "rejectedIdentifier") == 0);
    CHECK(strstr(out, "urn:ietf:params:acme:error:rejectedIdentifier: "
                      "Error creating new order") == out);
    CHECK(strstr(out, "(bad.example: name is blocked)") != NULL);
    CHECK(!kh_acme_problem("<html>", 6, out, sizeof(out), NULL, 0));
    CHECK(!kh_acme_problem(NULL, 0, out, sizeof(out), NULL, 0));
    /* a tiny output buffer truncates, never overflows */
    CHECK(kh_acme_problem(doc, strlen(doc), out, 8, type, sizeof(type)));
    CHECK(strlen(out) == 7);
}

int main(void)
{
    test_json();
    test_b64url();
    test_problem();
    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("acme_parse: ok\n");
    return 0;
}
