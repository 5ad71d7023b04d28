# SPDX-License-Identifier: MIT
# The provider (build/keyhold.so), its TPM backend module loaded on first
# use (build/keyhold-tpm.so), and the small library of code shared by the
# provider and the CLI (build/libkhcommon.a).

KHCOMMON_SRC := $(wildcard engine/common/*.c)
KHCOMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(KHCOMMON_SRC))

$(BUILD)/libkhcommon.a: $(KHCOMMON_OBJ)
	$(E) "  AR      $@"
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

# The provider proper. The TPM backend (engine/tpm/) is a separate module,
# keyhold-tpm.so beside keyhold.so, that the provider loads with dlopen on
# first use (engine/tpm_load.c): only it links the tpm2-tss libraries, so a
# process that never touches a TPM key never loads them.
ENGINE_SRC := $(wildcard engine/*.c engine/p11/*.c)
ENGINE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(ENGINE_SRC))
ENGINE_LIBS := $(DEP_LIBS) -ldl -lpthread

# The provider's objects are position independent (KH_CFLAGS has -fPIC) and
# the module exports nothing but OSSL_provider_init.
$(BUILD)/keyhold.so: $(ENGINE_OBJ) $(BUILD)/libkhcommon.a engine/keyhold.map
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -shared -Wl,--version-script=engine/keyhold.map \
	    -Wl,-z,defs -Wl,-z,now -o $@ $(ENGINE_OBJ) $(BUILD)/libkhcommon.a \
	    $(ENGINE_LIBS)

# The TPM backend module: exports kh_tpm_module_init only.
KHTPMMOD_SRC := $(wildcard engine/tpm/*.c)
KHTPMMOD_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(KHTPMMOD_SRC))

$(BUILD)/keyhold-tpm.so: $(KHTPMMOD_OBJ) $(BUILD)/libkhcommon.a \
		engine/tpm/keyhold-tpm.map
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -shared \
	    -Wl,--version-script=engine/tpm/keyhold-tpm.map \
	    -Wl,-z,defs -Wl,-z,now -o $@ $(KHTPMMOD_OBJ) \
	    $(BUILD)/libkhcommon.a $(TSS_LIBS) $(DEP_LIBS) -lpthread

install-engine: $(BUILD)/keyhold.so
	install -D -m 0644 $(BUILD)/keyhold.so $(DESTDIR)$(MODULESDIR)/keyhold.so

install-engine-tpm: $(BUILD)/keyhold-tpm.so
	install -D -m 0644 $(BUILD)/keyhold-tpm.so \
	    $(DESTDIR)$(MODULESDIR)/keyhold-tpm.so

.PHONY: install-engine install-engine-tpm

ifneq ($(wildcard engine/provider.c),)
ALL_TARGETS += $(BUILD)/keyhold.so
INSTALL_TARGETS += install-engine
endif
ifneq ($(KHTPMMOD_SRC),)
ALL_TARGETS += $(BUILD)/keyhold-tpm.so
INSTALL_TARGETS += install-engine-tpm
endif
ALL_TARGETS += $(BUILD)/libkhcommon.a
