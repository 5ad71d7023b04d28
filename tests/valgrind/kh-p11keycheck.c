/* SPDX-License-Identifier: MIT */
/*
 * kh-p11keycheck (scenario 1): asks the token, through Cryptoki alone,
 * what it knows about a private key and whether the key can be made to
 * leave it. Prints one "NAME=VALUE" line per attribute and per attempt:
 *   SENSITIVE EXTRACTABLE ALWAYS_SENSITIVE NEVER_EXTRACTABLE LOCAL
 *   SIGN DECRYPT DERIVE UNWRAP      = 1 | 0
 *   read-private-part               = refused | LEAKED
 *   wrap                            = refused | LEAKED
 *   make-extractable                = refused | ALLOWED
 *
 *   kh-p11keycheck -m MODULE -t TOKEN -p PINFILE -i HEXID
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "../helpers/kh_testutil.h"

static CK_FUNCTION_LIST_PTR f;

static int get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                    CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = { type, &v, sizeof(v) };

    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK) {
        return -1;
    }
    return v ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *module = NULL, *token = NULL, *pinfile = NULL, *idhex = NULL;
    static const struct {
        CK_ATTRIBUTE_TYPE type;
        const char *name;
    } bools[] = {
        { CKA_SENSITIVE, "SENSITIVE" }, { CKA_EXTRACTABLE, "EXTRACTABLE" },
        { CKA_ALWAYS_SENSITIVE, "ALWAYS_SENSITIVE" },
        { CKA_NEVER_EXTRACTABLE, "NEVER_EXTRACTABLE" },
        { CKA_LOCAL, "LOCAL" }, { CKA_SIGN, "SIGN" },
        { CKA_DECRYPT, "DECRYPT" }, { CKA_DERIVE, "DERIVE" },
        { CKA_UNWRAP, "UNWRAP" },
    };
    static const CK_ATTRIBUTE_TYPE secret[] = {
        CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,
        CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT,
    };
    CK_ULONG n = 0, i, idlen = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE priv, wkey;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    unsigned char id[64], wrapped[8192];
    CK_BBOOL yes = CK_TRUE;
    CK_ULONG keylen = 32, wlen = sizeof(wrapped);
    CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
    CK_MECHANISM wrap = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
    int c, leaked = 0;

    while ((c = getopt(argc, argv, "m:t:p:i:")) != -1) {
        switch (c) {
        case 'm': module = optarg; break;
        case 't': token = optarg; break;
        case 'p': pinfile = optarg; break;
        case 'i': idhex = optarg; break;
        default: return 2;
        }
    }
    if (module == NULL || token == NULL || pinfile == NULL || idhex == NULL) {
        fprintf(stderr, "usage: kh-p11keycheck -m MODULE -t TOKEN -p PINFILE "
                "-i HEXID\n");
        return 2;
    }
    for (i = 0; idhex[2 * i] != '\0' && idhex[2 * i + 1] != '\0'
                && i < sizeof(id); i++) {
        unsigned int b;

        if (sscanf(idhex + 2 * i, "%2x", &b) != 1) {
            return 2;
        }
        id[i] = (unsigned char)b;
    }
    idlen = i;
    if (!kh_test_p11_login(module, token, pinfile, &f, &s)) {
        return 1;
    }
    {
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) },
                             { CKA_ID, id, idlen } };

        if (f->C_FindObjectsInit(s, t, 2) != CKR_OK
            || f->C_FindObjects(s, &priv, 1, &n) != CKR_OK || n != 1) {
            fprintf(stderr, "no private key with id %s\n", idhex);
            return 1;
        }
        f->C_FindObjectsFinal(s);
    }
    for (i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        printf("%s=%d\n", bools[i].name, get_bool(s, priv, bools[i].type));
    }
    for (i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
        unsigned char buf[1024];
        CK_ATTRIBUTE a = { secret[i], buf, sizeof(buf) };
        CK_RV rv = f->C_GetAttributeValue(s, priv, &a, 1);

        if (rv == CKR_OK && a.ulValueLen != (CK_ULONG)-1) {
            leaked = 1;
        }
    }
    printf("read-private-part=%s\n", leaked ? "LEAKED" : "refused");
    {
        CK_ATTRIBUTE t[] = { { CKA_VALUE_LEN, &keylen, sizeof(keylen) },
                             { CKA_WRAP, &yes, sizeof(yes) },
                             { CKA_EXTRACTABLE, &yes, sizeof(yes) } };
        CK_RV rv = f->C_GenerateKey(s, &gen, t, 3, &wkey);

        if (rv != CKR_OK) {
            printf("wrap=no-wrapping-key(0x%lx)\n", (unsigned long)rv);
        } else {
            rv = f->C_WrapKey(s, &wrap, wkey, priv, wrapped, &wlen);
            printf("wrap=%s\n", rv == CKR_OK ? "LEAKED" : "refused");
        }
    }
    {
        CK_ATTRIBUTE a = { CKA_EXTRACTABLE, &yes, sizeof(yes) };
        CK_RV rv = f->C_SetAttributeValue(s, priv, &a, 1);

        printf("make-extractable=%s\n", rv == CKR_OK ? "ALLOWED" : "refused");
    }
    f->C_Logout(s);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}
