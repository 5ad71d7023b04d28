# SPDX-License-Identifier: MIT
# The provider (build/keyhold.so) and the small library of code shared by
# the provider and the CLI (build/libkhcommon.a).

KHCOMMON_SRC := $(wildcard engine/common/*.c)
KHCOMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(KHCOMMON_SRC))

$(BUILD)/libkhcommon.a: $(KHCOMMON_OBJ)
	$(E) "  AR      $@"
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

ENGINE_SRC := $(wildcard engine/*.c engine/p11/*.c engine/tpm/*.c)
ENGINE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(ENGINE_SRC))
ENGINE_LIBS := $(DEP_LIBS) -ldl -lpthread
ifneq ($(wildcard engine/tpm/*.c),)
ENGINE_LIBS += $(TSS_LIBS)
endif

# The provider's objects are position independent (KH_CFLAGS has -fPIC) and
# the module exports nothing but OSSL_provider_init.
$(BUILD)/keyhold.so: $(ENGINE_OBJ) $(BUILD)/libkhcommon.a engine/keyhold.map
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -shared -Wl,--version-script=engine/keyhold.map \
	    -Wl,-z,defs -Wl,-z,now -o $@ $(ENGINE_OBJ) $(BUILD)/libkhcommon.a \
	    $(ENGINE_LIBS)

install-engine: $(BUILD)/keyhold.so
	install -D -m 0644 $(BUILD)/keyhold.so $(DESTDIR)$(MODULESDIR)/keyhold.so

.PHONY: install-engine

ifneq ($(wildcard engine/provider.c),)
ALL_TARGETS += $(BUILD)/keyhold.so
INSTALL_TARGETS += install-engine
endif
ALL_TARGETS += $(BUILD)/libkhcommon.a
