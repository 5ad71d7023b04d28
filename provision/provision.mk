# SPDX-License-Identifier: MIT
# The keyhold CLI (build/keyhold): every provision/*.c (enrolment and
# renewal files join automatically) + the shared library code.

KEYHOLD_SRC := $(wildcard provision/*.c)
KEYHOLD_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(KEYHOLD_SRC))
KEYHOLD_LIBS := $(DEP_LIBS) $(CURL_LIBS) -ldl -lpthread

EXTRA_CFLAGS_provision := $(CURL_CFLAGS)

$(BUILD)/keyhold: $(KEYHOLD_OBJ) $(BUILD)/libkhcommon.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $(KEYHOLD_OBJ) $(BUILD)/libkhcommon.a \
	    $(KEYHOLD_LIBS)

install-keyhold: $(BUILD)/keyhold
	install -D -m 0755 $(BUILD)/keyhold $(DESTDIR)$(BINDIR)/keyhold
	install -D -m 0644 docs/keyhold.1 $(DESTDIR)$(MANDIR)/man1/keyhold.1

.PHONY: install-keyhold

ALL_TARGETS += $(BUILD)/keyhold
INSTALL_TARGETS += install-keyhold
