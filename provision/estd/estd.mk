# SPDX-License-Identifier: MIT
# keyhold-estd: the EST (RFC 7030) server for tests and factory stations.

ESTD_SRC := $(wildcard provision/estd/*.c)
ESTD_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(ESTD_SRC))

$(BUILD)/keyhold-estd: $(ESTD_OBJ) $(BUILD)/libkhcommon.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $(ESTD_OBJ) $(BUILD)/libkhcommon.a \
	    $(DEP_LIBS) -lcrypt -lpthread -ldl

install-estd: $(BUILD)/keyhold-estd
	install -D -m 0755 $(BUILD)/keyhold-estd $(DESTDIR)$(BINDIR)/keyhold-estd

.PHONY: install-estd
ALL_TARGETS += $(BUILD)/keyhold-estd
INSTALL_TARGETS += install-estd
