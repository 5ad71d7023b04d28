/* SPDX-License-Identifier: MIT */
/*
 * A counting TCTI for the benchmark: "PATH/libtss2-tcti-khcount.so:INNER"
 * loads the TCTI named by INNER (e.g. "swtpm:host=127.0.0.1,port=2321")
 * and forwards everything to it, counting commands sent. The bench reads
 * the count with kh_tcti_count() (dlopen RTLD_NOLOAD of the same path),
 * which gives TPM commands per signature for any TSS2-based provider.
 */
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_tcti.h>
#include <tss2/tss2_tctildr.h>

#define KHCOUNT_MAGIC 0x6b68636f756e7431ull

struct khcount {
    TSS2_TCTI_CONTEXT_COMMON_V2 common;
    TSS2_TCTI_CONTEXT *inner;
};

static unsigned long count;

unsigned long kh_tcti_count(void);

unsigned long kh_tcti_count(void)
{
    return __atomic_load_n(&count, __ATOMIC_SEQ_CST);
}

static TSS2_TCTI_CONTEXT *inner_of(TSS2_TCTI_CONTEXT *ctx)
{
    struct khcount *k = (struct khcount *)ctx;

    return k != NULL && k->common.v1.magic == KHCOUNT_MAGIC ? k->inner : NULL;
}

static TSS2_RC c_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size,
                          const uint8_t *cmd)
{
    __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST);
    return Tss2_Tcti_Transmit(inner_of(ctx), size, cmd);
}

static TSS2_RC c_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp,
                         int32_t timeout)
{
    return Tss2_Tcti_Receive(inner_of(ctx), size, rsp, timeout);
}

static void c_finalize(TSS2_TCTI_CONTEXT *ctx)
{
    struct khcount *k = (struct khcount *)ctx;

    if (k != NULL && k->inner != NULL) {
        Tss2_TctiLdr_Finalize(&k->inner);
    }
}

static TSS2_RC c_cancel(TSS2_TCTI_CONTEXT *ctx)
{
    return Tss2_Tcti_Cancel(inner_of(ctx));
}

static TSS2_RC c_poll(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *h,
                      size_t *n)
{
    return Tss2_Tcti_GetPollHandles(inner_of(ctx), h, n);
}

static TSS2_RC c_locality(TSS2_TCTI_CONTEXT *ctx, uint8_t loc)
{
    return Tss2_Tcti_SetLocality(inner_of(ctx), loc);
}

static TSS2_RC c_sticky(TSS2_TCTI_CONTEXT *ctx, TPM2_HANDLE *h, uint8_t s)
{
    return Tss2_Tcti_MakeSticky(inner_of(ctx), h, s);
}

static TSS2_RC c_init(TSS2_TCTI_CONTEXT *ctx, size_t *size, const char *conf)
{
    struct khcount *k = (struct khcount *)ctx;
    TSS2_RC rc;

    if (size == NULL) {
        return TSS2_TCTI_RC_BAD_VALUE;
    }
    if (ctx == NULL) {
        *size = sizeof(struct khcount);
        return TSS2_RC_SUCCESS;
    }
    if (*size < sizeof(struct khcount)) {
        return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
    }
    memset(k, 0, sizeof(*k));
    rc = Tss2_TctiLdr_Initialize(conf, &k->inner);
    if (rc != TSS2_RC_SUCCESS) {
        return rc;
    }
    k->common.v1.magic = KHCOUNT_MAGIC;
    k->common.v1.version = 2;
    k->common.v1.transmit = c_transmit;
    k->common.v1.receive = c_receive;
    k->common.v1.finalize = c_finalize;
    k->common.v1.cancel = c_cancel;
    k->common.v1.getPollHandles = c_poll;
    k->common.v1.setLocality = c_locality;
    k->common.makeSticky = c_sticky;
    return TSS2_RC_SUCCESS;
}

static const TSS2_TCTI_INFO info = {
    .version = 2,
    .name = "khcount",
    .description = "keyhold bench: counts TPM commands, forwards to INNER",
    .config_help = "INNER TCTI configuration, e.g. swtpm:port=2321",
    .init = c_init,
};

const TSS2_TCTI_INFO *Tss2_Tcti_Info(void)
{
    return &info;
}
