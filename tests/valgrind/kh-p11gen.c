/* SPDX-License-Identifier: MIT */
/*
 * kh-p11gen: generates a key pair in a token with every usage attribute
 * spelled out (pkcs11-tool leaves CKA_DECRYPT to the token's default, which
 * is TRUE in SoftHSM), so tests get a truly sign-only key, or a key that
 * may also decrypt/derive with -d.
 *
 *   kh-p11gen -m MODULE -t TOKEN -p PINFILE -l LABEL -i HEXID -k ec|rsa [-d]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "../helpers/kh_testutil.h"

static int hex2bin(const char *hex, unsigned char *out, size_t max)
{
    size_t n = strlen(hex) / 2, i;

    if (strlen(hex) % 2 != 0 || n == 0 || n > max) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned int b;

        if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
            return -1;
        }
        out[i] = (unsigned char)b;
    }
    return (int)n;
}

int main(int argc, char **argv)
{
    const char *module = NULL, *token = NULL, *pinfile = NULL, *label = NULL;
    const char *idhex = NULL, *kind = NULL;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, extra = CK_FALSE;
    CK_FUNCTION_LIST_PTR f;
    CK_ULONG bits = 2048;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE pub, priv;
    CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
                       0x01, 0x07 };
    CK_BYTE e65537[] = { 0x01, 0x00, 0x01 };
    unsigned char id[64];
    int idlen, c, rsa;

    while ((c = getopt(argc, argv, "m:t:p:l:i:k:d")) != -1) {
        switch (c) {
        case 'm': module = optarg; break;
        case 't': token = optarg; break;
        case 'p': pinfile = optarg; break;
        case 'l': label = optarg; break;
        case 'i': idhex = optarg; break;
        case 'k': kind = optarg; break;
        case 'd': extra = CK_TRUE; break;
        default:
            return 2;
        }
    }
    if (module == NULL || token == NULL || pinfile == NULL || label == NULL
        || idhex == NULL || kind == NULL
        || (idlen = hex2bin(idhex, id, sizeof(id))) < 0) {
        fprintf(stderr, "usage: kh-p11gen -m MODULE -t TOKEN -p PINFILE "
                "-l LABEL -i HEXID -k ec|rsa [-d]\n");
        return 2;
    }
    rsa = strcmp(kind, "rsa") == 0;
    if (!kh_test_p11_login(module, token, pinfile, &f, &s)) {
        return 1;
    }
    {
        CK_MECHANISM mech = { rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN
                                  : CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_ATTRIBUTE pubt[] = {
            { CKA_TOKEN, &yes, sizeof(yes) },
            { CKA_LABEL, (void *)label, strlen(label) },
            { CKA_ID, id, (CK_ULONG)idlen },
            { CKA_VERIFY, &yes, sizeof(yes) },
            { CKA_ENCRYPT, &extra, sizeof(extra) },
            { CKA_WRAP, &no, sizeof(no) },
            { rsa ? CKA_MODULUS_BITS : CKA_EC_PARAMS,
              rsa ? (void *)&bits : (void *)p256,
              rsa ? sizeof(bits) : sizeof(p256) },
            { CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537) },
        };
        CK_ATTRIBUTE privt[] = {
            { CKA_TOKEN, &yes, sizeof(yes) },
            { CKA_PRIVATE, &yes, sizeof(yes) },
            { CKA_SENSITIVE, &yes, sizeof(yes) },
            { CKA_EXTRACTABLE, &no, sizeof(no) },
            { CKA_LABEL, (void *)label, strlen(label) },
            { CKA_ID, id, (CK_ULONG)idlen },
            { CKA_SIGN, &yes, sizeof(yes) },
            { CKA_DECRYPT, &extra, sizeof(extra) },
            { CKA_DERIVE, &extra, sizeof(extra) },
            { CKA_UNWRAP, &no, sizeof(no) },
        };
        CK_ULONG npub = rsa ? 8 : 7;
        CK_RV rv;

        rv = f->C_GenerateKeyPair(s, &mech, pubt, npub, privt, 10, &pub,
                                  &priv);
        if (rv != CKR_OK) {
            fprintf(stderr, "C_GenerateKeyPair: 0x%lx\n", (unsigned long)rv);
            return 1;
        }
    }
    f->C_Logout(s);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}
