/* SPDX-License-Identifier: MIT */
/*
 * Host names and addresses of an identity, and matching them against a
 * certificate's subject CN and subjectAltName. VMS clients accept the name
 * in either place, so either is enough for a DNS name; IP identities need an
 * iPAddress SAN. No side effects (fuzzed).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "keyhold.h"

int kh_host_is_ip(const char *host)
{
    unsigned char buf[16];

    return host != NULL && (inet_pton(AF_INET, host, buf) == 1
                            || inet_pton(AF_INET6, host, buf) == 1);
}

static int dns_name_ok(const char *s)
{
    size_t n = strlen(s), i, label = 0;

    if (n == 0 || n > 253) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '.') {
            if (label == 0) {
                return 0;
            }
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_' && !(c == '*' && i == 0)) {
            return 0;
        }
        if (++label > 63) {
            return 0;
        }
    }
    return label > 0;
}

int kh_host_in_valid(const char *v)
{
    return strcmp(v, "both") == 0 || strcmp(v, "cn") == 0
           || strcmp(v, "san") == 0;
}

int kh_sans_parse(const char *spec, KH_STRLIST *out, char *err, size_t errlen)
{
    char *copy, *tok, *save = NULL;
    char item[300];
    int ok = 0;

    if (spec == NULL) {
        return 1;
    }
    copy = strdup(spec);
    if (copy == NULL) {
        return kh_seterr(err, errlen, 0, "out of memory");
    }
    for (tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        const char *v;

        while (isspace((unsigned char)*tok)) {
            tok++;
        }
        if (*tok == '\0') {
            continue;
        }
        if (strncasecmp(tok, "dns:", 4) == 0) {
            v = tok + 4;
            if (!dns_name_ok(v)) {
                kh_seterr(err, errlen, 0, "'%s' is not a DNS name", v);
                goto end;
            }
            snprintf(item, sizeof(item), "dns:%s", v);
        } else if (strncasecmp(tok, "ip:", 3) == 0) {
            v = tok + 3;
            if (!kh_host_is_ip(v)) {
                kh_seterr(err, errlen, 0, "'%s' is not an IP address", v);
                goto end;
            }
            snprintf(item, sizeof(item), "ip:%s", v);
        } else if (strchr(tok, ':') == NULL || kh_host_is_ip(tok)) {
            v = tok;
            if (kh_host_is_ip(v)) {
                snprintf(item, sizeof(item), "ip:%s", v);
            } else if (dns_name_ok(v)) {
                snprintf(item, sizeof(item), "dns:%s", v);
            } else {
                kh_seterr(err, errlen, 0, "'%s' is not a DNS name", v);
                goto end;
            }
        } else {
            kh_seterr(err, errlen, 0,
                      "SAN '%s': use dns:NAME or ip:ADDRESS", tok);
            goto end;
        }
        if (!kh_strlist_has(out, item) && !kh_strlist_add(out, item)) {
            kh_seterr(err, errlen, 0, "out of memory");
            goto end;
        }
    }
    ok = 1;
end:
    free(copy);
    return ok;
}

int kh_identity_names(const KH_IDENTITY *id, KH_STRLIST *out)
{
    const char *host = kh_id_get(id, "host");
    KH_STRLIST sans = { 0 };
    char item[300];
    size_t i;
    int ok = 1;

    if (host != NULL) {
        snprintf(item, sizeof(item), "%s:%s",
                 kh_host_is_ip(host) ? "ip" : "dns", host);
        ok = kh_strlist_add(out, item);
    }
    if (ok) {
        ok = kh_id_get_all(id, "san", &sans);
    }
    for (i = 0; ok && i < sans.n; i++) {
        if (!kh_strlist_has(out, sans.v[i])) {
            ok = kh_strlist_add(out, sans.v[i]);
        }
    }
    kh_strlist_free(&sans);
    return ok;
}

int kh_host_matches(const char *pattern, const char *host)
{
    size_t pl, hl;
    const char *hdot;

    if (pattern == NULL || host == NULL) {
        return 0;
    }
    pl = strlen(pattern);
    hl = strlen(host);
    /* one trailing dot is the same name */
    if (pl > 0 && pattern[pl - 1] == '.') {
        pl--;
    }
    if (hl > 0 && host[hl - 1] == '.') {
        hl--;
    }
    if (pl == 0 || hl == 0) {
        return 0;
    }
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* '*' stands for exactly one non-empty leftmost label, and the
         * rest must have at least two labels (no "*.com") */
        const char *rest = pattern + 1; /* ".example.com" */
        size_t rl = pl - 1;

        if (memchr(rest + 1, '.', rl - 1) == NULL
            || memchr(rest + 1, '*', rl - 1) != NULL) {
            return 0;
        }
        hdot = memchr(host, '.', hl);
        if (hdot == NULL || hdot == host) {
            return 0;
        }
        if ((size_t)(host + hl - hdot) != rl) {
            return 0;
        }
        return strncasecmp(hdot, rest, rl) == 0;
    }
    if (memchr(pattern, '*', pl) != NULL) {
        return 0;
    }
    return pl == hl && strncasecmp(pattern, host, pl) == 0;
}

static int ip_bytes(const char *s, unsigned char *buf, size_t *len)
{
    if (inet_pton(AF_INET, s, buf) == 1) {
        *len = 4;
        return 1;
    }
    if (inet_pton(AF_INET6, s, buf) == 1) {
        *len = 16;
        return 1;
    }
    return 0;
}

int kh_cert_has_name(X509 *cert, const char *name)
{
    GENERAL_NAMES *gens = NULL;
    int found = 0, i;
    int is_ip;
    const char *v;

    if (cert == NULL || name == NULL) {
        return 0;
    }
    if (strncmp(name, "ip:", 3) == 0) {
        is_ip = 1;
        v = name + 3;
    } else if (strncmp(name, "dns:", 4) == 0) {
        is_ip = 0;
        v = name + 4;
    } else {
        is_ip = kh_host_is_ip(name);
        v = name;
    }
    gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

        if (is_ip && g->type == GEN_IPADD) {
            unsigned char want[16];
            size_t wl = 0;

            if (ip_bytes(v, want, &wl)
                && (size_t)ASN1_STRING_length(g->d.iPAddress) == wl
                && memcmp(ASN1_STRING_get0_data(g->d.iPAddress), want,
                          wl) == 0) {
                found = 1;
            }
        } else if (!is_ip && g->type == GEN_DNS) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            int dl = ASN1_STRING_length(g->d.dNSName);
            char pat[256];

            if (dl > 0 && dl < (int)sizeof(pat)
                && memchr(d, '\0', (size_t)dl) == NULL) {
                memcpy(pat, d, (size_t)dl);
                pat[dl] = '\0';
                found = kh_host_matches(pat, v);
            }
        }
    }
    GENERAL_NAMES_free(gens);
    if (!found && !is_ip) {
        X509_NAME *subj = X509_get_subject_name(cert);
        int idx = -1;

        while (!found && (idx = X509_NAME_get_index_by_NID(subj, NID_commonName,
                                                           idx)) >= 0) {
            ASN1_STRING *s = X509_NAME_ENTRY_get_data(
                X509_NAME_get_entry(subj, idx));
            unsigned char *u = NULL;
            int ul = ASN1_STRING_to_UTF8(&u, s);

            if (ul > 0 && memchr(u, '\0', (size_t)ul) == NULL) {
                found = kh_host_matches((const char *)u, v);
            }
            OPENSSL_free(u);
        }
    }
    return found;
}
