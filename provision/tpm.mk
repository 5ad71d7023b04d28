# SPDX-License-Identifier: MIT
# The TPM core for programs other than the provider: $(BUILD)/libkhtpm.a
# (engine/tpm's ESAPI layer and key-file code, without the provider glue),
# and the low-level tool $(BUILD)/keyhold-tpm. The keyhold CLI links
# libkhtpm.a with $(KHTPM_LIBS) for `provision --tpm` and zeroize.

KHTPM_OBJ := $(BUILD)/engine/tpm/tpm_esys.o $(BUILD)/engine/tpm/tpm_keyfile.o
KHTPM_LIBS := $(TSS_LIBS) $(DEP_LIBS) -lpthread

$(BUILD)/libkhtpm.a: $(KHTPM_OBJ)
	$(E) "  AR      $@"
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BUILD)/keyhold-tpm: $(BUILD)/provision/tpm/keyhold-tpm.o \
		$(BUILD)/libkhtpm.a $(BUILD)/libkhcommon.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^ $(KHTPM_LIBS) -ldl

EXTRA_CFLAGS_provision += -Iengine/tpm

install-keyhold-tpm: $(BUILD)/keyhold-tpm
	install -D -m 0755 $(BUILD)/keyhold-tpm $(DESTDIR)$(BINDIR)/keyhold-tpm

.PHONY: install-keyhold-tpm

ALL_TARGETS += $(BUILD)/libkhtpm.a $(BUILD)/keyhold-tpm
INSTALL_TARGETS += install-keyhold-tpm

# The CLI's TPM backend (provision/tpm_backend.c) needs the core.
KEYHOLD_LIBS += $(BUILD)/libkhtpm.a $(TSS_LIBS)
$(BUILD)/keyhold: $(BUILD)/libkhtpm.a
